"""The rebuilt rollup equals the one ingest keeps, row for row and to the last decimal."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from costs.ingest import ingest_events
from costs.models import DailyCost
from costs.rollups import rebuild_daily_costs
from tests.factories import CatalogModelFactory

pytestmark = pytest.mark.django_db

FIELDS = [
    "day",
    "model",
    "strategy",
    "role",
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
]


def snapshot() -> list[tuple]:
    return [tuple(row) for row in DailyCost.objects.order_by("day", "model", "strategy", "role").values_list(*FIELDS)]


@pytest.fixture
def ledger(db):
    CatalogModelFactory(
        id="acme/priced", price_prompt=Decimal("0.00000123456789"), price_completion=Decimal("0.0000045")
    )
    CatalogModelFactory(id="acme/unpriced", price_prompt=None, price_completion=None)
    rng = random.Random(3)
    start = datetime(2026, 3, 30, 22, tzinfo=UTC)
    events = []
    for i in range(600):
        reported = rng.random() < 0.5
        events.append(
            {
                "request_id": f"e{i}",
                "occurred_at": start + timedelta(minutes=7 * i),
                "model": rng.choice(["acme/priced", "acme/unpriced", "someone/unknown"]),
                "role": rng.choice(["coder", "writer", ""]),
                "strategy": rng.choice(["single", "ensemble"]),
                "prompt_tokens": rng.randint(0, 5000),
                "completion_tokens": rng.randint(0, 900),
                "cost_usd": Decimal(rng.randint(1, 10**9)) / Decimal(10**12) if reported else None,
                "success": rng.random() < 0.8,
                "latency_ms": rng.choice([None, rng.randint(50, 5000)]),
            }
        )
    for chunk in range(0, len(events), 100):
        ingest_events(events[chunk : chunk + 100])


def test_a_rebuild_gives_what_ingest_kept(ledger):
    kept = snapshot()
    assert len(kept) > 20

    counts = rebuild_daily_costs()

    assert snapshot() == kept
    assert counts == {"removed": len(kept), "written": len(kept)}


def test_a_rebuild_takes_the_same_few_queries_whatever_the_ledger_holds(ledger):
    def queries(**window) -> int:
        with CaptureQueriesContext(connection) as ctx:
            rebuild_daily_costs(**window)
        return len(ctx)

    few = queries(start=date(2026, 3, 31), end=date(2026, 3, 31))  # one day of the ledger
    every_day = queries()  # all of it, six times the events
    assert few == every_day <= 8
    assert sum("INSERT INTO" in q["sql"] and "GROUP BY" in q["sql"] for q in _captured(rebuild_daily_costs)) == 1


def _captured(function) -> list[dict]:
    with CaptureQueriesContext(connection) as ctx:
        function()
    return ctx.captured_queries


def test_a_rebuild_of_a_range_touches_only_its_days(ledger):
    kept = snapshot()
    DailyCost.objects.filter(day=date(2026, 3, 31)).update(requests=0, cost_usd=Decimal(0))
    DailyCost.objects.filter(day=date(2026, 4, 1)).update(requests=0)

    summary = call_command("rebuild_daily_costs", "--start", "2026-03-31", "--end", "2026-03-31")

    assert "rows written" in summary
    repaired = snapshot()
    assert [r for r in repaired if r[0] != date(2026, 4, 1)] == [r for r in kept if r[0] != date(2026, 4, 1)]
    assert all(r[4] == 0 for r in repaired if r[0] == date(2026, 4, 1))  # outside the range: untouched


def test_the_command_refuses_bad_days():
    with pytest.raises(CommandError, match="not a day"):
        call_command("rebuild_daily_costs", "--start", "yesterday")
    with pytest.raises(CommandError, match="is after"):
        call_command("rebuild_daily_costs", "--start", "2026-04-02", "--end", "2026-04-01")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_a_rebuild_waits_for_an_ingest_in_flight_and_counts_it_once():
    import threading
    import time

    from django.db import transaction

    CatalogModelFactory(id="acme/priced", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
    at = datetime(2026, 4, 1, 10, tzinfo=UTC)
    base = {
        "occurred_at": at,
        "model": "acme/priced",
        "role": "coder",
        "prompt_tokens": 10,
        "completion_tokens": 1,
        "success": True,
    }
    ingest_events([{**base, "request_id": f"old{i}", "strategy": "single"} for i in range(5)])
    stored, outcome = threading.Event(), {}

    def ingest_and_linger() -> None:
        # A batch that moves a rollup row the rebuild will delete and makes a new one (another
        # strategy), committed a moment after the rebuild has started. Unguarded, the rebuild's
        # DELETE waits for the first row, misses the second (not in its snapshot), and its INSERT
        # then collides with it.
        try:
            with transaction.atomic():
                ingest_events(
                    [{**base, "request_id": "new-single", "strategy": "single"}]
                    + [{**base, "request_id": f"new{i}", "strategy": "ensemble"} for i in range(3)]
                )
                stored.set()
                time.sleep(0.5)
        finally:
            connection.close()

    def rebuild() -> None:
        try:
            outcome["counts"] = rebuild_daily_costs()
        except Exception as error:
            outcome["error"] = error
        finally:
            connection.close()

    writer = threading.Thread(target=ingest_and_linger)
    writer.start()
    assert stored.wait(10)
    rebuilder = threading.Thread(target=rebuild)
    rebuilder.start()
    writer.join()
    rebuilder.join()

    assert "error" not in outcome, outcome.get("error")
    assert {(r[2], r[4]) for r in snapshot()} == {("single", 6), ("ensemble", 3)}
