"""The route decision (and the escalation answer), read from the in-process snapshot.

What varies per request (exclusions, max cost, model budgets) is applied while walking the
memoised ranking of routing.scoring; the escalation chain comes from routing.escalation.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from core.money import decimal_str
from costs.budgets import BudgetBook, BudgetStatus, budget_book
from costs.models import BudgetAction, BudgetScope, BudgetState
from routing.escalation import escalation_chain
from routing.models import Accuracy
from routing.scoring import Scored, ranked_for
from routing.snapshot import Snapshot, current_snapshot

# Past a soft budget limit a decision leans one step toward economy.
THRIFTIER = {Accuracy.HIGH: Accuracy.BALANCED, Accuracy.BALANCED: Accuracy.ECONOMY, Accuracy.ECONOMY: Accuracy.ECONOMY}
DEFAULT_INPUT_TOKENS = 1_000
DEFAULT_OUTPUT_TOKENS = 500
CANDIDATES_SHOWN = 10
STRATEGY_MIN_SAMPLES = 20
# The draws that let a share of decisions try a half-open model (seed it in tests).
rng = random.Random()


class RoutingError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


@dataclass
class RouteRequest:
    role: str
    category: str | None = None
    accuracy: str | None = None
    required_capabilities: list[str] = field(default_factory=list)
    min_context_length: int | None = None
    estimated_input_tokens: int | None = None
    estimated_output_tokens: int | None = None
    max_cost_usd: Decimal | None = None
    strategy: str | None = None
    exclude: list[str] = field(default_factory=list)
    fallback_count: int = 2


def _model_budgets(book: BudgetBook, role: str, strategy: str | None) -> dict[str, BudgetStatus]:
    return {
        s.budget.scope_value: s
        for s in book.applicable(role=role, strategy=strategy)
        if s.budget.scope == BudgetScope.MODEL and s.state != BudgetState.OK
    }


def _candidate_out(c: Scored, input_tokens: int, output_tokens: int) -> dict:
    cost = c.model.estimated_cost(input_tokens, output_tokens)
    return {
        "model": c.model.id,
        "score": round(c.score, 4),
        "preferred": c.preferred is not None,
        "estimated_cost_usd": cost,
        "parts": c.parts,
    }


def _budget_out(status: BudgetStatus | None) -> dict | None:
    if status is None:
        return None
    return {
        "scope": status.budget.scope,
        "scope_value": status.budget.scope_value,
        "limit_usd": status.budget.limit_usd,
        "spent_usd": status.spent_usd,
        "remaining_usd": status.remaining_usd,
        "state": status.state,
        "action": status.budget.action,
    }


def bootstrap_answer(req: RouteRequest, bootstrap: tuple[str, ...]) -> dict:
    models = [m for m in bootstrap if m not in set(req.exclude)]
    if not models:
        raise RoutingError(
            422,
            "no_eligible_model",
            "The catalog is empty and every bootstrap model is excluded.",
            rejected={"excluded": len(bootstrap)},
        )
    return {
        "model": models[0],
        "fallbacks": models[1 : 1 + req.fallback_count],
        "escalation": [],
        "estimated_cost_usd": None,
        "budget": None,
        "source": "bootstrap",
        "decision_id": uuid.uuid4().hex,
        "candidates": [],
        "catalog_version": "bootstrap",
        "category": req.category,
        "accuracy": req.accuracy or Accuracy.BALANCED,
        "recommended_strategy": None,
    }


def decide(req: RouteRequest, *, snap: Snapshot | None = None, book: BudgetBook = budget_book) -> dict:
    snap = snap or current_snapshot()
    role = snap.roles.get(req.role)
    if role is None:
        raise RoutingError(404, "unknown_role", f"No active role '{req.role}'. Roles are made in the admin.")
    if snap.bootstrap:  # no routable model, and the last sync failed (catalog.selectors)
        return bootstrap_answer(req, snap.bootstrap)

    category = req.category or role.default_category
    accuracy = req.accuracy or role.default_accuracy
    budget = book.state_for(role=role.slug, strategy=req.strategy)
    downgraded = None
    if budget is not None and budget.state == BudgetState.EXHAUSTED:
        if budget.budget.action == BudgetAction.BLOCK:
            raise RoutingError(
                402,
                "budget_exhausted",
                f"Budget '{budget.budget.name}' is exhausted ({decimal_str(budget.spent_usd)} of {decimal_str(budget.budget.limit_usd)} USD this {budget.budget.period}).",
                budget=_budget_out(budget),
            )
        downgraded, accuracy = "budget_exhausted", Accuracy.ECONOMY
    elif budget is not None and budget.state == BudgetState.SOFT_LIMIT and THRIFTIER[accuracy] != accuracy:
        downgraded, accuracy = "budget_soft_limit", THRIFTIER[accuracy]

    required = role.required | frozenset(req.required_capabilities)
    min_context = max(role.min_context, req.min_context_length or 0)
    input_tokens = req.estimated_input_tokens if req.estimated_input_tokens is not None else DEFAULT_INPUT_TOKENS
    output_tokens = req.estimated_output_tokens if req.estimated_output_tokens is not None else DEFAULT_OUTPUT_TOKENS
    ranking = ranked_for(snap, role, category, accuracy, required, min_context, input_tokens, output_tokens)

    excluded = set(req.exclude)
    model_budgets = _model_budgets(book, role.slug, req.strategy)
    wanted = 1 + req.fallback_count
    chosen: list[Scored] = []
    shown: list[Scored] = []
    rejected = dict(ranking.rejected)
    cooldowns, now = snap.cooldowns, time.time()
    for candidate in ranking.ordered:
        model = candidate.model
        reason = None
        if model.id in excluded:
            reason = "excluded"
        elif req.max_cost_usd is not None and model.estimated_cost(input_tokens, output_tokens) > req.max_cost_usd:
            reason = "over_max_cost"
        elif model.id in model_budgets and model_budgets[model.id].state == BudgetState.EXHAUSTED:
            reason = "budget_exhausted"
        elif cooldowns and cooldowns.blocks(model.id, role.slug, now, rng.random()):
            reason = "cooling_down"
        if reason:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        if len(chosen) < wanted:
            chosen.append(candidate)
        if len(shown) < CANDIDATES_SHOWN:
            shown.append(candidate)
        if len(chosen) >= wanted and len(shown) >= CANDIDATES_SHOWN:
            break  # (the whole ranking is walked only when nothing is eligible, to count why)
    if not chosen:
        raise RoutingError(
            422,
            "no_eligible_model",
            f"No model can serve role '{role.slug}' with these requirements ({sum(rejected.values())} rejected).",
            rejected=dict(sorted(rejected.items())),
        )

    best = chosen[0]
    blocked = excluded | {c.model.id for c in chosen}
    escalation = escalation_chain(snap, role, best.model.id, ranking, blocked, model_budgets)
    return {
        "model": best.model.id,
        "fallbacks": [c.model.id for c in chosen[1:]],
        "escalation": [step["model"] for step in escalation],
        "estimated_cost_usd": best.model.estimated_cost(input_tokens, output_tokens),
        "budget": _budget_out(budget),
        "downgraded": downgraded,
        "source": "catalog",
        "decision_id": uuid.uuid4().hex,
        "candidates": [_candidate_out(c, input_tokens, output_tokens) for c in shown],
        "catalog_version": snap.catalog_version,
        "category": category,
        "accuracy": accuracy,
        "recommended_strategy": None if req.strategy else recommend_strategy(snap, role.slug, category),
    }


def recommend_strategy(snap: Snapshot, role: str, category: str | None) -> dict | None:
    """The strategy with the best success rate for this role and category, once it has enough samples."""
    options = snap.strategy_outcomes.get((role, category or ""), {})
    best = None
    for slug, outcome in options.items():
        if outcome.requests < STRATEGY_MIN_SAMPLES:
            continue
        # Shrink toward 0.5 so that 3 of 3 does not beat 95 of 100.
        rate = (outcome.successes + 1) / (outcome.requests + 2)
        key = (rate, -outcome.cost / outcome.requests)
        if best is None or key > best[0]:
            best = (key, slug, outcome)
    if best is None:
        return None
    _, slug, outcome = best
    return {
        "strategy": slug,
        "success_rate": round(outcome.successes / outcome.requests, 4),
        "samples": outcome.requests,
        "cost_per_request_usd": round(outcome.cost / outcome.requests, 8),
    }


@dataclass
class EscalateRequest:
    role: str
    failed_model: str
    reason: str = ""
    category: str | None = None
    strategy: str | None = None
    exclude: list[str] = field(default_factory=list)
    estimated_input_tokens: int | None = None
    estimated_output_tokens: int | None = None


def escalate(req: EscalateRequest, *, snap: Snapshot | None = None, book: BudgetBook = budget_book) -> dict:
    snap = snap or current_snapshot()
    role = snap.roles.get(req.role)
    if role is None:
        raise RoutingError(404, "unknown_role", f"No active role '{req.role}'. Roles are made in the admin.")
    category = req.category or role.default_category
    ranking = ranked_for(
        snap,
        role,
        category,
        Accuracy.HIGH,
        role.required,
        role.min_context,
        req.estimated_input_tokens or DEFAULT_INPUT_TOKENS,
        req.estimated_output_tokens or DEFAULT_OUTPUT_TOKENS,
    )
    budget = book.state_for(role=role.slug, strategy=req.strategy)
    if budget is not None and budget.state == BudgetState.EXHAUSTED and budget.budget.action == BudgetAction.BLOCK:
        raise RoutingError(
            402, "budget_exhausted", f"Budget '{budget.budget.name}' is exhausted.", budget=_budget_out(budget)
        )
    model_budgets = _model_budgets(book, role.slug, req.strategy)
    chain = escalation_chain(snap, role, req.failed_model, ranking, set(req.exclude), model_budgets)
    return {
        "model": chain[0]["model"] if chain else None,
        "chain": [step["model"] for step in chain],
        "steps": chain,
        "source": chain[0]["source"] if chain else None,
        "catalog_version": snap.catalog_version,
    }
