"""What a price change does to the bill: last week's traffic of the model at the old and the new prices.

A sync sends `catalog.signals.prices_changed` once per run with every model whose price moved;
`price_change_impact` answers for all of them from one aggregate query over the ledger: the
events of each model in the IMPACT_DAYS before the sync and their token counts by kind (prompt,
cached, cache write, completion, reasoning). The cost of those totals at a set of prices is the
sum of the events' costs (`costs.pricing.cost_of` is linear in the tokens, since an event's cached
and written tokens are within its prompt tokens and its reasoning within its completion, which
ingest enforces), plus the per-request price once per event.

The answer lands in the price-change alert (`weekly_impact_usd`, new minus old, with both costs
and the number of events it rests on, as decimal strings), and so in what its subscribers receive.
A cost is null when the model has no usable price on one side (a router priced per pick, a price
withdrawn): unknown, not zero. A model with no traffic in the week: "0" and 0 events.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Sum

from core.money import decimal_str, usd_display
from costs.models import UsageEvent
from costs.pricing import Usage, cost_of

IMPACT_DAYS = 7
TOKEN_SUMS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens", "cache_write_tokens")


def weekly_usage(model_ids: list[str], at: datetime) -> dict[str, tuple[int, Usage]]:
    """Each model's events in the IMPACT_DAYS before `at` and their token totals: one query."""
    rows = (
        UsageEvent.objects.filter(model_id__in=model_ids, occurred_at__gte=at - timedelta(days=IMPACT_DAYS))
        .filter(occurred_at__lt=at)
        .values("model_id")
        .annotate(events=Count("id"), **{name: Sum(name) for name in TOKEN_SUMS})
        .order_by()
    )
    return {row["model_id"]: (row["events"], Usage(**{name: row[name] for name in TOKEN_SUMS})) for row in rows}


def cost_of_events(prices: dict[str, Decimal | None], events: int, usage: Usage) -> Decimal | None:
    """What `events` calls with these token totals cost: None when the prices cannot say."""
    if not events:
        return Decimal(0)
    tokens = cost_of({**prices, "request": None}, usage)
    return None if tokens is None else tokens + events * (prices.get("request") or 0)


def impact_of(old: dict, new: dict, events: int, usage: Usage, since: datetime) -> tuple[str, dict]:
    """The note for the alert's message and the figures for its details."""
    at_old, at_new = cost_of_events(old, events, usage), cost_of_events(new, events, usage)
    impact = None if at_old is None or at_new is None else at_new - at_old
    details = {
        "weekly_impact_usd": decimal_str(impact),
        "weekly_cost_at_old_usd": decimal_str(at_old),
        "weekly_cost_at_new_usd": decimal_str(at_new),
        "weekly_events": events,
        "weekly_since": since.isoformat(),
    }
    counted = f"{events} event{'' if events == 1 else 's'}"
    if impact is None:
        note = f"last week's traffic, {counted}: cost unknown at the old or the new price"
    else:
        note = f"last week's traffic: {'-' if impact < 0 else '+'}{usd_display(abs(impact))}/week, {counted}"
    return note, details


def price_change_impact(sender, changes: dict[str, tuple[dict, dict]], at: datetime, **kwargs) -> dict:
    """The `prices_changed` receiver: {model id: (note, details)} for every model in `changes`."""
    usage = weekly_usage(list(changes), at)
    since = at - timedelta(days=IMPACT_DAYS)
    return {
        model_id: impact_of(old, new, *usage.get(model_id, (0, Usage())), since=since)
        for model_id, (old, new) in changes.items()
    }
