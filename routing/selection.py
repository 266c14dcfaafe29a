"""The route decision and escalation, read from the in-process snapshot.

Scoring, for each model that can serve the request:
- quality: a prior (the category ranking when a category is asked for, else catalog signals)
  moved by the outcomes learned for this role and category: `(successes + k·prior) / (n + k)`,
  the mean of a Beta posterior whose prior weighs k samples, so a few outcomes move it a little
  and many move it a lot;
- reliability: from health checks (a default while a model has none); a model failing its
  checks right now (as many in a row as raise an alert) is not chosen at all ("unhealthy");
- cost: the estimated cost of this request, on a log scale between the cheapest and the dearest
  candidate (1 is the cheapest).
The weights depend on the accuracy asked for. `high` puts reasoning-capable models first. The
role's preferences come first, in their order, when they are eligible.

The expensive part (filtering by the role and scoring every model) depends only on the role,
the category, the accuracy, the extra requirements and the size of the request, so it is
memoised on the snapshot; what varies per request (exclusions, max cost, model budgets) is
applied while walking the memoised ranking.
"""

from __future__ import annotations

import bisect
import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from catalog.models import CAPABILITIES
from costs.budgets import BudgetBook, BudgetStatus, budget_book
from costs.models import BudgetAction, BudgetScope, BudgetState
from routing.models import Accuracy
from routing.snapshot import ModelInfo, RoleInfo, Snapshot, current_snapshot

# (quality, reliability, cost)
WEIGHTS = {
    Accuracy.HIGH: (0.65, 0.20, 0.15),
    Accuracy.BALANCED: (0.45, 0.20, 0.35),
    Accuracy.ECONOMY: (0.20, 0.15, 0.65),
}
# Past a soft budget limit a decision leans one step toward economy.
THRIFTIER = {Accuracy.HIGH: Accuracy.BALANCED, Accuracy.BALANCED: Accuracy.ECONOMY, Accuracy.ECONOMY: Accuracy.ECONOMY}
PRIOR_STRENGTH = 10  # the prior weighs as much as this many outcomes
DEFAULT_RELIABILITY = 0.95  # a model no health check has seen yet
DEFAULT_INPUT_TOKENS = 1_000
DEFAULT_OUTPUT_TOKENS = 500
CANDIDATES_SHOWN = 10
ESCALATION_DEPTH = 4
STRATEGY_MIN_SAMPLES = 20
RANKING_CACHE_SIZE = 4096


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


@dataclass(slots=True)
class Scored:
    model: ModelInfo
    score: float
    quality: float
    parts: dict
    cost_f: float
    preferred: int | None  # position among the role's preferences, None when not preferred


@dataclass
class Ranking:
    ordered: list[Scored]
    by_id: dict[str, Scored]
    rejected: dict[str, int]
    # For dynamic escalation, computed once per ranking (rankings are cached in the snapshot):
    # the order escalation prefers, and the qualities from best to worst, negated for bisect.
    _escalation_order: list[Scored] | None = None
    _neg_qualities: list[float] | None = None

    def escalation_order(self) -> list[Scored]:
        if self._escalation_order is None:
            # Reasoning-capable first, then the best quality, cheaper first among equals.
            self._escalation_order = sorted(
                self.by_id.values(), key=lambda c: (not c.model.reasoning, -round(c.quality, 2), c.cost_f, c.model.id)
            )
        return self._escalation_order

    def better_than(self, quality: float) -> int:
        """How many candidates have a quality above `quality`."""
        if self._neg_qualities is None:
            self._neg_qualities = sorted(-c.quality for c in self.by_id.values())
        return bisect.bisect_left(self._neg_qualities, -(quality + 1e-9))


def static_rejection(model: ModelInfo, required: frozenset[str], min_context: int) -> str | None:
    """Why a model can never serve these requirements (None when it can)."""
    if not model.active:
        return "missing"
    if not model.enabled:
        return "disabled"
    if model.expired:
        return "expired"
    if model.variable_pricing:
        return "variable_pricing"
    if not model.priced:
        return "unpriced"
    if min_context and model.context_length < min_context:
        return "context_too_small"
    for capability in CAPABILITIES:  # a fixed order, so the counts of a 422 are stable
        if capability in required and capability not in model.capabilities:
            return f"lacks_{capability}"
    return None


def _bucket(tokens: int) -> int:
    return int(round(math.log2(tokens + 1) * 2))


def ranked_for(
    snap: Snapshot, role: RoleInfo, category: str | None, accuracy: str, required: frozenset[str], min_context: int,
    input_tokens: int, output_tokens: int,
) -> Ranking:
    key = (role.slug, category, accuracy, required, min_context, _bucket(input_tokens), _bucket(output_tokens))
    ranking = snap.cache.get(key)
    if ranking is None:
        if len(snap.cache) >= RANKING_CACHE_SIZE:
            snap.cache.clear()  # many distinct request shapes: start over rather than grow
        ranking = snap.cache[key] = _rank(snap, role, category, accuracy, required, min_context, input_tokens, output_tokens)
    return ranking


def _rank(snap, role, category, accuracy, required, min_context, input_tokens, output_tokens) -> Ranking:
    rejected: dict[str, int] = {}
    eligible: list[ModelInfo] = []
    for model in snap.models.values():
        reason = static_rejection(model, required, min_context) or ("unhealthy" if model.id in snap.down else None)
        if reason:
            rejected[reason] = rejected.get(reason, 0) + 1
        else:
            eligible.append(model)
    if not eligible:
        return Ranking([], {}, rejected)

    costs = {m.id: m.estimated_cost_f(input_tokens, output_tokens) for m in eligible}
    positive = [c for c in costs.values() if c > 0]
    low = math.log(min(positive)) if positive else 0.0
    high = math.log(max(positive)) if positive else 0.0
    w_quality, w_reliability, w_cost = WEIGHTS[accuracy]
    memory_category = category or ""

    scored: dict[str, Scored] = {}
    for model in eligible:
        prior, prior_source = snap.prior_quality(model, category)
        outcome = snap.outcomes.get((model.id, role.slug, memory_category))
        n = outcome.requests if outcome else 0
        s = outcome.successes if outcome else 0
        quality = (s + PRIOR_STRENGTH * prior) / (n + PRIOR_STRENGTH)
        reliability = snap.reliability.get(model.id)
        reliability_value = DEFAULT_RELIABILITY if reliability is None else reliability
        cost = costs[model.id]
        if cost <= 0 or high == low:
            cost_score = 1.0
        else:
            cost_score = 1.0 - (math.log(cost) - low) / (high - low)
        score = w_quality * quality + w_reliability * reliability_value + w_cost * cost_score
        scored[model.id] = Scored(
            model=model,
            score=score,
            quality=quality,
            parts={
                "quality": round(quality, 4),
                "prior": round(prior, 4),
                "prior_source": prior_source,
                "samples": n,
                "success_rate": round(s / n, 4) if n else None,
                "learned_weight": round(n / (n + PRIOR_STRENGTH), 4),
                "reliability": round(reliability_value, 4),
                "reliability_known": reliability is not None,
                "cost_score": round(cost_score, 4),
                "weights": {"quality": w_quality, "reliability": w_reliability, "cost": w_cost},
            },
            cost_f=cost,
            preferred=None,
        )

    preferred: list[Scored] = []
    for position, (model_id, family_id) in enumerate(role.preferences):
        if model_id:
            members = [scored[model_id]] if model_id in scored else []
        else:
            members = sorted((c for c in scored.values() if c.model.family_id == family_id), key=lambda c: -c.score)
        for candidate in members:
            if candidate.preferred is None:
                candidate.preferred = position
                preferred.append(candidate)
    rest = [c for c in scored.values() if c.preferred is None]
    if accuracy == Accuracy.HIGH:
        rest.sort(key=lambda c: (not c.model.reasoning, -c.score, c.model.id))
    else:
        rest.sort(key=lambda c: (-c.score, c.model.id))
    return Ranking(preferred + rest, scored, rejected)


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


def bootstrap_answer(req: RouteRequest) -> dict:
    models = [m for m in settings.BOOTSTRAP_FALLBACK_MODELS if m not in set(req.exclude)]
    if not models:
        raise RoutingError(422, "no_eligible_model", "The catalog is empty and every bootstrap model is excluded.", rejected={"excluded": len(settings.BOOTSTRAP_FALLBACK_MODELS)})
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
    if not snap.models:
        return bootstrap_answer(req)

    category = req.category or role.default_category
    accuracy = req.accuracy or role.default_accuracy
    budget = book.state_for(role=role.slug, strategy=req.strategy)
    downgraded = None
    if budget is not None and budget.state == BudgetState.EXHAUSTED:
        if budget.budget.action == BudgetAction.BLOCK:
            raise RoutingError(
                402, "budget_exhausted",
                f"Budget '{budget.budget.name}' is exhausted ({budget.spent_usd.normalize():f} of {budget.budget.limit_usd.normalize():f} USD this {budget.budget.period}).",
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
    for candidate in ranking.ordered:
        model = candidate.model
        reason = None
        if model.id in excluded:
            reason = "excluded"
        elif req.max_cost_usd is not None and model.estimated_cost(input_tokens, output_tokens) > req.max_cost_usd:
            reason = "over_max_cost"
        elif model.id in model_budgets and model_budgets[model.id].state == BudgetState.EXHAUSTED:
            reason = "budget_exhausted"
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
            422, "no_eligible_model",
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


# --- Escalation ----------------------------------------------------------------------------------

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
    snap: Snapshot, role: RoleInfo, current: str, ranking: Ranking, blocked: set[str], model_budgets: dict[str, BudgetStatus]
) -> tuple[str, str] | None:
    """The model to try after `current` fails: (model id, 'override' or 'dynamic'), or None."""
    def usable(model_id: str) -> bool:
        if model_id in blocked or model_id not in ranking.by_id:
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
    snap: Snapshot, role: RoleInfo, start: str, ranking: Ranking, blocked: set[str], model_budgets: dict[str, BudgetStatus],
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
        snap, role, category, Accuracy.HIGH, role.required, role.min_context,
        req.estimated_input_tokens or DEFAULT_INPUT_TOKENS, req.estimated_output_tokens or DEFAULT_OUTPUT_TOKENS,
    )
    budget = book.state_for(role=role.slug, strategy=req.strategy)
    if budget is not None and budget.state == BudgetState.EXHAUSTED and budget.budget.action == BudgetAction.BLOCK:
        raise RoutingError(402, "budget_exhausted", f"Budget '{budget.budget.name}' is exhausted.", budget=_budget_out(budget))
    model_budgets = _model_budgets(book, role.slug, req.strategy)
    chain = escalation_chain(snap, role, req.failed_model, ranking, set(req.exclude), model_budgets)
    return {
        "model": chain[0]["model"] if chain else None,
        "chain": [step["model"] for step in chain],
        "steps": chain,
        "source": chain[0]["source"] if chain else None,
        "catalog_version": snap.catalog_version,
    }
