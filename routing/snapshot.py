"""Everything a routing decision reads, held in the process and rebuilt when the data changes.

A decision reads the catalog, the roles with their preferences and overrides, the strategy
memory, health and budget state from a `Snapshot`. `current_snapshot()` compares the data
versions the snapshot was built from with the stored ones (through the shared `version_watch`,
at most one query per check interval for the whole process) and rebuilds only what changed. In
steady state a decision makes no query. With the database unreachable the last snapshot stays
in use (the watch is then `degraded`, which the answers say).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from functools import cached_property

from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.utils import timezone

from catalog.models import (
    CAPABILITIES,
    CATALOG_VERSION,
    PRICE_KEYS,
    CatalogModel,
    Category,
    Family,
    ModelEndpoint,
    ModelStatus,
)
from catalog.selectors import bootstrap_fallback_models, current_rankings_queryset
from core import heap, metrics
from core.models import version_watch
from core.upsert import changed_since, snapshot_now
from core.versions import BackgroundRefresh, pause
from health.models import HEALTH_VERSION
from health.selectors import down_models, reliability_by_model
from routing.cooldowns import EMPTY_BOOK, CooldownBook, load_book
from routing.models import (
    COOLDOWN_VERSION,
    ROUTING_VERSION,
    STATS_RESET_VERSION,
    STATS_VERSION,
    EscalationOverride,
    QualityPrior,
    Role,
    RolePreference,
    StrategyStat,
    is_free_variant,
)
from routing.providers import provider_key, provider_rules

logger = logging.getLogger(__name__)

RECENT = timedelta(days=180)
# The data a decision depends on (API keys have their own cache).
INPUTS = (CATALOG_VERSION, ROUTING_VERSION, STATS_VERSION, STATS_RESET_VERSION, HEALTH_VERSION, COOLDOWN_VERSION)
# What a usage batch moves: a process's own such change does not wait for a refresh under way.
MOVED_BY_USAGE = frozenset({STATS_VERSION, COOLDOWN_VERSION})
PAUSE_ROWS = 16  # rows read between two pauses of a background refresh (core.versions.pause)


@dataclass(slots=True)
class EndpointInfo:
    """One provider endpoint of a model, as research last recorded it (catalog.ModelEndpoint)."""

    provider: str  # the provider's slug as `provider.only` names it ("deepinfra"), from the tag
    tag: str  # the endpoint's tag ("deepinfra/turbo"), or the slug when the tag is blank
    name_key: str  # the provider's name reduced to letters and digits, to match a slug spelled otherwise
    quantization: str  # OpenRouter's value, "unknown" when none was given
    status: int | None  # 0 is up, negative values are degraded states
    latency_ms: float | None  # p50 time to first token over the last 30 minutes
    throughput: float | None  # p50 tokens per second over the last 30 minutes


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
    output_modalities: frozenset[str] = frozenset()
    # prompt and completion as floats, for scoring only (money stays Decimal in answers).
    prompt_f: float = 0.0
    completion_f: float = 0.0
    request_f: float = 0.0
    # The provider endpoints research recorded (empty when it has not looked at this model), with
    # their typical (median over the endpoints that are up) latency in ms and throughput in
    # tokens/s, None when unknown.
    endpoints: tuple[EndpointInfo, ...] = ()
    latency_ms: float | None = None
    throughput: float | None = None

    @property
    def priced(self) -> bool:
        return self.prices.get("prompt") is not None and self.prices.get("completion") is not None

    @property
    def free_variant(self) -> bool:
        return is_free_variant(self.id, self.prices.get("prompt"), self.prices.get("completion"))

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
    exploration_rate: float = 0.0
    # What the role demands of a model's endpoints (routing.providers): provider keys allowed
    # (None: any) and ignored, quantizations allowed (None: any), the latency ceiling in ms.
    endpoint_only: frozenset[str] | None = None
    endpoint_ignore: frozenset[str] = frozenset()
    quantizations: frozenset[str] | None = None
    max_latency_ms: int | None = None
    # The role's part of OpenRouter's `provider` object (None: nothing to say); /route adds max_price.
    provider: dict | None = None
    output_modalities: frozenset[str] = frozenset({"text"})
    allow_free: bool = False


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
    cost: Decimal = Decimal(0)
    latency_ms_sum: int = 0
    latency_count: int = 0

    @property
    def latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.latency_count if self.latency_count else None

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
    # The strategy memory: see OutcomeBook.
    book: OutcomeBook
    reliability: dict[str, float]
    # Models failing their health checks right now: never chosen (see health.selectors).
    down: frozenset[str] = frozenset()
    # The bootstrap fallback list when it applies (no routable model and the last sync failed).
    bootstrap: tuple[str, ...] = ()
    # Price scale of the catalog, for the catalog-signal prior (log of a typical prompt price).
    log_price_low: float = 0.0
    log_price_high: float = 1.0
    # Active category slugs: a request naming another is refused (unknown_category).
    categories: frozenset[str] = frozenset()
    # Imported quality priors (routing.QualityPrior): model id -> (score, label), family id -> (score, label).
    model_priors: dict[str, tuple[float, str]] = field(default_factory=dict)
    family_priors: dict[int, tuple[float, str]] = field(default_factory=dict)
    # Models cooling down (routing.cooldowns): applied while walking a ranking, not in it.
    cooldowns: CooldownBook = EMPTY_BOOK
    # Memoised rankings per request shape, and the catalog as arrays: see routing.scoring.
    cache: dict = field(default_factory=dict)
    # routing.decision's kept answers (ANSWERS_KEPT), by request.
    answers: dict = field(default_factory=dict)
    columns: object = None
    # (role, category) -> that shape's outcomes as arrays over the catalog (routing.scoring).
    shape_arrays: dict = field(default_factory=dict)
    health_arrays: tuple | None = None
    # The eligible models of a role, category and requirements, with what does not move with
    # outcomes (routing.scoring._eligible): kept until health, the catalog or the roles change.
    eligible: dict = field(default_factory=dict)
    # Rankings (by the key of `cache`) and outcome arrays (by the key of `shape_arrays`) of
    # shapes that new outcomes touched, not made again since: each with the models whose
    # outcomes moved since it was made. routing.scoring updates one for those models when it is
    # next asked for, instead of making it again (keep_memoised).
    stale: dict = field(default_factory=dict)
    stale_arrays: dict = field(default_factory=dict)
    # The keys of `stale` whose rankings were current on the previous snapshot (requests were
    # using them): routing.scoring.prepare updates those before the snapshot is put in use.
    hot: tuple = ()
    # Scoring weights per accuracy that differ from routing.scoring.WEIGHTS: only a policy under
    # evaluation sets them (routing.policies); live routing keeps None.
    weights: dict | None = None

    def without_memo(self, **changes) -> Snapshot:
        """This snapshot with `changes` and nothing memoised (routing.policies and
        routing.simulation rank on copies with inputs of their own)."""
        empty = {
            "cache": {},
            "answers": {},
            "shape_arrays": {},
            "eligible": {},
            "stale": {},
            "stale_arrays": {},
            "hot": (),
        }
        return replace(self, **empty, health_arrays=None, **changes)

    @property
    def outcomes(self) -> dict[tuple[str, str, str], Outcomes]:
        """(model, role, category) -> outcomes over every strategy."""
        return self.book.outcomes

    @property
    def strategy_outcomes(self) -> dict[tuple[str, str], dict[str, Outcomes]]:
        """(role, category) -> strategy -> outcomes."""
        return self.book.strategies

    @cached_property
    def catalog_version(self) -> str:
        return "-".join(f"{self.versions.get(name, 0):x}" for name in INPUTS)

    def prior_quality(self, model: ModelInfo, category: str | None) -> tuple[float, str]:
        """Quality before any outcome: the category ranking when there is one, else an imported
        prior for the model or its family, else what the catalog says."""
        ranks = self.rankings.get(category or "")
        if ranks:
            rank = ranks.get(model.id)
            if rank is not None:
                return 1.0 - 0.6 * (rank - 1) / max(len(ranks) - 1, 1), f"rank {rank} of {len(ranks)} in {category}"
        imported = self.model_priors.get(model.id)
        if imported is None and model.family_id is not None:
            imported = self.family_priors.get(model.family_id)
        if imported is not None:
            return imported
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
        "output_modalities",
        *CAPABILITIES,
    ]
    fields += [f"price_{k}" for k in PRICE_KEYS]
    models: dict[str, ModelInfo] = {}
    for i, row in enumerate(CatalogModel.objects.values(*fields)):
        if not i % PAUSE_ROWS:
            pause()
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
            output_modalities=frozenset(row["output_modalities"] or ()),
            prompt_f=float(prices["prompt"] or 0),
            completion_f=float(prices["completion"] or 0),
            request_f=float(prices["request"] or 0),
        )
    _load_endpoints(models)
    return models, families


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _load_endpoints(models: dict[str, ModelInfo]) -> None:
    """Each model's endpoints, in one query (OpenRouter reports latency in milliseconds)."""
    rows = ModelEndpoint.objects.order_by("model_id", "provider_name", "tag").values_list(
        "model_id", "provider_name", "tag", "quantization", "status", "latency_last_30m", "throughput_last_30m"
    )
    by_model: dict[str, list[EndpointInfo]] = {}
    names: dict[tuple[str, str], tuple[str, str, str]] = {}  # a few dozen providers serve thousands of endpoints
    for model_id, provider_name, tag, quantization, status, latency, throughput in rows.iterator(chunk_size=5000):
        named = names.get((provider_name, tag))
        if named is None:
            slug = tag.split("/", 1)[0] if tag else "-".join(provider_name.lower().split())
            named = names[provider_name, tag] = (slug, tag or slug, provider_key(provider_name))
        by_model.setdefault(model_id, []).append(
            EndpointInfo(named[0], named[1], named[2], quantization or "unknown", status, latency, throughput)
        )
    for model_id, endpoints in by_model.items():
        model = models.get(model_id)
        if model is None:
            continue
        up = [e for e in endpoints if e.status is None or e.status >= 0] or endpoints
        model.endpoints = tuple(endpoints)
        model.latency_ms = _median([e.latency_ms for e in up if e.latency_ms is not None])
        model.throughput = _median([e.throughput for e in up if e.throughput is not None])


def _rankings() -> dict[str, dict[str, int]]:
    rankings: dict[str, dict[str, int]] = {}
    for slug, model_id, rank in (
        current_rankings_queryset().filter(category__active=True).values_list("category__slug", "model_id", "rank")
    ):
        rankings.setdefault(slug, {})[model_id] = rank
    return rankings


def _categories() -> frozenset[str]:
    return frozenset(Category.objects.filter(active=True).values_list("slug", flat=True))


def _priors() -> tuple[dict[str, tuple[float, str]], dict[int, tuple[float, str]]]:
    models: dict[str, tuple[float, str]] = {}
    families: dict[int, tuple[float, str]] = {}
    for prior in QualityPrior.objects.all():
        if prior.model_id:
            models[prior.model_id] = (prior.score, prior.label)
        else:
            families[prior.family_id] = (prior.score, prior.label)
    return models, families


def _roles() -> tuple[dict[str, RoleInfo], list[OverrideInfo]]:
    # A default category retired since the role chose it is no default: priors speak, as for none.
    categories = dict(Category.objects.filter(active=True).values_list("id", "slug"))
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
            exploration_rate=role.exploration_rate,
            **provider_rules(role),
            output_modalities=frozenset(role.output_modalities or ()),
            allow_free=role.allow_free,
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


STAT_FIELDS = ("requests", "successes", "cost_usd", "latency_ms_sum", "latency_count")


@dataclass
class OutcomeBook:
    """The strategy memory as the snapshot reads it, refreshed row by row.

    `rows` holds each memory row (model, role, category, strategy) as read; the sums a decision
    reads (per model for a role and category, per strategy for a role and category) are derived
    from them. A refresh reads only the rows written since the last one and recomputes only the
    (role, category) shapes they belong to, so outcomes flowing in at a thousand events a second
    cost each worker one small query per version check and drop only the rankings they touch.
    """

    rows: dict[tuple[str, str, str, str], tuple] = field(default_factory=dict)
    outcomes: dict[tuple[str, str, str], Outcomes] = field(default_factory=dict)
    by_shape: dict[tuple[str, str], dict[str, Outcomes]] = field(default_factory=dict)
    strategies: dict[tuple[str, str], dict[str, Outcomes]] = field(default_factory=dict)
    read_at: object = None  # when the rows were read (the next refresh reads what changed since)
    # On PostgreSQL, the database snapshot taken just before the rows were read: the next
    # refresh reads exactly the rows committed since (core.upsert.changed_since).
    read_snapshot: tuple[str, int] | None = None

    @classmethod
    def load(cls) -> OutcomeBook:
        book = cls(read_at=timezone.now(), read_snapshot=_database_snapshot())
        rows = StrategyStat.objects.values_list("model", "role", "category", "strategy", *STAT_FIELDS)
        book._take(rows.iterator(chunk_size=5000))
        return book

    def refreshed(self) -> tuple[OutcomeBook, dict[tuple[str, str], set[str]]]:
        """A new book with the rows written since this one was read, and the (role, category)
        shapes that changed, each with the models whose outcomes moved.

        On PostgreSQL the rows are those whose writing transaction the last read's snapshot did
        not see: exactly what committed since, however late a batch commits. Elsewhere (SQLite,
        or inside a transaction, whose own writes a snapshot cannot tell apart) rows are re-read
        from a little before the last read (LLMHIVE_STATS_REFRESH_LAG_SECONDS), so a batch
        committed late (its rows stamped before its commit) is not missed. Re-reading a row is
        harmless either way, as rows hold totals."""
        snapshot = _database_snapshot()
        pause()
        book = OutcomeBook(
            rows=dict(self.rows),
            outcomes=dict(self.outcomes),
            by_shape=dict(self.by_shape),
            strategies=dict(self.strategies),
            read_at=timezone.now(),
            read_snapshot=snapshot,
        )
        pause()
        if snapshot is not None and self.read_snapshot is not None:
            changed = changed_since(StrategyStat.objects.all(), "changed_in", self.read_snapshot)
        else:
            since = self.read_at - timedelta(seconds=settings.LLMHIVE_STATS_REFRESH_LAG_SECONDS)
            changed = StrategyStat.objects.filter(updated_at__gte=since)
        rows = changed.values_list("model", "role", "category", "strategy", *STAT_FIELDS)
        # (read in chunks, each turned into Python objects as it is taken in: the background refresh
        # pauses between them, not only after all of them)
        return book, book._take(rows.iterator(chunk_size=PAUSE_ROWS * 16))

    def _take(self, rows) -> dict[tuple[str, str], set[str]]:
        """Take rows (totals) in: each changed row moves the sums it belongs to by its
        difference from what was read before. Sums and the per-shape dicts are replaced, never
        changed in place: the previous snapshot may still be read by another thread. Returns the
        (role, category) shapes touched, each with the models whose outcomes moved."""
        touched: dict[tuple[str, str], set[str]] = {}
        copied: set[tuple[str, str]] = set()
        for i, (model, role, category, strategy, *sums) in enumerate(rows):
            if not i % PAUSE_ROWS:
                pause()  # (a thousand rows are several milliseconds of Python)
            key = (model, role, category, strategy)
            new = tuple(sums)
            old = self.rows.get(key)
            if old == new:
                continue  # re-read within the lag, unchanged
            self.rows[key] = new
            shape = (role, category)
            if shape not in copied:
                copied.add(shape)
                self.by_shape[shape] = dict(self.by_shape.get(shape, {}))
                self.strategies[shape] = dict(self.strategies.get(shape, {}))
            touched.setdefault(shape, set()).add(model)
            self.by_shape[shape][model] = self.outcomes[(model, role, category)] = _moved(
                self.by_shape[shape].get(model), old, new
            )
            if strategy:
                self.strategies[shape][strategy] = _moved(self.strategies[shape].get(strategy), old, new)
        return touched


def _database_snapshot() -> tuple[str, int] | None:
    """PostgreSQL's snapshot now, when this connection is outside any transaction (a snapshot
    cannot tell its own transaction's later writes from earlier ones); otherwise None."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    return snapshot_now()


def _moved(outcome: Outcomes | None, old: tuple | None, new: tuple) -> Outcomes:
    """A new Outcomes: `outcome` with a row's totals moved from `old` to `new`."""
    base = outcome or Outcomes()
    requests, successes, cost, latency_sum, latency_count = new
    if old is not None:
        requests, successes, cost = requests - old[0], successes - old[1], cost - old[2]
        latency_sum, latency_count = latency_sum - old[3], latency_count - old[4]
    return Outcomes(
        requests=base.requests + requests,
        successes=base.successes + successes,
        cost=base.cost + cost,
        latency_ms_sum=base.latency_ms_sum + latency_sum,
        latency_count=base.latency_count + latency_count,
    )


def _log_price_bounds(models: dict[str, ModelInfo]) -> tuple[float, float]:
    """The 5th and 95th percentiles of the active models' log10 prompt prices (the cost part's scale)."""
    logs = sorted(math.log10(m.prompt_f) for m in models.values() if m.prompt_f > 0 and m.active)
    low = logs[len(logs) // 20] if logs else 0.0
    high = logs[len(logs) - 1 - len(logs) // 20] if logs else 1.0
    return low, high


def _reliability() -> tuple[dict[str, float], frozenset[str]]:
    reliability = reliability_by_model()
    pause()
    return reliability, frozenset(down_models())


def build_snapshot(versions: dict[str, int], previous: Snapshot | None = None) -> Snapshot:
    """Rebuild what changed since `previous` (everything when there is none).

    What a change touches is all that is redone: new outcomes re-read only the memory rows
    written since and drop only the memoised rankings of the (role, category) shapes they
    belong to; a health change recomputes reliability; the catalog as arrays (with each role's
    eligibility and each category's priors) is rebuilt only when the catalog or the routing
    data change.
    """

    def changed(*names: str) -> bool:
        return previous is None or any(previous.versions.get(n) != versions.get(n) for n in names)

    if changed(CATALOG_VERSION):
        models, families = _models()
        rankings = _rankings()
        categories = _categories()
        bootstrap = tuple(bootstrap_fallback_models())
        pause()
    else:
        models, families, rankings, categories, bootstrap = (
            previous.models,
            previous.families,
            previous.rankings,
            previous.categories,
            previous.bootstrap,
        )
    if changed(ROUTING_VERSION, CATALOG_VERSION):
        roles, overrides = _roles()
        model_priors, family_priors = _priors()
        pause()
    else:
        roles, overrides = previous.roles, previous.overrides
        model_priors, family_priors = previous.model_priors, previous.family_priors
    touched: dict[tuple[str, str], set[str]] | None = {}
    if changed(STATS_RESET_VERSION) or previous.book.read_at is None:
        book, touched = OutcomeBook.load(), None
    elif changed(STATS_VERSION):
        book, touched = previous.book.refreshed()
    else:
        book = previous.book
    pause()
    health_changed = changed(HEALTH_VERSION)
    reliability, down = _reliability() if health_changed else (previous.reliability, previous.down)
    pause()
    cooldowns = load_book() if changed(COOLDOWN_VERSION, ROUTING_VERSION) else previous.cooldowns
    pause()

    if changed(CATALOG_VERSION):
        low, high = _log_price_bounds(models)
    else:
        low, high = previous.log_price_low, previous.log_price_high
    snapshot = Snapshot(
        versions=dict(versions),
        models=models,
        rankings=rankings,
        roles=roles,
        overrides=overrides,
        families=families,
        book=book,
        reliability=reliability,
        down=down,
        bootstrap=bootstrap,
        log_price_low=low,
        log_price_high=high,
        categories=categories,
        model_priors=model_priors,
        family_priors=family_priors,
        cooldowns=cooldowns,
    )
    if previous is not None and not changed(CATALOG_VERSION, ROUTING_VERSION):
        pause()
        keep_memoised(snapshot, previous, touched, health_changed)
    return snapshot


def keep_memoised(
    snapshot: Snapshot, previous: Snapshot, touched: dict[tuple[str, str], set[str]] | None, health_changed: bool
) -> None:
    """Carry over to `snapshot` what `previous` memoised that is still valid, on the same catalog
    and roles: the catalog's arrays always; the rankings and outcome arrays of every (role,
    category) shape new outcomes did not touch (`touched`: each touched shape with the models
    whose outcomes moved; None: the whole memory was reloaded, nothing is kept); those of the
    touched shapes as stale, with the models that moved (routing.scoring updates them for those
    models when next asked); the kept answers of untouched shapes; rankings, answers,
    eligibility and health arrays only when health did not change.
    build_snapshot and the simulation (routing.simulation, learning online) both call it."""
    # (Requests on `previous` may still be adding to its dicts: each is copied in one step, under
    # the GIL, before it is read; iterating a dict another thread grows raises.)
    snapshot.columns = previous.columns
    if not health_changed:
        snapshot.health_arrays, snapshot.eligible = previous.health_arrays, previous.eligible
    if touched is None:
        return
    if not touched:  # (a cooldown or a budget moved, nothing the rankings read)
        snapshot.shape_arrays, snapshot.stale_arrays = previous.shape_arrays, previous.stale_arrays
        if not health_changed:
            snapshot.cache, snapshot.answers, snapshot.stale = previous.cache, previous.answers, previous.stale
        return
    snapshot.shape_arrays, snapshot.stale_arrays, _ = _set_stale(
        previous.shape_arrays, previous.stale_arrays, touched, lambda key: key
    )
    if not health_changed:
        snapshot.cache, snapshot.stale, snapshot.hot = _set_stale(
            previous.cache, previous.stale, touched, lambda key: (key[0], key[1] or "")
        )
        snapshot.answers = {k: v for k, v in previous.answers.copy().items() if v.shape not in touched}


STALE_KEPT = 4096  # stale entries carried at most (beyond that, they are made again when asked)


def _set_stale(memo: dict, stale: dict, touched: dict[tuple[str, str], set[str]], shape_of) -> tuple[dict, dict, tuple]:
    """`memo` split by `touched`: the entries of untouched shapes (kept as they are), and those of
    touched shapes with the models that moved, added to the entries already stale (whose moved
    models grow by the new ones) but not made again since; then the keys of the stale entries
    that were in `memo` (current until now)."""
    memo, stale = memo.copy(), stale.copy()
    kept, moved, current = {}, {}, []
    for key, (entry, models) in stale.items():
        if key not in memo:
            more = touched.get(shape_of(key))
            moved[key] = (entry, models | more) if more else (entry, models)
    for key, entry in memo.items():
        more = touched.get(shape_of(key))
        if more is None:
            kept[key] = entry
        else:
            moved[key] = (entry, frozenset(more))
            current.append(key)
    if len(moved) > STALE_KEPT:
        return kept, {}, ()
    return kept, moved, tuple(current)


# The inputs in the order a rebuild's cost grows with them (the metric names the largest that moved).
_CHANGES = (
    ("catalog", (CATALOG_VERSION,)),
    ("routing", (ROUTING_VERSION,)),
    ("outcomes", (STATS_RESET_VERSION, STATS_VERSION)),
    ("health", (HEALTH_VERSION,)),
)


def rebuilt_for(previous: Snapshot | None, versions: dict[str, int]) -> str:
    """What a rebuild from `previous` to `versions` is for, as llmhive_snapshot_rebuild_seconds
    labels it: the largest input that moved ("cooldowns" when only they did)."""
    if previous is None:
        return "first"
    for change, names in _CHANGES:
        if any(previous.versions.get(name) != versions.get(name) for name in names):
            return change
    return "cooldowns"


class SnapshotHolder:
    """This process's snapshot, kept current without making a request wait for a rebuild.

    A change made by another process (a sync, a usage batch, a cooldown, an admin edit on another
    worker) is picked up by a background thread while requests go on being answered from the
    snapshot in hand; the new one replaces it when it is ready (within the version check interval
    plus the rebuild, which touches only what changed). A change made by this process is built
    at once, in the request that follows it, so a process always sees its own writes; the
    outcomes of its own usage batches are the exception, read by the background thread as soon
    as the batch is answered (a process sees them within milliseconds, and no request, not even
    the batch's own, waits for them). The first snapshot of a gunicorn worker is built as it
    starts (prewarm); of any other process, in its first request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._confirmed_at = 0.0
        self._background = BackgroundRefresh("llmhive-snapshot")
        self._generation = 0
        self._outcomes_at = -math.inf  # when the held snapshot's outcomes were read (monotonic)
        # (versions read, snapshot): the snapshot found current for those versions, given again
        # without comparing them while the watch holds the very same dict.
        self._current: tuple[dict, Snapshot] | None = None

    def get(self) -> Snapshot:
        stored = version_watch.versions()
        current = self._current
        if current is not None and current[0] is stored and current[1] is self._snapshot:
            return current[1]
        versions = {name: stored.get(name, 0) for name in INPUTS}
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._rebuild(versions)
        elif snapshot.versions != versions:
            here = version_watch.moved_here(snapshot.versions, versions)
            if here:
                snapshot = self._own_change(snapshot, versions, wait=not here <= MOVED_BY_USAGE)
            else:
                versions = self._outcomes_when_due(snapshot, versions)
                if snapshot.versions != versions:
                    self._background.start(self._rebuild, versions, self._generation)
        # The snapshot matches the versions read at `loaded_at`: it was current then. (A float
        # compared per decision; the gauge is written once per version check.)
        if snapshot.versions == versions:
            if version_watch.loaded_at != self._confirmed_at:
                self._confirmed_at = version_watch.loaded_at
                metrics.snapshot_confirmed.set(self._confirmed_at)
            # (Also when other processes' outcomes were deferred: they are asked about again
            # when the watch next reads the versions, within LLMHIVE_SNAPSHOT_CHECK_SECONDS.)
            self._current = (stored, snapshot)
        return snapshot

    def _own_change(self, held: Snapshot, versions: dict[str, int], wait: bool) -> Snapshot:
        """This process's own change, seen at once, except the outcome rows of its own usage
        batches: those are read by the background refresh, started here (_own_outcomes_later).
        What a usage batch moves (outcomes, cooldowns) does not wait for a refresh under way (it
        is left to the background, a few milliseconds later: otherwise the request would wait
        for the refresh, which steps aside for the requests in flight, this one included); any
        other change of this process (an admin edit, a sync) waits for it, so the next request
        sees it. `held` is the snapshot the caller found (answered meanwhile)."""
        if not self._lock.acquire(blocking=wait):
            self._background.start(self._rebuild, versions, self._generation)
            return self._snapshot or held
        try:
            snapshot = self._snapshot
            # (against the snapshot held now, which a refresh may have replaced meanwhile)
            now = versions if snapshot is None else self._own_outcomes_later(snapshot, versions)
            if snapshot is None or now != snapshot.versions:
                snapshot = self._build(now)
        finally:
            self._lock.release()
        if snapshot.versions != versions:
            self._background.start(self._rebuild, versions, self._generation)
        return snapshot

    @staticmethod
    def _own_outcomes_later(snapshot: Snapshot, versions: dict[str, int]) -> dict[str, int]:
        """The versions to build at once for a change of this process: all of them, but for the
        outcome rows a usage batch wrote (the stats version moved, the memory was not reset),
        which stay as held. Reading those rows and updating the rankings they touch costs a
        batch's own request 5-10 ms; the background refresh does it right after the batch is
        answered, stepping aside for the decisions in flight. A cooldown the batch tripped is
        honoured at once (a cooldown-only rebuild reads one small table). Inside a transaction
        everything is built at once: the background thread could not read what it has not
        committed yet."""
        held = snapshot.versions
        if (
            connection.in_atomic_block
            or versions[STATS_RESET_VERSION] != held.get(STATS_RESET_VERSION)
            or STATS_VERSION not in held
        ):
            return versions
        return {**versions, STATS_VERSION: held[STATS_VERSION]}

    def _outcomes_when_due(self, snapshot: Snapshot, versions: dict[str, int]) -> dict[str, int]:
        """Other processes' new outcomes are taken in at most every LLMHIVE_OUTCOMES_CHECK_SECONDS:
        under a steady flow of usage the stats version moves with every batch, and reading the
        rows at every version check would keep each worker refreshing. Until then the snapshot
        stays at the stats it has; anything else that moved (cooldowns, catalog, health) is
        built at the next check as before."""
        held = snapshot.versions
        if (
            versions[STATS_VERSION] != held.get(STATS_VERSION)
            and versions[STATS_RESET_VERSION] == held.get(STATS_RESET_VERSION)
            and time.monotonic() - self._outcomes_at < settings.LLMHIVE_OUTCOMES_CHECK_SECONDS
        ):
            return {**versions, STATS_VERSION: held[STATS_VERSION]}
        return versions

    def _rebuild(self, versions: dict[str, int], generation: int | None = None) -> Snapshot:
        with self._lock:
            if generation is not None and generation != self._generation:
                return self._snapshot  # cleared while this refresh waited: what it would build is stale
            return self._build(versions)

    def _build(self, versions: dict[str, int]) -> Snapshot:
        """The snapshot for `versions`, built from the one held if it is not that (lock held)."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.versions != versions:
            started = time.monotonic()
            try:
                fresh = build_snapshot(versions, snapshot)
                prepare(fresh)
                metrics.snapshot_rebuilds_by_change[rebuilt_for(snapshot, versions)].observe(time.monotonic() - started)
                if snapshot is None or snapshot.versions.get(STATS_VERSION) != versions.get(STATS_VERSION):
                    self._outcomes_at = started
                first = snapshot is None
                snapshot = self._snapshot = fresh
                if first:
                    heap.warmed_up()
            except DatabaseError:
                # Cut while rebuilding: answer from the last snapshot; the next check
                # after the database returns rebuilds it.
                version_watch.database_failed()
                if snapshot is None:
                    raise
        return snapshot

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait for a background refresh to finish (for tests and benchmarks)."""
        self._background.wait_idle(timeout)

    def holds(self) -> bool:
        return self._snapshot is not None

    def clear(self) -> None:
        self._generation += 1
        self._snapshot, self._current = None, None
        self._outcomes_at = -math.inf
        self._confirmed_at = 0.0


holder = SnapshotHolder()


def prepare(snapshot: Snapshot) -> None:
    from routing.scoring import prepare as prepare_ranking  # (scoring reads the snapshot's types)

    prepare_ranking(snapshot)


def current_snapshot() -> Snapshot:
    return holder.get()


def held_snapshot() -> Snapshot | None:
    """This process's snapshot, re-checked if due, if it holds one; None in a process that has
    routed nothing (and is not to build one for that, as GET /metrics)."""
    return holder.get() if holder.holds() else None


def prewarm() -> bool:
    """A web worker's first snapshot, built as it starts (gunicorn's `post_worker_init`:
    llmhive_site.workers.ready) rather than in its first /route request: no request waits for
    it, and a worker that has routed nothing yet still answers from memory if the database goes
    away. With LLMHIVE_ROUTING_PREWARM off (a pool that only takes usage), nothing. With the
    database away it starts without one, and says so: its first /route builds it, or answers 503
    while the database is still away. Whether it holds one."""
    if not settings.LLMHIVE_ROUTING_PREWARM:
        return False
    try:
        holder.get()
    except DatabaseError:
        logger.warning(
            "routing snapshot not built as the worker started: the database is unreachable "
            "(the first /route request builds it once the database is back)",
            exc_info=True,
        )
    finally:
        connections.close_all()  # (this thread's: requests open their own)
    return holder.holds()


def refresh_after_own_batch(rows: list[dict], **kwargs) -> None:
    """After this process stored a usage batch (costs' usage_ingested): take in at once what the
    batch changed that decisions must honour now (a cooldown it tripped or closed), and start
    the background refresh that reads the batch's outcome rows and updates the rankings they
    touch (SnapshotHolder._own_outcomes_later): it runs as soon as the batch is answered, not in
    the next decision. Only in a process that holds a snapshot (one that routes), and after the
    batch's commit (not inside a caller's transaction, which may yet roll back)."""
    if holder.holds() and not connection.in_atomic_block:
        holder.get()
