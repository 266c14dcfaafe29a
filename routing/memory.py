"""Strategy memory: what the outcomes taught, per (model, role, category, strategy).

Kept current from the usage ledger as events arrive (in the ingest's transaction), and
rebuildable from the ledger at any time (`rebuild_strategy_memory`).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Q, Sum

from core.models import DataVersion
from core.upsert import add_to_rows
from costs.models import ERROR_COUNTERS, ErrorClass, UsageEvent, error_counter
from routing.models import STATS_RESET_VERSION, STATS_VERSION, Strategy, StrategyStat

KEY = ("model", "role", "category", "strategy")
SUMS = (
    "requests",
    "successes",
    "quality_sum",
    "quality_count",
    "cost_usd",
    "latency_ms_sum",
    "latency_count",
    *ERROR_COUNTERS,
)
# The ledger's own probes are not the orchestrator's work: they teach routing nothing.
IGNORED_STRATEGIES = {"health_check"}


def memory_deltas(rows: list[dict]) -> dict[tuple, dict]:
    deltas: dict[tuple, dict] = {}
    for row in rows:
        if row["strategy"] in IGNORED_STRATEGIES:
            continue
        key = (row["model_id"] or row["model_ref"], row["role"], row["category"], row["strategy"])
        d = deltas.get(key)
        if d is None:
            d = deltas[key] = dict.fromkeys(SUMS, 0)
            d["quality_sum"], d["cost_usd"] = 0.0, Decimal(0)
        d["requests"] += 1
        d["successes"] += 1 if row["success"] else 0
        if row["quality_score"] is not None:
            d["quality_sum"] += row["quality_score"]
            d["quality_count"] += 1
        cost = row["cost_usd"] if row["cost_usd"] is not None else row["computed_cost_usd"]
        if cost is not None:
            d["cost_usd"] += cost
        if row["latency_ms"] is not None:
            d["latency_ms_sum"] += row["latency_ms"]
            d["latency_count"] += 1
        if row["error"]:
            d[error_counter(row["error"])] += 1
    return deltas


def remember_outcomes(rows: list[dict], **kwargs) -> tuple[str, ...]:
    """On `usage_stored`, in the batch's transaction: move the memory rows and learn strategies
    not seen before. Returns the version that moved (the ingest writes it), if one did."""
    deltas = memory_deltas(rows)
    add_to_rows(StrategyStat, KEY, SUMS, deltas, txid_field="changed_in")
    slugs = {row["strategy"] for row in rows if row["strategy"] and row["strategy"] not in IGNORED_STRATEGIES}
    if slugs:
        Strategy.objects.bulk_create([Strategy(slug=slug) for slug in sorted(slugs)], ignore_conflicts=True)
    return (STATS_VERSION,) if deltas else ()


def rebuild_strategy_memory() -> int:
    """Recompute the whole memory from the ledger (after a restore, or to check it). Returns rows."""
    cost = Sum("cost_usd", default=Decimal(0)) + Sum(
        "computed_cost_usd", filter=Q(cost_usd__isnull=True), default=Decimal(0)
    )
    grouped = (
        UsageEvent.objects.exclude(strategy__in=IGNORED_STRATEGIES)
        .values("model_id", "model_ref", "role", "category", "strategy")
        .annotate(
            requests=Count("id"),
            successes=Count("id", filter=Q(success=True)),
            quality_sum=Sum("quality_score", default=0.0),
            quality_count=Count("quality_score"),
            cost=cost,
            latency_ms_sum=Sum("latency_ms", default=0),
            latency_count=Count("latency_ms"),
            **{error_counter(e): Count("id", filter=Q(error=e)) for e in ErrorClass.values},
        )
        .order_by()
    )
    deltas: dict[tuple, dict] = {}
    for g in grouped.iterator(chunk_size=5000):
        key = (g["model_id"] or g["model_ref"], g["role"], g["category"], g["strategy"])
        d = deltas.setdefault(key, dict.fromkeys(SUMS, 0) | {"quality_sum": 0.0, "cost_usd": Decimal(0)})
        for name in SUMS:
            d[name] += g["cost"] if name == "cost_usd" else g[name]
    with transaction.atomic():
        StrategyStat.objects.all().delete()
        add_to_rows(StrategyStat, KEY, SUMS, deltas, txid_field="changed_in")
    DataVersion.bump(STATS_VERSION, STATS_RESET_VERSION)
    return len(deltas)
