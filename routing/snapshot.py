"""Everything a routing decision reads, held in the process and rebuilt when the data changes.

A decision reads the catalog, the roles with their preferences and overrides, the strategy
memory, health and budget state from a `Snapshot`. `current_snapshot()` compares the data
versions the snapshot was built from with the stored ones (through the shared `version_watch`,
at most one query per check interval for the whole process) and rebuilds only what changed. In
steady state a decision makes no query. With the database unreachable the last snapshot stays
in use (the watch is then `degraded`, which the answers say).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import DatabaseError
from django.utils import timezone

from catalog.models import CAPABILITIES, CATALOG_VERSION, PRICE_KEYS, CatalogModel, Category, Family, ModelStatus
from catalog.selectors import bootstrap_fallback_models, current_rankings_queryset
from core import metrics
from core.models import version_watch
from health.models import HEALTH_VERSION
from health.selectors import down_models, reliability_by_model
from routing.cooldowns import EMPTY_BOOK, CooldownBook, load_book
from routing.models import (
    COOLDOWN_VERSION,
    ROUTING_VERSION,
    STATS_VERSION,
    EscalationOverride,
    Role,
    RolePreference,
    StrategyStat,
)

RECENT = timedelta(days=180)
# The data a decision depends on (API keys have their own cache).
INPUTS = (CATALOG_VERSION, ROUTING_VERSION, STATS_VERSION, HEALTH_VERSION, COOLDOWN_VERSION)


@dataclass(slots=True)
class ModelInfo:
    id: str
    name: str
    author: str
    family_id: int | None
    family_slug: str | None
    capabilities: frozenset[str]
    context_length: int
    prices: dict[str, Decimal | None]
    variable_pricing: bool
    active: bool
    enabled: bool
    expired: bool
    recent: bool
    # prompt and completion as floats, for scoring only (money stays Decimal in answers).
    prompt_f: float = 0.0
    completion_f: float = 0.0
    request_f: float = 0.0

    @property
    def priced(self) -> bool:
        return self.prices.get("prompt") is not None and self.prices.get("completion") is not None

    @property
    def reasoning(self) -> bool:
        return "supports_reasoning" in self.capabilities

    def estimated_cost(self, input_tokens: int, output_tokens: int) -> Decimal | None:
        prompt, completion = self.prices.get("prompt"), self.prices.get("completion")
        if prompt is None or completion is None:
            return None
        return prompt * input_tokens + completion * output_tokens + (self.prices.get("request") or 0)

    def estimated_cost_f(self, input_tokens: int, output_tokens: int) -> float:
        return self.prompt_f * input_tokens + self.completion_f * output_tokens + self.request_f


@dataclass(slots=True)
class RoleInfo:
    id: int
    slug: str
    required: frozenset[str]
    min_context: int
    default_category: str | None
    default_accuracy: str
    preferences: list[tuple[str | None, int | None]]  # (model id, family id), in order


@dataclass(slots=True)
class OverrideInfo:
    from_model: str | None
    from_family: int | None
    to_model: str
    role_id: int | None
    position: int


@dataclass(slots=True)
class Outcomes:
    requests: int = 0
    successes: int = 0
    cost: float = 0.0

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None


@dataclass
class Snapshot:
    versions: dict[str, int]
    models: dict[str, ModelInfo]
    rankings: dict[str, dict[str, int]]  # category -> model -> rank
    roles: dict[str, RoleInfo]
    overrides: list[OverrideInfo]
    families: dict[int, str]
    # (model, role, category) -> outcomes over every strategy; (role, category) -> strategy -> outcomes
    outcomes: dict[tuple[str, str, str], Outcomes]
    strategy_outcomes: dict[tuple[str, str], dict[str, Outcomes]]
    reliability: dict[str, float]
    # Models failing their health checks right now: never chosen (see health.selectors).
    down: frozenset[str] = frozenset()
    # The bootstrap fallback list when it applies (no routable model and the last sync failed).
    bootstrap: tuple[str, ...] = ()
    # Price scale of the catalog, for the catalog-signal prior (log of a typical prompt price).
    log_price_low: float = 0.0
    log_price_high: float = 1.0
    # Models cooling down (routing.cooldowns): applied while walking a ranking, not in it.
    cooldowns: CooldownBook = EMPTY_BOOK
    # Memoised static rankings: see scoring.ranked_for().
    cache: dict = field(default_factory=dict)

    @property
    def catalog_version(self) -> str:
        return "-".join(f"{self.versions.get(name, 0):x}" for name in INPUTS)

    def prior_quality(self, model: ModelInfo, category: str | None) -> tuple[float, str]:
        """Quality before any outcome: the category ranking when there is one, else what the catalog says."""
        ranks = self.rankings.get(category or "")
        if ranks:
            rank = ranks.get(model.id)
            if rank is not None:
                return 1.0 - 0.6 * (rank - 1) / max(len(ranks) - 1, 1), f"rank {rank} of {len(ranks)} in {category}"
        # Catalog signals: reasoning, tools, long context, price tier (what providers charge for
        # tracks capability), recency.
        score = 0.35
        score += 0.15 if model.reasoning else 0.0
        score += 0.05 if "supports_tools" in model.capabilities else 0.0
        score += 0.05 if model.context_length >= 128_000 else 0.0
        if model.prompt_f > 0 and self.log_price_high > self.log_price_low:
            tier = (math.log10(model.prompt_f) - self.log_price_low) / (self.log_price_high - self.log_price_low)
            score += 0.25 * min(max(tier, 0.0), 1.0)
        score += 0.05 if model.recent else 0.0
        return min(score, 0.95), "catalog signals"


def _models() -> tuple[dict[str, ModelInfo], dict[int, str]]:
    today = timezone.now().date()
    recent = timezone.now() - RECENT
    families = dict(Family.objects.values_list("id", "slug"))
    fields = [
        "id",
        "name",
        "author",
        "family_id",
        "context_length",
        "variable_pricing",
        "status",
        "enabled",
        "expiration_date",
        "created",
        *CAPABILITIES,
    ]
    fields += [f"price_{k}" for k in PRICE_KEYS]
    models: dict[str, ModelInfo] = {}
    for row in CatalogModel.objects.values(*fields):
        prices = {k: row[f"price_{k}"] for k in PRICE_KEYS}
        models[row["id"]] = ModelInfo(
            id=row["id"],
            name=row["name"],
            author=row["author"],
            family_id=row["family_id"],
            family_slug=families.get(row["family_id"]),
            capabilities=frozenset(c for c in CAPABILITIES if row[c]),
            context_length=row["context_length"] or 0,
            prices=prices,
            variable_pricing=row["variable_pricing"],
            active=row["status"] == ModelStatus.ACTIVE,
            enabled=row["enabled"],
            expired=row["expiration_date"] is not None and row["expiration_date"] <= today,
            recent=row["created"] is not None and row["created"] >= recent,
            prompt_f=float(prices["prompt"] or 0),
            completion_f=float(prices["completion"] or 0),
            request_f=float(prices["request"] or 0),
        )
    return models, families


def _rankings() -> dict[str, dict[str, int]]:
    rankings: dict[str, dict[str, int]] = {}
    for slug, model_id, rank in (
        current_rankings_queryset().filter(category__active=True).values_list("category__slug", "model_id", "rank")
    ):
        rankings.setdefault(slug, {})[model_id] = rank
    return rankings


def _roles() -> tuple[dict[str, RoleInfo], list[OverrideInfo]]:
    categories = dict(Category.objects.values_list("id", "slug"))
    roles: dict[str, RoleInfo] = {}
    by_id: dict[int, RoleInfo] = {}
    for role in Role.objects.filter(active=True):
        info = RoleInfo(
            id=role.pk,
            slug=role.slug,
            required=frozenset(role.required_capabilities or []),
            min_context=role.min_context_length or 0,
            default_category=categories.get(role.default_category_id),
            default_accuracy=role.default_accuracy,
            preferences=[],
        )
        roles[role.slug] = by_id[role.pk] = info
    for pref in RolePreference.objects.order_by("role_id", "position", "id").values_list(
        "role_id", "model_id", "family_id"
    ):
        if pref[0] in by_id:
            by_id[pref[0]].preferences.append((pref[1], pref[2]))
    overrides = [
        OverrideInfo(o.from_model_id, o.from_family_id, o.to_model_id, o.role_id, o.position)
        for o in EscalationOverride.objects.order_by("position", "id")
    ]
    return roles, overrides


def _outcomes() -> tuple[dict, dict]:
    outcomes: dict[tuple[str, str, str], Outcomes] = {}
    strategies: dict[tuple[str, str], dict[str, Outcomes]] = {}
    for model, role, category, strategy, requests, successes, cost in StrategyStat.objects.values_list(
        "model", "role", "category", "strategy", "requests", "successes", "cost_usd"
    ).iterator(chunk_size=5000):
        o = outcomes.setdefault((model, role, category), Outcomes())
        o.requests += requests
        o.successes += successes
        o.cost += float(cost)
        if strategy:
            s = strategies.setdefault((role, category), {}).setdefault(strategy, Outcomes())
            s.requests += requests
            s.successes += successes
            s.cost += float(cost)
    return outcomes, strategies


def _reliability() -> tuple[dict[str, float], frozenset[str]]:
    return reliability_by_model(), frozenset(down_models())


def build_snapshot(versions: dict[str, int], previous: Snapshot | None = None) -> Snapshot:
    """Rebuild what changed since `previous` (everything when there is none)."""

    def changed(*names: str) -> bool:
        return previous is None or any(previous.versions.get(n) != versions.get(n) for n in names)

    if changed(CATALOG_VERSION):
        models, families = _models()
        rankings = _rankings()
        bootstrap = tuple(bootstrap_fallback_models())
    else:
        models, families, rankings, bootstrap = (
            previous.models,
            previous.families,
            previous.rankings,
            previous.bootstrap,
        )
    if changed(ROUTING_VERSION, CATALOG_VERSION):
        roles, overrides = _roles()
    else:
        roles, overrides = previous.roles, previous.overrides
    if changed(STATS_VERSION):
        outcomes, strategy_outcomes = _outcomes()
    else:
        outcomes, strategy_outcomes = previous.outcomes, previous.strategy_outcomes
    reliability, down = _reliability() if changed(HEALTH_VERSION) else (previous.reliability, previous.down)
    cooldowns = load_book() if changed(COOLDOWN_VERSION, ROUTING_VERSION) else previous.cooldowns
    # Cooldowns are not in the memoised rankings: a trip alone keeps them.
    cache = previous.cache if not changed(*(n for n in INPUTS if n != COOLDOWN_VERSION)) else {}

    logs = sorted(math.log10(m.prompt_f) for m in models.values() if m.prompt_f > 0 and m.active)
    low = logs[len(logs) // 20] if logs else 0.0
    high = logs[len(logs) - 1 - len(logs) // 20] if logs else 1.0
    return Snapshot(
        versions=dict(versions),
        models=models,
        rankings=rankings,
        roles=roles,
        overrides=overrides,
        families=families,
        outcomes=outcomes,
        strategy_outcomes=strategy_outcomes,
        reliability=reliability,
        down=down,
        bootstrap=bootstrap,
        log_price_low=low,
        log_price_high=high,
        cooldowns=cooldowns,
        cache=cache,
    )


class SnapshotHolder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._confirmed_at = 0.0

    def get(self) -> Snapshot:
        stored = version_watch.versions()
        versions = {name: stored.get(name, 0) for name in INPUTS}
        snapshot = self._snapshot
        if snapshot is None or snapshot.versions != versions:
            with self._lock:
                snapshot = self._snapshot
                if snapshot is None or snapshot.versions != versions:
                    try:
                        snapshot = self._snapshot = build_snapshot(versions, snapshot)
                    except DatabaseError:
                        # Cut while rebuilding: answer from the last snapshot; the next check
                        # after the database returns rebuilds it.
                        version_watch.database_failed()
                        if snapshot is None:
                            raise
        # The snapshot matches the versions read at `loaded_at`: it was current then. (A float
        # compared per decision; the gauge is written once per version check.)
        if version_watch.loaded_at != self._confirmed_at and snapshot.versions == versions:
            self._confirmed_at = version_watch.loaded_at
            metrics.snapshot_confirmed.set(self._confirmed_at)
        return snapshot

    def clear(self) -> None:
        self._snapshot = None
        self._confirmed_at = 0.0


holder = SnapshotHolder()


def current_snapshot() -> Snapshot:
    return holder.get()
