"""Storing usage reports: validated whole, stored once, rolled up in the same transaction.

Idempotency holds under concurrency because the database decides: one multi-row
`INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING request_id` tells which events of the
batch are new even when another client sends the same ids at the same moment, and the rollup rows
move in the same transaction with `ON CONFLICT … DO UPDATE SET n = n + EXCLUDED.n`. Rows are
written in a fixed order (sorted keys), so two batches touching the same rows cannot deadlock.

A repeat is a duplicate only when it says the same thing: the ids the insert skipped are read back
(one query, only when there are any) and compared with what was sent; a request_id reused for a
different event rolls the batch back with `IdempotencyConflict`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Context, Decimal

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from catalog.categories import record_categories
from catalog.models import CategorySource
from core.alerts import NewAlert, raise_alerts
from core.models import DataVersion, version_watch
from core.upsert import add_to_rows, chunks, json_rows, recordset, values_clause
from costs.models import ERROR_COUNTERS, SPEND_VERSION, DailyCost, UsageEvent, error_counter
from costs.models import AlertKind as CostAlertKind
from costs.pricing import PriceBook, Usage, catalog_prices
from costs.signals import usage_ingested, usage_stored

logger = logging.getLogger(__name__)

EVENT_COLUMNS = (
    "request_id",
    "occurred_at",
    "received_at",
    "model_id",
    "model_ref",
    "role",
    "strategy",
    "category",
    "decision_id",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_usd",
    "computed_cost_usd",
    "success",
    "error",
    "quality_score",
    "latency_ms",
    "escalation_depth",
    "tools",
    "generation_id",
)
ROLLUP_KEY = ("day", "model", "strategy", "role")
ROLLUP_SUMS = (
    "requests",
    "successes",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cost_usd",
    "reported_cost_usd",
    "computed_cost_of_reported_usd",
    "reported_requests",
    "unpriced_requests",
    "latency_ms_sum",
    "latency_count",
    *ERROR_COUNTERS,
)


# What the client said about an event: equal in all of these, a repeat is the same event. Not
# the key itself, nor what the server derives (arrival time, the catalog match, its own cost).
PAYLOAD_COLUMNS = tuple(
    column for column in EVENT_COLUMNS if column not in {"request_id", "received_at", "model_id", "computed_cost_usd"}
)
MAX_NAMED_CONFLICTS = 50
# SQLite keeps a decimal as a REAL of 15 significant digits: a repeat is compared at that precision.
SQLITE_DECIMALS = Context(prec=15)


class IdempotencyConflict(Exception):
    """request_ids sent before (or earlier in the batch) with a different payload."""

    def __init__(self, request_ids: list[str]) -> None:
        self.request_ids = sorted(request_ids)[:MAX_NAMED_CONFLICTS]
        shown = ", ".join(self.request_ids)
        more = (
            f" and {len(request_ids) - len(self.request_ids)} more" if len(request_ids) > len(self.request_ids) else ""
        )
        super().__init__(
            f"request_id reused with a different payload: {shown}{more}. A request_id names one event; "
            "nothing of this batch was stored."
        )


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    unknown_models: list[str] = field(default_factory=list)
    unpriced_models: list[str] = field(default_factory=list)


def ingest_events(events: Sequence[dict]) -> IngestResult:
    """Store a validated batch. Each event is a dict with the keys of the usage contract.

    All or nothing: the events and their rollups commit together, or not at all.
    """
    result = IngestResult()
    # A request_id repeated inside the batch: the first occurrence counts, if the others match it.
    unique: dict[str, dict] = {}
    conflicts: set[str] = set()
    for event in events:
        first = unique.setdefault(event["request_id"], event)
        if first is not event and first != event:
            conflicts.add(event["request_id"])
    if conflicts:
        raise IdempotencyConflict(list(conflicts))
    result.duplicates = len(events) - len(unique)
    if not unique:
        return result

    catalog = catalog_prices.current()
    resolved = catalog.resolve({e["model"] for e in unique.values()})
    since = min(e["occurred_at"] for e in unique.values())
    book = catalog.book if since > catalog.since else PriceBook.load(resolved.values(), since)
    now = timezone.now()

    rows: list[dict] = []
    for request_id in sorted(unique):
        event = unique[request_id]
        model_id = resolved.get(event["model"])
        usage = Usage(
            prompt_tokens=event.get("prompt_tokens") or 0,
            completion_tokens=event.get("completion_tokens") or 0,
            reasoning_tokens=event.get("reasoning_tokens") or 0,
            cached_tokens=event.get("cached_tokens") or 0,
            cache_write_tokens=event.get("cache_write_tokens") or 0,
        )
        computed = book.cost(model_id, event["occurred_at"], usage) if model_id else None
        rows.append(
            {
                "request_id": request_id,
                "occurred_at": event["occurred_at"],
                "received_at": now,
                "model_id": model_id,
                "model_ref": event["model"],
                "role": event.get("role") or "",
                "strategy": event.get("strategy") or "",
                "category": event.get("category") or "",
                "decision_id": event.get("decision_id") or "",
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
                "cached_tokens": usage.cached_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "cost_usd": event.get("cost_usd"),
                "computed_cost_usd": computed,
                "success": bool(event["success"]),
                "error": event.get("error") or "",
                "quality_score": event.get("quality_score"),
                "latency_ms": event.get("latency_ms"),
                "escalation_depth": event.get("escalation_depth") or 0,
                "tools": list(event.get("tools") or []),
                "generation_id": event.get("generation_id") or "",
            }
        )

    with transaction.atomic():
        inserted = _insert_new(rows)
        repeats = [row for row in rows if row["request_id"] not in inserted]
        if repeats:
            _check_repeats(repeats)
        stored = [row for row in rows if row["request_id"] in inserted]
        _move_rollups(stored)
        if stored:
            # The versions the batch moved (the spend, and those the receivers name), written
            # last, in one statement, in the batch's transaction: they move with the data, and
            # no statement or commit of their own follows it (costs.signals).
            moved = {SPEND_VERSION}
            for _, names in usage_stored.send(sender=UsageEvent, rows=stored):
                moved.update(names or ())
            versions = DataVersion.write(*moved)

    result.accepted = len(stored)
    result.duplicates += len(rows) - len(stored)
    if stored:
        result.unknown_models = sorted({r["model_ref"] for r in stored if r["model_id"] is None})
        result.unpriced_models = sorted(
            {
                r["model_id"]
                for r in stored
                if r["model_id"] and r["computed_cost_usd"] is None and r["cost_usd"] is None
            }
        )
        # This process's caches see the batch at once: with the exact values once it committed,
        # by reading them again if a caller's transaction still holds it.
        version_watch.expire(versions, committed=not connection.in_atomic_block)
        _raise_model_alerts(result)
        _note_categories(stored)
        usage_ingested.send(sender=UsageEvent, rows=stored, versions=versions)
    return result


def _payload(row: dict) -> tuple:
    values = [row[c] for c in PAYLOAD_COLUMNS]
    occurred = PAYLOAD_COLUMNS.index("occurred_at")
    values[occurred] = values[occurred].astimezone(UTC)
    cost = PAYLOAD_COLUMNS.index("cost_usd")
    if values[cost] is not None and connection.vendor == "sqlite":
        values[cost] = SQLITE_DECIMALS.create_decimal(values[cost])
    return tuple(values)


def _check_repeats(repeats: list[dict]) -> None:
    """Raise IdempotencyConflict when a stored event differs from its repeat (one query)."""
    stored = UsageEvent.objects.filter(request_id__in=[r["request_id"] for r in repeats]).values_list(
        "request_id", *PAYLOAD_COLUMNS
    )
    before = {request_id: _payload(dict(zip(PAYLOAD_COLUMNS, values, strict=True))) for request_id, *values in stored}
    conflicts = [r["request_id"] for r in repeats if before.get(r["request_id"]) not in (None, _payload(r))]
    if conflicts:
        raise IdempotencyConflict(conflicts)


# PostgreSQL types of the event columns, for the JSON form of the insert (text where not named).
PG_TYPES = {
    "occurred_at": "timestamptz",
    "received_at": "timestamptz",
    "prompt_tokens": "integer",
    "completion_tokens": "integer",
    "reasoning_tokens": "integer",
    "cached_tokens": "integer",
    "cache_write_tokens": "integer",
    "cost_usd": "numeric",
    "computed_cost_usd": "numeric",
    "success": "boolean",
    "quality_score": "double precision",
    "latency_ms": "integer",
    "escalation_depth": "smallint",
    "tools": "jsonb",
}


def _insert_new(rows: list[dict]) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the request_ids that were new."""
    ops = connection.ops
    table = ops.quote_name(UsageEvent._meta.db_table)
    columns = ", ".join(ops.quote_name(c) for c in EVENT_COLUMNS)
    returning = f"ON CONFLICT ({ops.quote_name('request_id')}) DO NOTHING RETURNING {ops.quote_name('request_id')}"
    inserted: set[str] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The whole batch as one JSON parameter: a statement PostgreSQL parses once and
            # psycopg sends without adapting 2,300 values one by one.
            select = recordset([(c, PG_TYPES.get(c, "text")) for c in EVENT_COLUMNS])
            payload = json_rows([[row[c] for c in EVENT_COLUMNS] for row in rows])
            cursor.execute(f"INSERT INTO {table} ({columns}) {select} {returning}", [payload])
            inserted.update(r[0] for r in cursor.fetchall())
            return inserted
        for chunk in chunks(rows, len(EVENT_COLUMNS)):
            params: list = []
            for row in chunk:
                for column in EVENT_COLUMNS:
                    params.append(_adapt(column, row[column]))
            sql = f"INSERT INTO {table} ({columns}) VALUES {values_clause(len(EVENT_COLUMNS), len(chunk))} {returning}"
            cursor.execute(sql, params)
            inserted.update(r[0] for r in cursor.fetchall())
    return inserted


def _adapt(column: str, value):
    ops = connection.ops
    if value is None:
        return None
    if column in ("occurred_at", "received_at"):
        return ops.adapt_datetimefield_value(value)
    if column in ("cost_usd", "computed_cost_usd"):
        return ops.adapt_decimalfield_value(value, 24, 14)
    if column == "tools":
        return json.dumps(value)
    return value


def rollup_deltas(rows: Iterable[dict]) -> dict[tuple, dict]:
    """Sum stored events by (UTC day, model, strategy, role)."""
    deltas: dict[tuple, dict] = {}
    for row in rows:
        key = (
            row["occurred_at"].astimezone(UTC).date(),
            row["model_id"] or row["model_ref"],
            row["strategy"],
            row["role"],
        )
        d = deltas.get(key)
        if d is None:
            d = deltas[key] = dict.fromkeys(ROLLUP_SUMS, 0)
            for name in ("cost_usd", "reported_cost_usd", "computed_cost_of_reported_usd"):
                d[name] = Decimal(0)
        reported, computed = row["cost_usd"], row["computed_cost_usd"]
        d["requests"] += 1
        d["successes"] += 1 if row["success"] else 0
        d["prompt_tokens"] += row["prompt_tokens"]
        d["completion_tokens"] += row["completion_tokens"]
        d["reasoning_tokens"] += row["reasoning_tokens"]
        d["cached_tokens"] += row["cached_tokens"]
        if reported is not None:
            d["cost_usd"] += reported
            d["reported_cost_usd"] += reported
            d["reported_requests"] += 1
            if computed is not None:
                d["computed_cost_of_reported_usd"] += computed
            else:
                # No price of ours to compare with: count the report on both sides (no drift).
                d["computed_cost_of_reported_usd"] += reported
        elif computed is not None:
            d["cost_usd"] += computed
        else:
            d["unpriced_requests"] += 1
        if row["latency_ms"] is not None:
            d["latency_ms_sum"] += row["latency_ms"]
            d["latency_count"] += 1
        if row["error"]:
            d[error_counter(row["error"])] += 1
    return deltas


def _move_rollups(rows: list[dict]) -> None:
    add_to_rows(DailyCost, ROLLUP_KEY, ROLLUP_SUMS, rollup_deltas(rows))


def _note_categories(rows: list[dict]) -> None:
    """Categories the catalog does not know are proposed to its curators (catalog.categories):
    no query when every category of the batch is known to this process, else one statement for
    the unknown ones. The batch is stored whatever happens here."""
    try:
        record_categories({row["category"] for row in rows if row["category"]}, CategorySource.USAGE)
    except DatabaseError:
        logger.warning("could not record the categories of a usage batch", exc_info=True)


def _raise_model_alerts(result: IngestResult) -> None:
    alerts = [
        NewAlert(
            kind=CostAlertKind.UNKNOWN_MODEL_REPORTED,
            subject=ref,
            message=f"Usage was reported for '{ref}', which is not in the catalog (by id or canonical slug). "
            "Its events are stored with the reported string; their cost is what OpenRouter reported, if anything.",
            details={"model_ref": ref},
        )
        for ref in result.unknown_models
    ]
    alerts += [
        NewAlert(
            kind=CostAlertKind.UNPRICED_MODEL,
            model_id=model_id,
            message=f"Usage of {model_id} has no reported cost and the catalog has no usable price for it: "
            "its cost is unknown (counted as unpriced, not as free).",
        )
        for model_id in result.unpriced_models
    ]
    if alerts:
        raise_alerts(alerts)
