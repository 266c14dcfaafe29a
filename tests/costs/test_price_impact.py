"""A price-change alert says what last week's traffic of the model would cost at the new prices."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import AlertKind
from catalog.sync import sync_catalog
from core.alerts import alert_payload
from core.models import Alert
from costs.models import UsageEvent
from tests.catalog.test_sync import entry
from tests.factories import ingest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_client(settings):
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 1.0
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1


@pytest.fixture
def catalog(fake_openrouter):
    """Three models at $1 per million prompt tokens and $2 per million completion tokens."""
    models = [entry(f"acme/model-{i}") for i in range(3)]
    fake_openrouter.set_models(models)
    assert sync_catalog().status == "succeeded"
    return models


def reprice(fake_openrouter, models, **prices: dict) -> None:
    changed = copy.deepcopy(models)
    for m in changed:
        m["pricing"].update(prices.get(m["id"].replace("acme/", "").replace("-", "_"), {}))
    fake_openrouter.set_models(changed)


def impact(model_id: str) -> Alert:
    return Alert.objects.get(kind=AlertKind.PRICE_CHANGE, model_id=model_id)


def test_the_alert_prices_last_weeks_traffic_at_the_old_and_new_prices(fake_openrouter, catalog):
    now = datetime.now(UTC)
    ingest(
        # 11,000 prompt tokens (4,000 read from the cache, which has no price of its own: prompt
        # price) and 2,500 completion tokens (100 reasoning, no price of its own) in the week...
        {"occurred_at": now - timedelta(days=3), "prompt_tokens": 10_000, "completion_tokens": 2_000},
        {"occurred_at": now - timedelta(days=3), "prompt_tokens": 0, "completion_tokens": 0, "success": False},
        {"occurred_at": now - timedelta(hours=1), "prompt_tokens": 1_000, "completion_tokens": 500},
        # ...and a large call eight days ago, outside it.
        {"occurred_at": now - timedelta(days=8), "prompt_tokens": 1_000_000, "completion_tokens": 0},
        model="acme/model-1",
    )
    UsageEvent.objects.filter(prompt_tokens=10_000).update(cached_tokens=4_000)
    ingest(model="acme/model-0")  # a model whose price stays: not asked about
    reprice(fake_openrouter, catalog, model_1={"prompt": "0.0000025", "completion": "0.0000015"})

    sync_catalog()

    alert = impact("acme/model-1")
    # Old: 11,000 × $0.000001 + 2,500 × $0.000002 = $0.016. New: 11,000 × $0.0000025 + 2,500 × $0.0000015 = $0.03125.
    figures = {k: v for k, v in alert.details.items() if k.startswith("weekly_") and k != "weekly_since"}
    assert figures == {
        "weekly_impact_usd": "0.01525",
        "weekly_cost_at_old_usd": "0.016",
        "weekly_cost_at_new_usd": "0.03125",
        "weekly_events": 3,
    }
    assert alert.details["changes"][0] == {"field": "prompt", "old": "0.000001", "new": "0.0000025"}
    assert alert.message.endswith("(last week's traffic: +$0.0152/week, 3 events)")
    assert alert_payload(alert)["details"]["weekly_impact_usd"] == "0.01525"  # what subscribers receive


def test_a_price_cut_reads_as_a_saving(fake_openrouter, catalog):
    ingest(model="acme/model-2", prompt_tokens=1_000_000, completion_tokens=0)
    reprice(fake_openrouter, catalog, model_2={"prompt": "0.0000005"})

    sync_catalog()

    alert = impact("acme/model-2")
    assert alert.details["weekly_impact_usd"] == "-0.5" and alert.details["weekly_events"] == 1
    assert "(last week's traffic: -$0.50/week, 1 event)" in alert.message


def test_a_model_without_usage_costs_nothing_more_and_all_cost_one_query(fake_openrouter, catalog):
    ingest(model="acme/model-0", prompt_tokens=1_000_000, completion_tokens=0)
    reprice(
        fake_openrouter,
        catalog,
        model_0={"prompt": "0.000002"},
        model_1={"prompt": "0.000003"},
        model_2={"completion": "0.000004"},
    )

    with CaptureQueriesContext(connection) as queries:
        sync_catalog()

    for model_id in ("acme/model-1", "acme/model-2"):
        details = impact(model_id).details
        assert details["weekly_impact_usd"] == "0" and details["weekly_events"] == 0
        assert details["weekly_cost_at_old_usd"] == details["weekly_cost_at_new_usd"] == "0"
    assert impact("acme/model-0").details["weekly_impact_usd"] == "1"
    ledger = UsageEvent._meta.db_table
    assert len([q for q in queries if ledger in q["sql"]]) == 1  # one aggregate for the three models


def test_a_price_the_ledger_cannot_use_leaves_the_cost_unknown(fake_openrouter, catalog):
    ingest(model="acme/model-1")
    changed = copy.deepcopy(catalog)
    changed[1]["pricing"] = {"prompt": "-1", "completion": "-1"}  # a router: priced per pick
    fake_openrouter.set_models(changed)

    sync_catalog()

    details = impact("acme/model-1").details
    assert details["weekly_impact_usd"] is None and details["weekly_cost_at_new_usd"] is None
    assert details["weekly_cost_at_old_usd"] == "0.00012" and details["weekly_events"] == 1
