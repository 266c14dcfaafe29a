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
applied while walking the memoised ranking (routing.decision). Which models are eligible, with
their priors, reliability, prices and endpoint speed, moves neither with the size, the accuracy
nor outcomes: memoised once per role, category and requirements until health changes
(_eligible), so a request shape not seen yet only prices, weighs and sorts them. A ranking
whose shape new outcomes touched is updated for the models that moved (_updated), not made again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from catalog.models import CAPABILITIES
from core.money import money_per
from core.versions import pause
from routing.models import Accuracy
from routing.providers import endpoint_rejection
from routing.snapshot import ModelInfo, RoleInfo, Snapshot

# (quality, reliability, cost, latency)
WEIGHTS = {
    Accuracy.HIGH: (0.65, 0.20, 0.15, 0.0),
    Accuracy.BALANCED: (0.45, 0.20, 0.35, 0.0),
    Accuracy.ECONOMY: (0.20, 0.15, 0.65, 0.0),
}
# A request that asks for speed ("optimize": "latency"): the expected time to the last token
# weighs most, quality still counts.
LATENCY_WEIGHTS = (0.30, 0.15, 0.15, 0.40)
PRIOR_STRENGTH = 10  # the prior weighs as much as this many outcomes
DEFAULT_RELIABILITY = 0.95  # a model no health check has seen yet
NEUTRAL_LATENCY = 0.5  # the latency score of a model whose speed nobody has measured
RANKING_CACHE_SIZE = 4096
# Stale rankings a new snapshot updates before it is used (prepare): a few hundred microseconds
# each, in the background refresh, instead of in the first request of each shape.
PREPARED_RANKINGS = 512
HEAD = 64  # candidates sorted when a ranking is made (the rest when a walk reaches them)
CAPABILITY_BITS = {capability: 1 << i for i, capability in enumerate(CAPABILITIES)}


@dataclass(slots=True)
class Scored:
    model: ModelInfo
    score: float
    quality: float
    parts: dict
    cost_f: float
    preferred: int | None  # position among the role's preferences, None when not preferred
    # The Beta posterior behind `quality` (for exploration) and the rest of the score.
    successes: int = 0
    samples: int = 0
    prior: float = 0.5
    rest: float = 0.0  # the score less its quality part
    w_quality: float = 0.0
    # (input tokens, output tokens, the candidate as /route shows it): routing.decision writes it
    # once per estimate, as answers are made again when cooldowns or budgets move.
    shown: tuple | None = None


class Columns:
    """The catalog as arrays, for scoring every model of a request shape at once.

    Built once per catalog and routing version. Models are in id order, so an array position
    is also the tie-break. What depends on a role (its demands, role_rejection) or a category
    (the priors) is computed the first time it is asked for, once.
    """

    def __init__(self, snap: Snapshot) -> None:
        self.models = sorted(snap.models.values(), key=lambda m: m.id)
        self.index = {m.id: i for i, m in enumerate(self.models)}
        models = self.models
        self.prompt = np.array([m.prompt_f for m in models], dtype=float)
        self.completion = np.array([m.completion_f for m in models], dtype=float)
        self.request = np.array([m.request_f for m in models], dtype=float)
        self.context = np.array([m.context_length for m in models], dtype=np.int64)
        self.caps = np.array(
            [sum(CAPABILITY_BITS[c] for c in m.capabilities if c in CAPABILITY_BITS) for m in models], dtype=np.int64
        )
        self.reasoning = np.array([m.reasoning for m in models], dtype=bool)
        self.family = np.array([m.family_id if m.family_id is not None else -1 for m in models], dtype=np.int64)
        self.base_ok = np.array([static_rejection(m, frozenset(), 0) is None for m in models], dtype=bool)
        self.latency = np.array([_known(getattr(m, "latency_ms", None)) for m in models], dtype=float)
        self.throughput = np.array([_known(getattr(m, "throughput", None)) for m in models], dtype=float)
        self._roles: dict[str, tuple[list[str | None], np.ndarray]] = {}
        self._priors: dict[str | None, tuple[np.ndarray, list[str]]] = {}

    def role_reasons(self, role: RoleInfo) -> tuple[list[str | None], np.ndarray]:
        found = self._roles.get(role.slug)
        if found is None:
            reasons = [role_rejection(m, role) for m in self.models]
            found = self._roles[role.slug] = (reasons, np.array([r is None for r in reasons], dtype=bool))
        return found

    def priors(self, snap: Snapshot, category: str | None) -> tuple[np.ndarray, list[str]]:
        found = self._priors.get(category)
        if found is None:
            pairs = [snap.prior_quality(m, category) for m in self.models]
            found = self._priors[category] = (np.array([p for p, _ in pairs], dtype=float), [s for _, s in pairs])
        return found


def _known(value) -> float:
    return float(value) if value is not None and value > 0 else math.nan


def columns(snap: Snapshot) -> Columns:
    if snap.columns is None:
        snap.columns = Columns(snap)
    return snap.columns


def prepare(snap: Snapshot) -> None:
    """What the first decision of each role and category would otherwise pay for, computed when
    the snapshot is built (in the background, for another process's change): the catalog's
    arrays, each role's eligibility, each ranked or default category's priors, the health arrays,
    and the rankings requests were using that new outcomes made stale (Snapshot.hot), updated for
    the models that moved, up to PREPARED_RANKINGS of them (the rest are updated when asked for)."""
    cols = columns(snap)
    for role in snap.roles.values():
        cols.role_reasons(role)
    for category in {None, *snap.rankings, *(r.default_category for r in snap.roles.values())}:
        cols.priors(snap, category)
    _health_arrays(snap, cols)
    for key in snap.hot[:PREPARED_RANKINGS]:
        stale = snap.stale.pop(key, None)
        if stale is not None:
            snap.cache[key] = _updated(snap, *stale)
            pause()  # (each a few hundred microseconds: core.versions)
    snap.hot = ()


def _health_arrays(snap: Snapshot, cols: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability (a default where unknown), whether it is known, and the models down right now."""
    found = snap.health_arrays
    if found is None:
        reliability = np.full(len(cols.models), DEFAULT_RELIABILITY)
        known = np.zeros(len(cols.models), dtype=bool)
        for model_id, value in snap.reliability.items():
            i = cols.index.get(model_id)
            if i is not None:
                reliability[i], known[i] = value, True
        down = np.zeros(len(cols.models), dtype=bool)
        for model_id in snap.down:
            i = cols.index.get(model_id)
            if i is not None:
                down[i] = True
        found = snap.health_arrays = (reliability, known, down)
    return found


def _shape_arrays(snap: Snapshot, cols: Columns, role: str, category: str) -> tuple[np.ndarray, ...]:
    """Samples, successes and observed latency (NaN where unknown) of each model for a role and
    category. Arrays made for an earlier snapshot whose shape new outcomes touched since
    (Snapshot.stale_arrays) are copied with only the models that moved read again."""
    key = (role, category)
    found = snap.shape_arrays.get(key)
    if found is None:
        outcomes = snap.book.by_shape.get(key, {})
        stale = snap.stale_arrays.get(key)
        if stale is None:
            n, s = np.zeros(len(cols.models), dtype=float), np.zeros(len(cols.models), dtype=float)
            latency, models = np.full(len(cols.models), math.nan), outcomes
        else:
            (n, s, latency), models = (a.copy() for a in stale[0]), stale[1]
        for model_id in models:
            i = cols.index.get(model_id)
            outcome = outcomes.get(model_id)
            if i is not None and outcome is not None:
                n[i], s[i] = outcome.requests, outcome.successes
                latency[i] = outcome.latency_ms_sum / outcome.latency_count if outcome.latency_count else math.nan
        found = snap.shape_arrays[key] = (n, s, latency)
    return found


class _ById:
    """Ranking.by_id: the eligible candidates by model id, each built when first asked for."""

    def __init__(self, ranking: Ranking) -> None:
        self._ranking = ranking

    def __contains__(self, model_id: str) -> bool:
        return self._ranking.local(model_id) is not None

    def __getitem__(self, model_id: str) -> Scored:
        local = self._ranking.local(model_id)
        if local is None:
            raise KeyError(model_id)
        return self._ranking.scored(local)

    def __len__(self) -> int:
        return len(self._ranking.idx)

    def values(self) -> Iterator[Scored]:
        return (self._ranking.scored(i) for i in range(len(self._ranking.idx)))


class Ranking:
    """The eligible models of one request shape, scored and ordered (arrays; a candidate's
    `Scored`, with its parts, is built only when a walk reaches it)."""

    def __init__(self, snap: Snapshot, cols: Columns, role: RoleInfo, shape: tuple, arrays: dict | None) -> None:
        # (The snapshot's `down`, not the snapshot: a ranking is carried to later snapshots, and a
        # reference back would keep each replaced snapshot alive until a full garbage collection.)
        self.down, self.cols, self.role, self.shape = snap.down, cols, role, shape
        empty = np.zeros(0, dtype=np.int64)
        a = arrays or {}
        self.idx = a.get("idx", empty)
        self.order = a.get("order", empty)
        self.values = a
        self.preferred_at: dict[int, int] = a.get("preferred_at", {})
        self._built: dict[int, Scored] = {}
        self._order: list[int] | None = None
        self._rejected: dict[str, int] | None = None
        self._above: dict[float, list[int]] = {}  # escalation_above, per floor (a model's quality)
        self.by_id = _ById(self)

    @property
    def ordered(self) -> Iterator[Scored]:
        if self._order is None:
            self._order = self.order.tolist()  # Python ints: a walk reads a few, many times
        yield from map(self.scored, self._order)
        if not self.values.get("complete", True):
            # Walked past the sorted head (most candidates rejected per request): sort the rest.
            v = self.values
            rest_at = v["rest_at"]
            full = rest_at[np.lexsort((self.idx[rest_at], v["sort_key"][rest_at]))].tolist()
            yield from map(self.scored, full[len(self._order) - len(self.preferred_at) :])

    def local(self, model_id: str) -> int | None:
        g = self.cols.index.get(model_id)
        if g is None or not len(self.idx):
            return None
        i = int(self.values["local"][g])
        return i if i >= 0 else None

    def scored(self, i: int) -> Scored:
        found = self._built.get(i)
        if found is None:
            found = self._built[i] = self._build(i)
        return found

    def _build(self, i: int) -> Scored:
        v = self.values
        w_quality, w_reliability, w_cost, w_latency = v["weights"]
        n, s = int(v["n"][i]), int(v["s"][i])
        quality, prior = float(v["quality"][i]), float(v["prior"][i])
        parts = {
            "quality": round(quality, 4),
            "prior": round(prior, 4),
            "prior_source": v["sources"][int(self.idx[i])],
            "samples": n,
            "success_rate": round(s / n, 4) if n else None,
            "learned_weight": round(n / (n + PRIOR_STRENGTH), 4),
            "reliability": round(float(v["reliability"][i]), 4),
            "reliability_known": bool(v["reliability_known"][i]),
            "cost_score": round(float(v["cost_score"][i]), 4),
            "expected_latency_ms": None if math.isnan(v["expected_ms"][i]) else round(float(v["expected_ms"][i])),
            "latency_source": "ledger" if v["measured"][i] else "endpoints" if v["timed"][i] else "unknown",
            "latency_score": round(float(v["latency_score"][i]), 4),
            "weights": {"quality": w_quality, "reliability": w_reliability, "cost": w_cost, "latency": w_latency},
        }
        score = float(v["score"][i])
        return Scored(
            model=self.cols.models[int(self.idx[i])],
            score=score,
            quality=quality,
            parts=parts,
            cost_f=float(v["cost"][i]),
            preferred=self.preferred_at.get(i),
            successes=s,
            samples=n,
            prior=prior,
            rest=score - w_quality * quality,
            w_quality=w_quality,
        )

    @property
    def rejected(self) -> dict[str, int]:
        """How many models were left out, per reason (walked only when a 422 needs it)."""
        if self._rejected is None:
            _, _, required, min_context = self.shape
            reasons, _ = self.cols.role_reasons(self.role)
            down = self.down
            counts: dict[str, int] = {}
            for model, role_reason in zip(self.cols.models, reasons, strict=True):
                reason = (
                    static_rejection(model, required, min_context)
                    or role_reason
                    or ("unhealthy" if model.id in down else None)
                )
                if reason:
                    counts[reason] = counts.get(reason, 0) + 1
            self._rejected = counts
        return self._rejected

    def escalation_above(self, floor: float) -> Iterator[ModelInfo]:
        """The candidates of a quality above `floor`, in the order escalation prefers:
        reasoning-capable first, then the best quality, cheaper first among equals. (Only those
        above the floor are sorted: a new shape's chain pays for the few it can step to.)"""
        found = self._above.get(floor)
        if found is None:
            found = []
            if len(self.idx):
                v = self.values
                above = np.flatnonzero(v["quality"] > floor + 1e-9)
                keys = (self.idx[above], v["cost"][above], -np.round(v["quality"][above], 2), v["not_reasoning"][above])
                found = self.idx[above[np.lexsort(keys)]].tolist()
            if len(self._above) >= 64:
                self._above.clear()
            self._above[floor] = found
        return (self.cols.models[g] for g in found)

    def model(self, model_id: str) -> ModelInfo | None:
        """The model, when it is a candidate of this ranking."""
        i = self.local(model_id)
        return None if i is None else self.cols.models[int(self.idx[i])]

    def quality_of(self, model_id: str) -> float | None:
        i = self.local(model_id)
        return None if i is None else float(self.values["quality"][i])


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
    return endpoint_rejection(model, role)


def token_bucket(tokens: int) -> int:
    """The size class a token count is ranked in: rankings are memoised per bucket (routing.replay
    memoises its decisions on the same buckets)."""
    return int(round(math.log2(tokens + 1) * 2))


def weights_for(accuracy: str, optimize: str | None, changed: dict | None = None) -> tuple[float, float, float, float]:
    """The weights of an accuracy (or of a request optimising for latency); `changed` is a
    policy's under evaluation (Snapshot.weights, routing.policies), None in live routing."""
    if optimize == "latency":
        return LATENCY_WEIGHTS
    return changed.get(accuracy, WEIGHTS[accuracy]) if changed else WEIGHTS[accuracy]


def ranked_for(
    snap: Snapshot,
    role: RoleInfo,
    category: str | None,
    accuracy: str,
    required: frozenset[str],
    min_context: int,
    input_tokens: int,
    output_tokens: int,
    optimize: str | None = None,
    preferences: bool = True,
) -> Ranking:
    """The memoised ranking of a request shape. `preferences=False` ranks the role's preferred
    models among the rest, by score (an exhausted budget's downgrade: routing.decision)."""
    weights = weights_for(accuracy, optimize, snap.weights)
    key = (
        role.slug,
        category,
        accuracy,
        required,
        min_context,
        token_bucket(input_tokens),
        token_bucket(output_tokens),
        weights,
        preferences,
    )
    ranking = snap.cache.get(key)
    if ranking is None:
        if len(snap.cache) >= RANKING_CACHE_SIZE:
            snap.cache.clear()  # many distinct request shapes: start over rather than grow
            snap.stale.clear()
        stale = snap.stale.pop(key, None)
        if stale is not None:  # made before new outcomes of its shape: updated for the models that moved
            ranking = _updated(snap, *stale)
        else:
            ranking = _rank(
                snap, role, category, accuracy, required, min_context, input_tokens, output_tokens, weights, preferences
            )
        snap.cache[key] = ranking
    return ranking


def _log_scale(values: np.ndarray, known: np.ndarray, lower_is_better: bool = True) -> np.ndarray:
    """1 for the best known value, 0 for the worst, on a log scale; 1 where all are equal."""
    out = np.ones(len(values))
    if known.any():
        logs = np.log(values[known])
        low, high = logs.min(), logs.max()
        if high > low:
            out[known] = 1.0 - (logs - low) / (high - low)
    return out


def _eligible(snap: Snapshot, cols: Columns, role: RoleInfo, category: str | None, required, min_context: int) -> dict:
    """What a ranking reads that moves neither with the request's size nor with outcomes: the
    eligible models of a role, category and requirements, their prior, reliability, prices and
    endpoint speed. Memoised on the snapshot (Snapshot.eligible) until health, the catalog or
    the roles change; every new token size or accuracy of the shape starts from it."""
    key = (role.slug, category, required, min_context)
    found = snap.eligible.get(key)
    if found is not None:
        return found
    _, role_ok = cols.role_reasons(role)
    reliability_all, known_all, down = _health_arrays(snap, cols)
    mask = cols.base_ok & role_ok & ~down
    if min_context:
        mask &= cols.context >= min_context
    bits = sum(CAPABILITY_BITS[c] for c in required if c in CAPABILITY_BITS)
    if bits:
        mask &= (cols.caps & bits) == bits
    idx = np.flatnonzero(mask)
    found = {"idx": idx}
    if idx.size:
        prior_all, sources = cols.priors(snap, category)
        throughput = cols.throughput[idx]
        streaming = ~np.isnan(throughput)
        local = np.full(len(cols.models), -1, dtype=np.int64)
        local[idx] = np.arange(len(idx))
        found.update(
            prior=prior_all[idx],
            sources=sources,
            reliability=reliability_all[idx],
            reliability_known=known_all[idx],
            prompt=cols.prompt[idx],
            completion=cols.completion[idx],
            request=cols.request[idx],
            endpoint_ms=cols.latency[idx],
            # The output's time at the endpoint's throughput, per token (0 where that is unknown).
            ms_per_token=np.where(streaming, 1000.0 / np.where(streaming, throughput, 1.0), 0.0),
            local=local,
            family=cols.family[idx],
            not_reasoning=~cols.reasoning[idx],
        )
    if len(snap.eligible) >= RANKING_CACHE_SIZE:
        snap.eligible.clear()
    snap.eligible[key] = found
    return found


def _rank(
    snap, role, category, accuracy, required, min_context, input_tokens, output_tokens, weights, preferences=True
) -> Ranking:
    cols = columns(snap)
    shape = (category, accuracy, required, min_context)
    e = _eligible(snap, cols, role, category, required, min_context)
    idx = e["idx"]
    if idx.size == 0:
        return Ranking(snap, cols, role, shape, None)
    n_all, s_all, observed_all = _shape_arrays(snap, cols, role.slug, category or "")
    cost = e["prompt"] * input_tokens + e["completion"] * output_tokens + e["request"]
    values = {
        **e,
        **_learned(n_all[idx], s_all[idx], observed_all[idx], e["prior"], e["endpoint_ms"]),
        "cost": cost,
        "cost_score": _log_scale(cost, cost > 0),
        "output_tokens": output_tokens,
        "weights": weights,
        "preferences": preferences,
    }
    return _ordered(snap, cols, role, shape, values)


def _learned(n, s, observed, prior, endpoint_ms) -> dict[str, np.ndarray]:
    """The parts of candidates that move with outcomes, from their samples, successes and the
    latency observed in the ledger (NaN where none): the quality (learned_quality, as arrays),
    and the latency the expected time starts from: the whole call as the ledger saw it, else
    OpenRouter's endpoint time to the first token (_ordered adds the output to the latter only)."""
    measured = ~np.isnan(observed)
    return {
        "n": n,
        "s": s,
        "quality": (s + PRIOR_STRENGTH * prior) / (n + PRIOR_STRENGTH),
        "measured": measured,
        "first_ms": np.where(measured, observed, endpoint_ms),
    }


def _updated(snap: Snapshot, old: Ranking, moved: frozenset[str]) -> Ranking:
    """`old`, a ranking made on an earlier snapshot of the same catalog, roles and health, with
    the outcomes of the `moved` models as they are now: what _rank would make (its prices and
    endpoint figures do not move with outcomes), without pricing and filtering the catalog
    again; the candidates it had built that did not move are kept."""
    cols = columns(snap)
    v = old.values
    if not len(old.idx):
        return old
    local = v["local"]
    at = sorted({int(local[g]) for g in map(cols.index.get, moved) if g is not None and local[g] >= 0})
    if not at:
        return old
    at = np.array(at, dtype=np.int64)
    g = old.idx[at]
    n_all, s_all, observed_all = _shape_arrays(snap, cols, old.role.slug, old.shape[0] or "")
    values = dict(v)
    for name, moved_parts in _learned(
        n_all[g], s_all[g], observed_all[g], v["prior"][at], v["endpoint_ms"][at]
    ).items():
        values[name] = v[name].copy()
        values[name][at] = moved_parts
    ranking = _ordered(snap, cols, old.role, old.shape, values)
    ranking._rejected = old._rejected
    if np.array_equal(ranking.values["latency_score"], v["latency_score"]):
        # (A moved latency can move the scale of every candidate; otherwise the rest stand.)
        moved_at = set(at.tolist())
        ranking._built = {i: c for i, c in old._built.copy().items() if i not in moved_at}
    return ranking


def _ordered(snap: Snapshot, cols: Columns, role: RoleInfo, shape: tuple, values: dict) -> Ranking:
    """The ranking of `values` (the candidates' parts but the score): scored and ordered."""
    v, idx, accuracy = values, values["idx"], shape[1]
    # The expected time to the last token: a usage event's latency_ms is the whole call (the
    # output included), so the ledger's is taken as it is; an endpoint's is the time to the first
    # token, so the output at the endpoint's throughput is added to it.
    expected = np.where(v["measured"], v["first_ms"], v["first_ms"] + v["output_tokens"] * v["ms_per_token"])
    timed = ~np.isnan(expected)
    latency_score = np.where(timed, _log_scale(np.where(timed, expected, 1.0), timed), NEUTRAL_LATENCY)
    w_quality, w_reliability, w_cost, w_latency = v["weights"]
    score = (
        w_quality * v["quality"]
        + w_reliability * v["reliability"]
        + w_cost * v["cost_score"]
        + w_latency * latency_score
    )

    # The role's preferences first, in their order (a family's members best first), then the rest.
    local = v["local"]
    preferred_at: dict[int, int] = {}
    preferred: list[int] = []
    for position, (model_id, family_id) in enumerate(role.preferences if v["preferences"] else ()):
        if model_id:
            g = cols.index.get(model_id)
            members = [int(local[g])] if g is not None and local[g] >= 0 else []
        else:
            members = sorted(np.flatnonzero(v["family"] == family_id).tolist(), key=lambda i: -score[i])
        for i in members:
            if i not in preferred_at:
                preferred_at[i] = position
                preferred.append(i)
    if preferred:
        rest = np.ones(len(idx), dtype=bool)
        rest[preferred] = False
        rest_at = np.flatnonzero(rest)
    else:
        rest_at = np.arange(len(idx))
    # The order of the rest: by score (reasoning-capable first for `high`), model id among equals.
    # A walk rarely reads past the first few, so only the head is sorted now: every candidate
    # that ties with or beats the HEAD-th (so ties are broken exactly as a full sort would).
    sort_key = -score if accuracy != Accuracy.HIGH else v["not_reasoning"] * 2.0 - score
    head = rest_at
    if len(rest_at) > HEAD:
        keys = sort_key[rest_at] if preferred else sort_key
        head = rest_at[keys <= np.partition(keys, HEAD)[HEAD]]
    head = head[np.lexsort((idx[head], sort_key[head]))]
    values = {
        **v,
        "order": np.concatenate([np.array(preferred, dtype=np.int64), head]) if preferred else head,
        "complete": len(head) == len(rest_at),
        "rest_at": rest_at,
        "sort_key": sort_key,
        "preferred_at": preferred_at,
        "expected_ms": expected,
        "timed": timed,
        "latency_score": latency_score,
        "score": score,
    }
    return Ranking(snap, cols, role, shape, values)
