"""Scoring and ranking the models for a route, read from the in-process snapshot.

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
applied while walking the memoised ranking (routing.decision).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from decimal import Decimal

from catalog.models import CAPABILITIES
from core.money import money_per
from routing.models import Accuracy
from routing.snapshot import ModelInfo, RoleInfo, Snapshot

# (quality, reliability, cost)
WEIGHTS = {
    Accuracy.HIGH: (0.65, 0.20, 0.15),
    Accuracy.BALANCED: (0.45, 0.20, 0.35),
    Accuracy.ECONOMY: (0.20, 0.15, 0.65),
}
PRIOR_STRENGTH = 10  # the prior weighs as much as this many outcomes
DEFAULT_RELIABILITY = 0.95  # a model no health check has seen yet
RANKING_CACHE_SIZE = 4096


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


def learned_quality(successes: int, requests: int, prior: float) -> float:
    """The success rate shrunk toward the prior while samples are few: the mean of a Beta
    posterior whose prior weighs PRIOR_STRENGTH outcomes. The score and /rankings both read it."""
    return (successes + PRIOR_STRENGTH * prior) / (requests + PRIOR_STRENGTH)


def internal_rankings(snap, *, role: str | None, category: str | None, min_samples: int, limit: int) -> list[dict]:
    """Models by learned quality from the outcomes in the snapshot (of one role and category when
    given), with OpenRouter's rank of the category beside each. Money stays Decimal."""
    totals: dict[str, list] = {}
    for (model, outcome_role, outcome_category), outcome in snap.outcomes.items():
        if (role and outcome_role != role) or (category and outcome_category != category):
            continue
        t = totals.setdefault(model, [0, 0, Decimal(0)])
        t[0] += outcome.requests
        t[1] += outcome.successes
        t[2] += outcome.cost
    openrouter = snap.rankings.get(category or "", {})
    rows = []
    for model_id, (n, s, cost) in totals.items():
        if n < min_samples:
            continue
        info = snap.models.get(model_id)
        prior = snap.prior_quality(info, category)[0] if info else 0.5
        rows.append(
            {
                "model": model_id,
                "requests": n,
                "successes": s,
                "success_rate": round(s / n, 4) if n else None,
                "learned_quality": round(learned_quality(s, n, prior), 4),
                "openrouter_rank": openrouter.get(model_id),
                "cost_per_success_usd": money_per(cost, s),
            }
        )
    rows.sort(key=lambda r: (-r["learned_quality"], -r["requests"], r["model"]))
    rows = rows[:limit]
    for i, row in enumerate(rows, start=1):
        row["rank"] = i
    return rows


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


def role_rejection(model: ModelInfo, role: RoleInfo) -> str | None:
    """Why a model can never serve this role, beyond its capabilities and context (None when it
    can): what the role demands of a model itself. Computed once per model and role for each
    snapshot, so it may be as slow as it needs to be."""
    if model.free_variant and not role.allow_free:
        return "free_variant"  # rate-limited, and the provider may log prompts: only where allowed
    if not model.output_modalities <= role.output_modalities:
        return "wrong_output_modality"  # e.g. an image-output model for a text role
    return None


def _bucket(tokens: int) -> int:
    return int(round(math.log2(tokens + 1) * 2))


def ranked_for(
    snap: Snapshot,
    role: RoleInfo,
    category: str | None,
    accuracy: str,
    required: frozenset[str],
    min_context: int,
    input_tokens: int,
    output_tokens: int,
) -> Ranking:
    key = (role.slug, category, accuracy, required, min_context, _bucket(input_tokens), _bucket(output_tokens))
    ranking = snap.cache.get(key)
    if ranking is None:
        if len(snap.cache) >= RANKING_CACHE_SIZE:
            snap.cache.clear()  # many distinct request shapes: start over rather than grow
        ranking = snap.cache[key] = _rank(
            snap, role, category, accuracy, required, min_context, input_tokens, output_tokens
        )
    return ranking


def _rank(snap, role, category, accuracy, required, min_context, input_tokens, output_tokens) -> Ranking:
    rejected: dict[str, int] = {}
    eligible: list[ModelInfo] = []
    for model in snap.models.values():
        reason = (
            static_rejection(model, required, min_context)
            or role_rejection(model, role)
            or ("unhealthy" if model.id in snap.down else None)
        )
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
        quality = learned_quality(s, n, prior)
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
