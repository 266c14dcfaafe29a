"""What a call cost, from the catalog's prices in force when it happened.

The catalog keeps the current price on the model and every change in PriceChange (field, old,
new, observed_at). The price of a field at time t is the `old` of the earliest change observed
after t, or the current price when nothing changed since.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from catalog.models import CATALOG_VERSION, PRICE_FIELDS, PRICE_KEYS, CatalogModel, PriceChange
from core.models import DataVersion

# The prices a chat completion's cost depends on.
COST_KEYS = ("prompt", "completion", "request", "internal_reasoning", "input_cache_read", "input_cache_write")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0  # reasoning tokens are counted inside, as OpenRouter reports them
    reasoning_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens read from the cache
    cache_write_tokens: int = 0  # prompt tokens written to the cache


def cost_of(prices: dict[str, Decimal | None], usage: Usage) -> Decimal | None:
    """The exact cost in USD, or None when the model has no usable price (never 'free' by default).

    Prompt tokens read from or written to the cache are charged at the cache prices when the
    model has them, else at the prompt price; reasoning tokens at the internal_reasoning price
    when there is one, else as completion tokens (which is how OpenRouter counts them).
    """
    prompt, completion = prices.get("prompt"), prices.get("completion")
    if prompt is None or completion is None:
        return None
    cache_read = prices.get("input_cache_read")
    cache_write = prices.get("input_cache_write")
    reasoning = prices.get("internal_reasoning")

    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    fresh = usage.prompt_tokens - cached - written
    cost = fresh * prompt
    cost += cached * (cache_read if cache_read is not None else prompt)
    cost += written * (cache_write if cache_write is not None else prompt)

    thought = min(usage.reasoning_tokens, usage.completion_tokens) if reasoning is not None else 0
    cost += (usage.completion_tokens - thought) * completion + thought * (reasoning or 0)
    cost += prices.get("request") or 0
    return Decimal(cost)


class PriceBook:
    """The prices of a set of models at any moment since `since`, read in two queries."""

    def __init__(self, current: dict[str, dict[str, Decimal | None]], variable: set[str], changes) -> None:
        self.current = current
        self.variable = variable
        # (model, field) -> ([observed_at...], [old...]) sorted by time
        self._changes: dict[tuple[str, str], tuple[list[datetime], list[Decimal | None]]] = {}
        grouped: dict[tuple[str, str], list[tuple[datetime, Decimal | None]]] = defaultdict(list)
        for model_id, field, observed_at, old in changes:
            grouped[(model_id, field)].append((observed_at, old))
        for key, rows in grouped.items():
            rows.sort(key=lambda row: row[0])
            self._changes[key] = ([r[0] for r in rows], [r[1] for r in rows])

    @classmethod
    def load(cls, model_ids: Iterable[str] | None, since: datetime) -> PriceBook:
        """The book of `model_ids` (every model: None) for moments after `since`."""
        models, changes = CatalogModel.objects.all(), PriceChange.objects.filter(observed_at__gt=since)
        if model_ids is not None:
            ids = list(set(model_ids))
            if not ids:
                return cls({}, set(), [])
            models, changes = models.filter(id__in=ids), changes.filter(model_id__in=ids)
        current: dict[str, dict[str, Decimal | None]] = {}
        variable: set[str] = set()
        for row in models.values("id", "variable_pricing", *PRICE_FIELDS):
            current[row["id"]] = {key: row[f"price_{key}"] for key in PRICE_KEYS}
            if row["variable_pricing"]:
                variable.add(row["id"])
        return cls(current, variable, list(changes.values_list("model_id", "field", "observed_at", "old")))

    def prices_at(self, model_id: str, moment: datetime) -> dict[str, Decimal | None] | None:
        """The model's prices in force at `moment`; None for a model this book does not know."""
        now = self.current.get(model_id)
        if now is None:
            return None
        prices = dict(now)
        for key in COST_KEYS:
            history = self._changes.get((model_id, key))
            if history:
                times, olds = history
                later = bisect_right(times, moment)
                if later < len(times):
                    prices[key] = olds[later]
        return prices

    def cost(self, model_id: str, moment: datetime, usage: Usage) -> Decimal | None:
        if model_id in self.variable:
            return None  # a router's price depends on the model it picked: only the report knows
        prices = self.prices_at(model_id, moment)
        return None if prices is None else cost_of(prices, usage)


@dataclass(frozen=True)
class CatalogPrices:
    """What ingest needs of the catalog: how a reported model string maps to a catalog id, and
    every model's prices for moments after `since`."""

    version: int | None
    since: datetime
    ids: frozenset[str]
    by_slug: dict[str, str]  # canonical slug -> the model that carries it
    book: PriceBook

    @classmethod
    def load(cls, version: int | None, horizon: timedelta) -> CatalogPrices:
        by_slug: dict[str, list[str]] = defaultdict(list)
        ids = []
        for model_id, slug in CatalogModel.objects.values_list("id", "canonical_slug"):
            ids.append(model_id)
            if slug:
                by_slug[slug].append(model_id)
        since = timezone.now() - horizon
        return cls(
            version=version,
            since=since,
            ids=frozenset(ids),
            # When variants share the slug (`:free`, `:thinking`): the base model, without a suffix.
            by_slug={slug: min(group, key=lambda i: (":" in i, len(i), i)) for slug, group in by_slug.items()},
            book=PriceBook.load(None, since),
        )

    def resolve(self, refs: Iterable[str]) -> dict[str, str]:
        """Map what the orchestrator reported to catalog ids: a catalog id matches itself, else the
        canonical slug OpenRouter answers with (`openai/gpt-5.4-nano-20260317`) names its model."""
        resolved = {}
        for ref in refs:
            model_id = ref if ref in self.ids else self.by_slug.get(ref)
            if model_id is not None:
                resolved[ref] = model_id
        return resolved


class CatalogPriceCache:
    """`CatalogPrices` kept in the process while the catalog data version stands.

    Ingest asks once per batch: one indexed read of the catalog's version, instead of reading the
    reported models, their prices and their price history. The version moves with every sync
    and every edit of a model or price change, in the transaction that makes it, so a batch is
    never priced from a catalog older than the one committed when it starts. The history held
    starts HORIZON before the load and stays right for as long as the version stands; a batch
    with an event older than its start reads a book of its own."""

    HORIZON = timedelta(days=35)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prices: CatalogPrices | None = None

    def current(self) -> CatalogPrices:
        version = DataVersion.objects.filter(name=CATALOG_VERSION).values_list("version", flat=True).first()
        prices = self._prices
        if prices is None or prices.version != version:
            with self._lock:
                prices = self._prices
                if prices is None or prices.version != version:
                    prices = self._prices = CatalogPrices.load(version, self.HORIZON)
        return prices

    def clear(self) -> None:
        self._prices = None


catalog_prices = CatalogPriceCache()
