"""Escalation chains: the models to try after one fails, overrides first, then dynamic
escalation toward better quality; no repeats, no cycles."""

from __future__ import annotations

import time
from decimal import Decimal

from costs.budgets import BudgetStatus
from costs.models import BudgetState
from routing.scoring import Ranking
from routing.snapshot import RoleInfo, Snapshot

ESCALATION_DEPTH = 4


def _override_targets(snap: Snapshot, role: RoleInfo, model_id: str) -> list[str]:
    """Overrides for a failed model: for the model, then its family; role-specific before general."""
    model = snap.models.get(model_id)
    family_id = model.family_id if model else None
    ordered = []
    for source in ("model", "family"):
        for role_specific in (True, False):
            for o in snap.overrides:
                if (o.role_id == role.id) if role_specific else (o.role_id is None):
                    if (source == "model" and o.from_model == model_id) or (
                        source == "family" and family_id is not None and o.from_family == family_id
                    ):
                        ordered.append(o.to_model)
    return ordered


def escalation_step(
    snap: Snapshot,
    role: RoleInfo,
    current: str,
    ranking: Ranking,
    blocked: set[str],
    model_budgets: dict[str, BudgetStatus],
    max_cost: Decimal | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    looked_at: list[str] | None = None,
) -> tuple[str, str] | None:
    """The model to try after `current` fails: (model id, 'override' or 'dynamic'), or None.
    The ranking holds only models that can serve the role; `max_cost` is the request's cap.
    The models whose cooldowns were asked about are added to `looked_at`, if given."""

    def usable(model_id: str) -> bool:
        if model_id in blocked:
            return False
        if looked_at is not None:
            looked_at.append(model_id)
        model = ranking.model(model_id)
        if model is None:
            return False
        if max_cost is not None and model.estimated_cost(input_tokens, output_tokens) > max_cost:
            return False
        # A model cooling down is no step up, half-open ones included (draw 1: never tried here).
        if snap.cooldowns and snap.cooldowns.blocks(model_id, role.slug, time.time(), 1.0):
            return False
        status = model_budgets.get(model_id)
        return status is None or status.state != BudgetState.EXHAUSTED

    for target in _override_targets(snap, role, current):
        if usable(target):
            return target, "override"
    floor = ranking.quality_of(current)
    floor = -1.0 if floor is None else floor
    for model in ranking.escalation_above(floor):
        if usable(model.id):
            return model.id, "dynamic"
    return None


def escalation_chain(
    snap: Snapshot,
    role: RoleInfo,
    start: str,
    ranking: Ranking,
    blocked: set[str],
    model_budgets: dict[str, BudgetStatus],
    depth: int = ESCALATION_DEPTH,
    *,
    max_cost: Decimal | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    looked_at: list[str] | None = None,
) -> list[dict]:
    """Escalation steps from `start`: no repeats, no cycles (every model visited is blocked).
    The models whose cooldowns were asked about are added to `looked_at`, if given."""
    blocked = set(blocked) | {start}
    chain = []
    current = start
    for _ in range(depth):
        step = escalation_step(
            snap, role, current, ranking, blocked, model_budgets, max_cost, input_tokens, output_tokens, looked_at
        )
        if step is None:
            break
        chain.append({"model": step[0], "source": step[1]})
        blocked.add(step[0])
        current = step[0]
    return chain
