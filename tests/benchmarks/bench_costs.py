"""Cost reports at volume (issue 3), and the admin's list pages with real volumes (issue 6), on
PostgreSQL: 1,000,000 usage events over 35 days and the 349-model 2025-12-18 catalog.

Printed:
- GET /costs/daily for 30 days (gunicorn, two workers), p50 and p95 over 30 requests, beside a
  baseline measured in the same run: the same report aggregated from the ledger itself;
- the CSV export of all 1,000,000 events (level=events), streamed: rows/s and the serving
  worker's peak memory;
- each admin list page: time and number of queries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive bin/test tests/benchmarks/bench_costs.py -s
"""

from __future__ import annotations

import io
import statistics
import time
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import CatalogModel
from core.models import ApiKey
from costs.models import Budget, BudgetScope, DailyCost, UsageEvent
from costs.rollups import rebuild_daily_costs
from tests.fake_openrouter import requires_recorded, snapshot_path
from tests.servers import gunicorn, peak_rss_mb

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True), requires_recorded]

EVENTS = 1_000_000
DAYS = 35


def load_ledger(model_ids: list[str]) -> float:
    """1,000,000 events in one set-based statement; returns the seconds it took."""
    started = time.perf_counter()
    models = "ARRAY[" + ",".join(f"'{m}'" for m in model_ids) + "]"
    with connection.cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO {UsageEvent._meta.db_table} (
                request_id, occurred_at, received_at, model_id, model_ref, role, strategy, category, decision_id,
                prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cache_write_tokens,
                cost_usd, computed_cost_usd, success, quality_score, latency_ms, escalation_depth, tools, generation_id)
            SELECT 'bench-' || g, now() - (g % ({DAYS} * 1440)) * interval '1 minute', now(),
                   m.id, m.id, (ARRAY['coder','planner','reviewer','writer','translator','researcher'])[1 + g % 6],
                   (ARRAY['single','refine_on_failure','ensemble'])[1 + g % 3], '', '',
                   500 + g % 3000, 50 + g % 700, g % 40, g % 200, 0,
                   CASE WHEN g % 3 = 0 THEN NULL ELSE (1 + g % 997) * 0.0000013 END,
                   (1 + g % 997) * 0.0000012, g % 9 <> 0, NULL, 200 + g % 4000, 0,
                   CASE WHEN g % 5 = 0 THEN '["search"]'::jsonb ELSE '[]'::jsonb END, ''
            FROM generate_series(1, {EVENTS}) AS g
            JOIN LATERAL (SELECT ({models})[1 + g % {len(model_ids)}] AS id) m ON true
        """)
        cursor.execute(f"ANALYZE {UsageEvent._meta.db_table}")
    return time.perf_counter() - started


def timed_get(client: httpx.Client, url: str, n: int) -> list[float]:
    client.get(url)  # warm
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text[:500]
    return sorted(samples)


def ledger_report(start, end):
    """The baseline: the 30-day report aggregated from the ledger itself, no rollup."""
    return list(
        UsageEvent.objects.filter(occurred_at__date__gte=start, occurred_at__date__lte=end)
        .annotate(day=TruncDate("occurred_at"))
        .values("day", "model_ref")
        .annotate(
            requests=Count("id"),
            successes=Count("id", filter=Q(success=True)),
            cost=Sum("cost_usd"),
            computed=Sum("computed_cost_usd"),
        )
        .order_by("day", "model_ref")
    )


def test_cost_reports_and_admin_pages_at_volume(capsys):
    if connection.vendor != "postgresql":
        pytest.skip("the cost benchmark runs on PostgreSQL (set DATABASE_URL)")
    call_command("sync_catalog", "--from-file", str(snapshot_path("2025-12-18")), "--no-progress", stdout=io.StringIO())
    model_ids = list(CatalogModel.objects.order_by("id").values_list("id", flat=True)[:40])
    load_seconds = load_ledger(model_ids)
    t0 = time.perf_counter()
    rebuilt = rebuild_daily_costs()
    rebuild_seconds = time.perf_counter() - t0
    for i, role in enumerate(["coder", "writer", "planner"]):
        Budget.objects.create(name=f"{role} month", scope=BudgetScope.ROLE, scope_value=role, limit_usd=100 + i)
    _, key = ApiKey.issue(name="bench", scopes=["costs:read"])
    end = timezone.now().date()
    start = end - timedelta(days=29)

    t0 = time.perf_counter()
    baseline_rows = ledger_report(start, end)
    baseline_ms = (time.perf_counter() - t0) * 1000

    with gunicorn(workers=2) as base:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            daily_url = f"/api/v1/costs/daily?start={start}&end={end}&group_by=model"
            daily = timed_get(client, daily_url, 30)
            summary = timed_get(client, f"/api/v1/costs/summary?start={start}&end={end}", 10)
            rows = len(client.get(daily_url).json())
            before = {pid: peak_rss_mb(pid) for pid in base.worker_pids()}
            t0 = time.perf_counter()
            lines = 0
            with client.stream(
                "GET", f"/api/v1/costs/export.csv?start={end - timedelta(days=DAYS)}&end={end}&level=events"
            ) as response:
                assert response.status_code == 200
                for _line in response.iter_lines():
                    lines += 1
            export_seconds = time.perf_counter() - t0
            after = {pid: peak_rss_mb(pid) for pid in base.worker_pids()}

    # The admin's list pages, in process, with the same volumes.
    admin = User.objects.create_superuser("bench", "b@example.com", "x")
    browser = Client()
    browser.force_login(admin)
    pages = {}
    for name, url in [
        ("dashboard", "/admin/"),
        ("catalog models", "/admin/catalog/catalogmodel/"),
        ("usage events", "/admin/costs/usageevent/"),
        (
            "usage events, one day",
            f"/admin/costs/usageevent/?occurred_at__day={end.day}&occurred_at__month={end.month}&occurred_at__year={end.year}",
        ),
        ("daily costs", "/admin/costs/dailycost/"),
        ("budgets", "/admin/costs/budget/"),
        ("capability matrix", "/admin/capabilities/"),
    ]:
        browser.get(url)
        with CaptureQueriesContext(connection) as queries:
            t0 = time.perf_counter()
            response = browser.get(url)
            elapsed = (time.perf_counter() - t0) * 1000
        assert response.status_code == 200, (url, response.status_code)
        pages[name] = (elapsed, len(queries))

    export_worker_peak = max(after.values())
    with capsys.disabled():
        print(
            f"\n--- cost reports: PostgreSQL, {EVENTS:,} events over {DAYS} days (loaded in {load_seconds:.1f} s), "
            f"{DailyCost.objects.count():,} rollup rows (rebuilt in {rebuild_seconds:.1f} s, {rebuilt['written']:,} rows)"
        )
        print(
            f"/costs/daily, 30 days by model ({rows} rows): p50 {statistics.median(daily):.1f} ms, "
            f"p95 {daily[int(len(daily) * 0.95) - 1]:.1f} ms (target <= 200 ms); "
            f"the same report from the ledger itself: {baseline_ms:.0f} ms ({len(baseline_rows)} rows)"
        )
        print(f"/costs/summary, 30 days: p50 {statistics.median(summary):.1f} ms")
        print(
            f"CSV export, every event: {lines - 1:,} rows in {export_seconds:.1f} s ({(lines - 1) / export_seconds:,.0f} rows/s); "
            f"worker peak memory {export_worker_peak:.0f} MB (before the export: {max(before.values()):.0f} MB) (target <= 200 MB)"
        )
        for name, (elapsed, queries) in pages.items():
            print(f"admin {name:<24} {elapsed:7.1f} ms, {queries:3d} queries")

    assert lines - 1 == EVENTS
    assert rows == 30 * len(model_ids)
