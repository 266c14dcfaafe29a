"""The rebuilt rollup equals the one ingest keeps, row for row and to the last decimal."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from costs.ingest import ingest_events
from costs.models import DailyCost
from costs.rollups import rebuild_daily_costs
from tests.factories import CatalogModelFactory

pytestmark = pytest.mark.django_db

FIELDS = ["day", "model", "strategy", "role", "requests", "successes", "prompt_tokens", "completion_tokens",
          "reasoning_tokens", "cached_tokens", "cost_usd", "reported_cost_usd", "computed_cost_of_reported_usd",
          "reported_requests", "unpriced_requests", "latency_ms_sum", "latency_count"]


def snapshot() -> list[tuple]:
    return [tuple(row) for row in DailyCost.objects.order_by("day", "model", "strategy", "role").values_list(*FIELDS)]


@pytest.fixture
def ledger(db):
    CatalogModelFactory(id="acme/priced", price_prompt=Decimal("0.00000123456789"), price_completion=Decimal("0.0000045"))
    CatalogModelFactory(id="acme/unpriced", price_prompt=None, price_completion=None)
    rng = random.Random(3)
    start = datetime(2026, 3, 30, 22, tzinfo=timezone.utc)
    events = []
    for i in range(600):
        reported = rng.random() < 0.5
        events.append({
            "request_id": f"e{i}", "occurred_at": start + timedelta(minutes=7 * i),
            "model": rng.choice(["acme/priced", "acme/unpriced", "someone/unknown"]),
            "role": rng.choice(["coder", "writer", ""]), "strategy": rng.choice(["single", "ensemble"]),
            "prompt_tokens": rng.randint(0, 5000), "completion_tokens": rng.randint(0, 900),
            "cost_usd": Decimal(rng.randint(1, 10**9)) / Decimal(10**12) if reported else None,
            "success": rng.random() < 0.8, "latency_ms": rng.choice([None, rng.randint(50, 5000)]),
        })
    for chunk in range(0, len(events), 100):
        ingest_events(events[chunk:chunk + 100])


def test_a_rebuild_gives_what_ingest_kept(ledger):
    kept = snapshot()
    assert len(kept) > 20

    counts = rebuild_daily_costs()

    assert snapshot() == kept
    assert counts == {"removed": len(kept), "written": len(kept)}


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
