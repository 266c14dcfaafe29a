"""Failure classes: stored with each usage event, counted per class in the daily rollup, the cost
reports, the CSV exports, telemetry and strategy memory, and rebuilt from the ledger alike."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from costs.models import DailyCost, ErrorClass, UsageEvent
from costs.rollups import rebuild_daily_costs
from routing.memory import rebuild_strategy_memory
from routing.models import StrategyStat
from tests.conftest import ApiClient
from tests.factories import CatalogModelFactory, ingest

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
NONE = dict.fromkeys(ErrorClass.values, 0)


@pytest.fixture
def ledger(db):
    CatalogModelFactory(id="acme/a")
    CatalogModelFactory(id="acme/b")
    ingest(
        {"model": "acme/a"},
        {"model": "acme/a", "success": False, "error": "rate_limited"},
        {"model": "acme/a", "success": False, "error": "rate_limited"},
        {"model": "acme/a", "success": False, "error": "timeout", "strategy": "ensemble"},
        {"model": "acme/b", "success": False, "error": "quality"},
        {"model": "acme/b", "success": False},  # a failure without a class: in no counter
        occurred_at=DAY,
        latency_ms=100,
    )


@pytest.fixture
def reader(make_api_key) -> ApiClient:
    return ApiClient(make_api_key("costs:read"))


def test_the_ledger_keeps_the_class_and_the_rollup_counts_it(ledger):
    assert sorted(UsageEvent.objects.values_list("error", flat=True)) == [
        "",
        "",
        "quality",
        "rate_limited",
        "rate_limited",
        "timeout",
    ]
    a = DailyCost.objects.get(model="acme/a", strategy="single")
    assert (a.rate_limited_errors, a.timeout_errors, a.requests, a.successes) == (2, 0, 3, 1)


def test_a_rebuild_of_the_rollup_and_of_the_memory_counts_as_ingest_did(ledger):
    def rollup():
        return sorted(
            DailyCost.objects.values_list(
                "model", "strategy", "rate_limited_errors", "timeout_errors", "quality_errors"
            )
        )

    def memory():
        return sorted(
            StrategyStat.objects.values_list(
                "model", "strategy", "rate_limited_errors", "timeout_errors", "quality_errors", "requests"
            )
        )

    kept_rollup, kept_memory = rollup(), memory()
    assert ("acme/a", "single", 2, 0, 0, 3) in kept_memory and ("acme/b", "single", 0, 0, 1, 2) in kept_memory

    rebuild_daily_costs()
    rebuild_strategy_memory()

    assert rollup() == kept_rollup and memory() == kept_memory


def test_the_summary_breaks_failures_down_by_class(reader, ledger):
    body = reader.get("/api/v1/costs/summary?start=2026-04-01&end=2026-04-01&group_by=model").json()

    assert body["total"]["errors"] == {**NONE, "rate_limited": 2, "timeout": 1, "quality": 1}
    rows = {r["key"]: r for r in body["rows"]}
    assert rows["acme/a"]["errors"] == {**NONE, "rate_limited": 2, "timeout": 1}
    assert rows["acme/b"]["errors"] == {**NONE, "quality": 1}
    strategies = {r["key"]: r["errors"] for r in body["by_strategy"]}
    assert strategies["ensemble"] == {**NONE, "timeout": 1}

    daily = reader.get("/api/v1/costs/daily?start=2026-04-01&end=2026-04-01").json()
    assert daily[0]["errors"] == body["total"]["errors"]


def test_telemetry_counts_failures_per_class_for_each_key(reader, ledger):
    body = reader.get("/api/v1/telemetry/summary?start=2026-04-01&end=2026-04-01&by=model").json()

    rows = {r["key"]: r for r in body["rows"]}
    assert rows["acme/a"]["errors"] == {**NONE, "rate_limited": 2, "timeout": 1}
    assert rows["acme/b"]["errors"] == {**NONE, "quality": 1}
    assert rows["acme/b"]["successes"] == 0 and rows["acme/b"]["requests"] == 2


def test_the_csv_exports_carry_the_class(reader, ledger):
    daily = reader.get("/api/v1/costs/export.csv?start=2026-04-01&end=2026-04-01")
    rows = list(csv.DictReader(io.StringIO(b"".join(daily.streaming_content).decode())))
    a = next(r for r in rows if r["model"] == "acme/a" and r["strategy"] == "single")
    assert (a["rate_limited_errors"], a["timeout_errors"], a["quality_errors"]) == ("2", "0", "0")

    events = reader.get("/api/v1/costs/export.csv?start=2026-04-01&end=2026-04-01&level=events")
    rows = list(csv.DictReader(io.StringIO(b"".join(events.streaming_content).decode())))
    assert sorted(r["error"] for r in rows) == ["", "", "quality", "rate_limited", "rate_limited", "timeout"]


def test_a_repeat_with_another_class_is_an_idempotency_conflict(api_client, ledger):
    event = {
        "request_id": "r-1",
        "occurred_at": DAY.isoformat(),
        "model": "acme/a",
        "success": False,
        "error": "timeout",
    }
    assert api_client.post_json("/api/v1/usage", {"events": [event]}).status_code == 200
    assert api_client.post_json("/api/v1/usage", {"events": [event]}).json()["duplicates"] == 1

    response = api_client.post_json("/api/v1/usage", {"events": [{**event, "error": "rate_limited"}]})
    assert response.status_code == 409 and response.json()["code"] == "idempotency_conflict"
