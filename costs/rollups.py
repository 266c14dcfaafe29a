"""Rebuild DailyCost from the ledger: after a restore, a bulk load, or to check the rollup.

One transaction and a fixed number of statements whatever the ledger's size: the days in range
are deleted and re-inserted with one INSERT … SELECT … GROUP BY, by the same rules as ingest
(costs.ingest.rollup_deltas): reported cost where present, computed otherwise, unpriced events
counted apart.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db import connection, transaction
from django.utils import timezone

from core.models import DataVersion
from costs.models import SPEND_VERSION, DailyCost, ErrorClass, UsageEvent, error_counter, utc_midnight

SUMS = {
    "requests": "COUNT(*)",
    "successes": "SUM(CASE WHEN success THEN 1 ELSE 0 END)",
    "prompt_tokens": "SUM(prompt_tokens)",
    "completion_tokens": "SUM(completion_tokens)",
    "reasoning_tokens": "SUM(reasoning_tokens)",
    "cached_tokens": "SUM(cached_tokens)",
    "cost_usd": "COALESCE(SUM(COALESCE(cost_usd, computed_cost_usd)), 0)",
    "reported_cost_usd": "COALESCE(SUM(cost_usd), 0)",
    "computed_cost_of_reported_usd": "COALESCE(SUM(CASE WHEN cost_usd IS NOT NULL THEN COALESCE(computed_cost_usd, cost_usd) END), 0)",
    "reported_requests": "SUM(CASE WHEN cost_usd IS NOT NULL THEN 1 ELSE 0 END)",
    "unpriced_requests": "SUM(CASE WHEN cost_usd IS NULL AND computed_cost_usd IS NULL THEN 1 ELSE 0 END)",
    "latency_ms_sum": "COALESCE(SUM(latency_ms), 0)",
    "latency_count": "COUNT(latency_ms)",
    **{error_counter(e): f"SUM(CASE WHEN error = '{e}' THEN 1 ELSE 0 END)" for e in ErrorClass.values},
}


def _day_expression() -> str:
    if connection.vendor == "postgresql":
        return "(occurred_at AT TIME ZONE 'UTC')::date"
    return "date(occurred_at)"  # SQLite stores UTC text


def rebuild_daily_costs(start: date | None = None, end: date | None = None) -> dict[str, int]:
    """Recompute DailyCost for [start, end] (every day when both are None). Returns counts."""
    events = UsageEvent.objects.all()
    if start is not None:
        events = events.filter(occurred_at__gte=utc_midnight(start))
    if end is not None:
        events = events.filter(occurred_at__lt=utc_midnight(end + timedelta(days=1)))
    rollups = DailyCost.objects.all()
    if start is not None:
        rollups = rollups.filter(day__gte=start)
    if end is not None:
        rollups = rollups.filter(day__lte=end)

    where_sql, params = (
        events.query.get_compiler(connection=connection).compile(events.query.where) if events.query.where else ("", [])
    )
    table, rollup_table = UsageEvent._meta.db_table, DailyCost._meta.db_table
    columns = ", ".join(["day", "model", "strategy", "role", *SUMS, "updated_at"])
    selects = ", ".join(SUMS.values())
    day = _day_expression()
    sql = (
        f"INSERT INTO {rollup_table} ({columns}) "
        f"SELECT {day}, COALESCE(model_id, model_ref), strategy, role, {selects}, %s "
        f"FROM {table} {'WHERE ' + where_sql if where_sql else ''} "
        f"GROUP BY {day}, COALESCE(model_id, model_ref), strategy, role"
    )
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Ingest moves rollup rows in the transaction that stores its events. One in flight
            # would make the DELETE wait for the rows it moved, then commit rows the DELETE never
            # saw, and the INSERT below would collide with them. Taking the table first waits
            # for such a batch, then holds new ones off until this commits: each event is
            # counted once, by this rebuild or by its own upsert. (SQLite has one writer anyway.)
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {connection.ops.quote_name(rollup_table)} IN SHARE ROW EXCLUSIVE MODE")
        removed, _ = rollups.delete()
        with connection.cursor() as cursor:
            cursor.execute(sql, [timezone.now(), *params])
            written = cursor.rowcount
        DataVersion.bump(SPEND_VERSION)
    return {"removed": removed, "written": written}
