"""Escalation chains: the models to try after one fails, overrides first, then dynamic
escalation toward better quality; no repeats, no cycles."""

from __future__ import annotations

import time

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
) -> tuple[str, str] | None:
    """The model to try after `current` fails: (model id, 'override' or 'dynamic'), or None."""

    def usable(model_id: str) -> bool:
        if model_id in blocked or model_id not in ranking.by_id:
            return False
        # A model cooling down is no step up, half-open ones included (draw 1: never tried here).
        if snap.cooldowns and snap.cooldowns.blocks(model_id, role.slug, time.time(), 1.0):
            return False
        status = model_budgets.get(model_id)
        return status is None or status.state != BudgetState.EXHAUSTED

    for target in _override_targets(snap, role, current):
        if usable(target):
            return target, "override"
    floor = ranking.by_id[current].quality if current in ranking.by_id else -1.0
    if ranking.better_than(floor) == 0:
        return None  # nothing is better than the model that failed: most chains end here
    for candidate in ranking.escalation_order():
        if candidate.quality > floor + 1e-9 and usable(candidate.model.id):
            return candidate.model.id, "dynamic"
    return None


def escalation_chain(
    snap: Snapshot,
    role: RoleInfo,
    start: str,
    ranking: Ranking,
    blocked: set[str],
    model_budgets: dict[str, BudgetStatus],
    depth: int = ESCALATION_DEPTH,
) -> list[dict]:
    """Escalation steps from `start`: no repeats, no cycles (every model visited is blocked)."""
    blocked = set(blocked) | {start}
    chain = []
    current = start
    for _ in range(depth):
        step = escalation_step(snap, role, current, ranking, blocked, model_budgets)
        if step is None:
            break
        chain.append({"model": step[0], "source": step[1]})
        blocked.add(step[0])
        current = step[0]
    return chain
