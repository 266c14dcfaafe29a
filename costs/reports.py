"""Cost and telemetry reports. Cost reports read the DailyCost rollup only (a month of a busy
ledger is a few thousand rollup rows); telemetry percentiles read the ledger for the window.

Windows are whole UTC days, `start` and `end` both included.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Q, Sum

from core.money import decimal_str
from costs.csvsafe import escape_row
from costs.models import ERROR_COUNTERS, DailyCost, ErrorClass, UsageEvent, error_counter, utc_midnight

GROUPS = ("model", "strategy", "role")
TELEMETRY_GROUPS = ("strategy", "model", "tool")
DAILY_COLUMNS = [
    "day",
    "model",
    "strategy",
    "role",
    "requests",
    "successes",
    "tokens",
    "cost_usd",
    "cost_per_success_usd",
    "unpriced_requests",
    *ERROR_COUNTERS,
]
EVENT_COLUMNS = [
    "request_id",
    "occurred_at",
    "model",
    "role",
    "strategy",
    "category",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_usd",
    "computed_cost_usd",
    "success",
    "quality_score",
    "latency_ms",
    "escalation_depth",
    "tools",
    "generation_id",
    "error",
]
SUMS = {
    "requests": Sum("requests"),
    "successes": Sum("successes"),
    "prompt_tokens": Sum("prompt_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "cost_usd": Sum("cost_usd"),
    "reported_cost_usd": Sum("reported_cost_usd"),
    "computed_cost_of_reported_usd": Sum("computed_cost_of_reported_usd"),
    "reported_requests": Sum("reported_requests"),
    "unpriced_requests": Sum("unpriced_requests"),
    "latency_ms_sum": Sum("latency_ms_sum"),
    "latency_count": Sum("latency_count"),
    **{name: Sum(name) for name in ERROR_COUNTERS},
}


@dataclass(frozen=True)
class Window:
    start: date
    end: date  # included

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def daily_queryset(window: Window, filters: dict[str, str | None]):
    qs = DailyCost.objects.filter(day__gte=window.start, day__lte=window.end)
    for key in GROUPS:
        if filters.get(key) is not None:
            qs = qs.filter(**{key: filters[key]})
    return qs


def _ratio(numerator: Decimal, denominator: int) -> Decimal | None:
    return numerator / denominator if denominator else None


def cost_per_success(cost: Decimal, successes: int, requests: int, unpriced: int) -> Decimal | None:
    """None when nothing was priced: a cost of 0 over unpriced events is unknown, not free."""
    return _ratio(cost, successes) if requests > unpriced else None


def _finish(row: dict) -> dict:
    """Totals to the figures a report shows."""
    requests, successes = row["requests"] or 0, row["successes"] or 0
    cost = row["cost_usd"] or Decimal(0)
    reported = row["reported_cost_usd"] or Decimal(0)
    computed = row["computed_cost_of_reported_usd"] or Decimal(0)
    return {
        "requests": requests,
        "successes": successes,
        "success_rate": round(successes / requests, 6) if requests else None,
        "tokens": (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0),
        "cost_usd": cost,
        "cost_per_success_usd": cost_per_success(cost, successes, requests, row["unpriced_requests"] or 0),
        "reported_requests": row["reported_requests"] or 0,
        "drift_usd": reported - computed,
        "unpriced_requests": row["unpriced_requests"] or 0,
        "latency_ms_mean": round(row["latency_ms_sum"] / row["latency_count"], 1) if row["latency_count"] else None,
        "errors": {e: row[error_counter(e)] or 0 for e in ErrorClass.values},
    }


def _key(value) -> str:
    return value.isoformat() if isinstance(value, date) else value


def daily(window: Window, group_by: str | None, filters: dict[str, str | None]) -> list[dict]:
    """One row per day (and key when grouped by model, strategy or role), in one aggregate query."""
    key = group_by if group_by in GROUPS else None
    fields = ["day"] + ([key] if key else [])
    rows = daily_queryset(window, filters).values(*fields).annotate(**SUMS).order_by(*fields)
    return [{"day": r["day"], "key": r[key] if key else None, **_finish(r)} for r in rows]


def _breakdown(qs, group_by: str) -> list[dict]:
    # Days in order; models, strategies and roles dearest first.
    order = (group_by,) if group_by == "day" else ("-cost_usd", group_by)
    rows = qs.values(group_by).annotate(**SUMS).order_by(*order)
    return [{"key": _key(r[group_by]), **_finish(r)} for r in rows]


def summary(window: Window, group_by: str, filters: dict[str, str | None]) -> dict:
    """Totals, one row per `group_by` key, and the per-model and per-strategy breakdowns
    finance asks for every time: four aggregate queries over the rollup."""
    qs = daily_queryset(window, filters)
    return {
        "start": window.start,
        "end": window.end,
        "group_by": group_by,
        "total": _finish(qs.aggregate(**SUMS)),
        "rows": _breakdown(qs, group_by),
        "by_model": _breakdown(qs, "model"),
        "by_strategy": _breakdown(qs, "strategy"),
    }


# --- CSV -----------------------------------------------------------------------------------------


class _Echo:
    """A file-like object whose write returns the line, for csv.writer inside a generator."""

    def write(self, value: str) -> str:
        return value


def _money(value: Decimal | None) -> str:
    """A CSV cell: the API's decimal string, empty for none."""
    return decimal_str(value) or ""


def daily_csv_rows(window: Window, filters: dict[str, str | None]) -> Iterator[list]:
    qs = (
        daily_queryset(window, filters)
        .order_by("day", "model", "strategy", "role")
        .values_list(
            "day",
            "model",
            "strategy",
            "role",
            "requests",
            "successes",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "unpriced_requests",
            *ERROR_COUNTERS,
        )
    )
    for day, model, strategy, role, requests, successes, prompt, completion, cost, unpriced, *failures in qs.iterator(
        chunk_size=2000
    ):
        yield [
            day.isoformat(),
            model,
            strategy,
            role,
            requests,
            successes,
            prompt + completion,
            _money(cost),
            _money(cost_per_success(cost, successes, requests, unpriced)),
            unpriced,
            *failures,
        ]


def filter_events(qs, filters: dict[str, str | None]):
    """The report filters on the ledger, with the rollup's meaning of `model`: the catalog id
    when the report resolved (whatever string was sent), else the string reported."""
    if filters.get("model") is not None:
        qs = qs.filter(Q(model_id=filters["model"]) | Q(model_id__isnull=True, model_ref=filters["model"]))
    for key in ("strategy", "role"):
        if filters.get(key) is not None:
            qs = qs.filter(**{key: filters[key]})
    return qs


def event_csv_rows(window: Window, filters: dict[str, str | None]) -> Iterator[list]:
    """The ledger itself, over a server-side cursor: memory does not grow with the window."""
    qs = UsageEvent.objects.filter(
        occurred_at__gte=utc_midnight(window.start), occurred_at__lt=utc_midnight(window.end + timedelta(days=1))
    )
    qs = filter_events(qs, filters)
    columns = [c if c != "model" else "model_ref" for c in EVENT_COLUMNS]
    for row in qs.order_by("occurred_at", "id").values_list(*columns).iterator(chunk_size=2000):
        values = list(row)
        values[1] = values[1].isoformat()
        values[11], values[12] = _money(values[11]), _money(values[12])
        values[13] = "true" if values[13] else "false"
        values[17] = " ".join(values[17] or [])
        yield values


CSV_CHUNK_ROWS = 1000


def csv_lines(header: list[str], rows: Iterator[list]) -> Iterator[str]:
    """CSV text in chunks of rows; every string cell escaped against formula injection.

    A chunk, not a line, per yield: the WSGI server writes each yielded string to the socket
    (with chunked encoding, a frame each), so a line per yield spends most of a million-row
    export in system calls."""
    writer = csv.writer(_Echo())
    chunk = [writer.writerow(header)]
    for row in rows:
        chunk.append(writer.writerow(escape_row(row)))
        if len(chunk) >= CSV_CHUNK_ROWS:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


# --- Telemetry -----------------------------------------------------------------------------------


def _percentile(sorted_values: list[int], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low))


def telemetry(window: Window, by: str, filters: dict[str, str | None] | None = None) -> list[dict]:
    """Per strategy, model or tool: requests, success rate, cost, latency p50 and p95.

    Percentiles need the events themselves, so this reads the ledger for the window: on
    PostgreSQL in one aggregate (percentile_cont), elsewhere over a server-side cursor. An
    event counts once for each tool it used."""
    events = filter_events(
        UsageEvent.objects.filter(
            occurred_at__gte=utc_midnight(window.start), occurred_at__lt=utc_midnight(window.end + timedelta(days=1))
        ),
        filters or {},
    )
    if connection.vendor == "postgresql":
        return _telemetry_pg(events, by)
    return _telemetry_python(events, by)


def _telemetry_pg(events, by: str) -> list[dict]:
    where_sql, params = events.query.get_compiler(connection=connection).compile(events.query.where)
    table = connection.ops.quote_name(UsageEvent._meta.db_table)
    key = {
        "strategy": f"{table}.strategy",
        "model": f"COALESCE({table}.model_id, {table}.model_ref)",  # the rollup's meaning of model
        "tool": "t.tool",
    }[by]
    join = f", jsonb_array_elements_text({table}.tools) AS t(tool)" if by == "tool" else ""
    sql = f"""
        SELECT {key} AS key, COUNT(*), COUNT(*) FILTER (WHERE {table}.success),
               SUM(COALESCE({table}.cost_usd, {table}.computed_cost_usd)),
               COUNT(*) FILTER (WHERE {table}.cost_usd IS NULL AND {table}.computed_cost_usd IS NULL),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY {table}.latency_ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY {table}.latency_ms),
               {", ".join(f"COUNT(*) FILTER (WHERE {table}.error = '{e}')" for e in ErrorClass.values)}
        FROM {table}{join}
        WHERE {where_sql}
        GROUP BY 1 ORDER BY 2 DESC, 1
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [_telemetry_row(*row[:7], errors=row[7:]) for row in cursor.fetchall()]


def _telemetry_python(events, by: str) -> list[dict]:
    groups: dict[str, dict] = {}
    qs = events.values_list(
        "strategy", "model_id", "model_ref", "tools", "success", "error", "cost_usd", "computed_cost_usd", "latency_ms"
    )
    for strategy, model_id, model_ref, tools, success, error, cost, computed, latency in qs.iterator(chunk_size=2000):
        keys = {"strategy": [strategy], "model": [model_id or model_ref], "tool": list(tools or [])}[by]
        for key in keys:
            g = groups.setdefault(
                key,
                {
                    "requests": 0,
                    "successes": 0,
                    "cost": Decimal(0),
                    "unpriced": 0,
                    "latencies": [],
                    "errors": dict.fromkeys(ErrorClass.values, 0),
                },
            )
            g["requests"] += 1
            g["successes"] += bool(success)
            if error:
                g["errors"][error] += 1
            value = cost if cost is not None else computed
            if value is None:
                g["unpriced"] += 1
            else:
                g["cost"] += value
            if latency is not None:
                g["latencies"].append(latency)
    rows = []
    for key, g in groups.items():
        latencies = sorted(g["latencies"])
        rows.append(
            _telemetry_row(
                key,
                g["requests"],
                g["successes"],
                g["cost"],
                g["unpriced"],
                _percentile(latencies, 0.5),
                _percentile(latencies, 0.95),
                errors=g["errors"].values(),
            )
        )
    rows.sort(key=lambda r: (-r["requests"], r["key"]))
    return rows


def _telemetry_row(key, requests, successes, cost, unpriced, p50, p95, *, errors) -> dict:
    """`errors`: the failure counts in ErrorClass order."""
    cost = cost or Decimal(0)
    return {
        "key": key,
        "requests": requests,
        "successes": successes,
        "success_rate": round(successes / requests, 6) if requests else None,
        "cost_usd": cost,
        "cost_per_success_usd": cost_per_success(cost, successes, requests, unpriced),
        "unpriced_requests": unpriced,
        "latency_ms_p50": None if p50 is None else round(float(p50), 1),
        "latency_ms_p95": None if p95 is None else round(float(p95), 1),
        "errors": dict(zip(ErrorClass.values, errors, strict=True)),
    }


def spend_by_day_and_model(days: int, top: int = 6) -> tuple[list[date], list[tuple[str, list[Decimal]]]]:
    """Cost per UTC day for the last `days` days, for the top models and 'other' (the chart)."""
    from django.utils import timezone

    today = timezone.now().date()
    first = today - timedelta(days=days - 1)
    rows = (
        DailyCost.objects.filter(day__gte=first, day__lte=today)
        .values("day", "model")
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    )
    per_model: dict[str, dict[date, Decimal]] = {}
    for r in rows:
        per_model.setdefault(r["model"], {})[r["day"]] = r["cost"] or Decimal(0)
    ranked = sorted(per_model, key=lambda m: (-sum(per_model[m].values()), m))
    day_list = [first + timedelta(days=i) for i in range(days)]
    series = [(m, [per_model[m].get(d, Decimal(0)) for d in day_list]) for m in ranked[:top]]
    rest = ranked[top:]
    if rest:
        series.append(("other", [sum((per_model[m].get(d, Decimal(0)) for m in rest), Decimal(0)) for d in day_list]))
    return day_list, series


__all__ = [
    "Window",
    "daily",
    "summary",
    "telemetry",
    "csv_lines",
    "daily_csv_rows",
    "event_csv_rows",
    "filter_events",
    "DAILY_COLUMNS",
    "EVENT_COLUMNS",
    "GROUPS",
    "TELEMETRY_GROUPS",
    "spend_by_day_and_model",
]
