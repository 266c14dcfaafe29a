"""Usage ingest: whole-batch validation, idempotency, exact computed costs, alerts, rollups."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from catalog.models import PriceChange
from core.models import Alert
from costs.models import AlertKind as CostAlertKind
from costs.models import DailyCost, UsageEvent
from tests.factories import CatalogModelFactory

URL = "/api/v1/usage"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def event(n: int | str, **overrides) -> dict:
    base = {
        "request_id": f"req-{n}",
        "occurred_at": T0.isoformat(),
        "model": "acme/model",
        "role": "coder",
        "strategy": "single",
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "success": True,
        "latency_ms": 900,
    }
    return base | overrides


@pytest.fixture
def model(db):
    return CatalogModelFactory(
        id="acme/model",
        canonical_slug="acme/model-20260301",
        price_prompt=Decimal("0.00000125"),
        price_completion=Decimal("0.00001"),
    )


@pytest.fixture
def writer(make_api_key):
    from tests.conftest import ApiClient

    return ApiClient(make_api_key("usage:write"))


def test_a_good_batch_is_stored_with_its_computed_cost_and_rolled_up(writer, model):
    response = writer.post_json(URL, {"events": [event(1), event(2, success=False, latency_ms=100)]})

    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2, "duplicates": 0, "unknown_models": [], "unpriced_models": []}
    stored = UsageEvent.objects.get(request_id="req-1")
    # 1000 x 0.00000125 + 200 x 0.00001
    assert stored.computed_cost_usd == Decimal("0.00325")
    assert stored.model_id == "acme/model" and stored.cost_usd is None
    row = DailyCost.objects.get()
    assert (row.day, row.model, row.strategy, row.role) == (T0.date(), "acme/model", "single", "coder")
    assert (row.requests, row.successes, row.prompt_tokens, row.completion_tokens) == (2, 1, 2000, 400)
    assert row.cost_usd == Decimal("0.0065")
    assert row.latency_ms_sum == 1000 and row.latency_count == 2


def test_one_bad_event_rejects_the_whole_batch_naming_its_index_and_field(writer, model):
    batch = [event(1), event(2), event(3, prompt_tokens=-5), event(4, success="perhaps")]

    response = writer.post_json(URL, {"events": batch})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid"
    fields = {e["field"] for e in body["errors"]}
    assert {"events.2.prompt_tokens", "events.3.success"} <= fields
    assert UsageEvent.objects.count() == 0 and DailyCost.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"occurred_at": "2026-03-10T12:00:00"}, "occurred_at"),  # no timezone
        ({"occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "occurred_at"),
        ({"reasoning_tokens": 500}, "reasoning_tokens"),  # more than completion_tokens
        ({"cached_tokens": 900, "cache_write_tokens": 200}, "cache_write_tokens"),
        ({"quality_score": 1.5}, "quality_score"),
        ({"cost_usd": "-0.1"}, "cost_usd"),
        ({"model": ""}, "model"),
        ({"promt_tokens": 3}, "promt_tokens"),  # a typo is refused, not silently dropped
        ({"occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at"),  # off the calendar in any timezone
        ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
        ({"occurred_at": (datetime.now(UTC) - timedelta(days=731)).isoformat()}, "occurred_at"),
        ({"prompt_tokens": 2**70}, "prompt_tokens"),
        ({"latency_ms": 2**31}, "latency_ms"),
        ({"cost_usd": "1e30"}, "cost_usd"),
        ({"tools": ["x" * 101]}, "tools.0"),
    ],
)
def test_each_invalid_field_is_named(writer, model, overrides, field):
    response = writer.post_json(URL, {"events": [event(1), event(2, **overrides)]})

    assert response.status_code == 422, response.content
    assert any(e["field"] == f"events.1.{field}" for e in response.json()["errors"]), response.json()
    assert UsageEvent.objects.count() == 0


def test_batches_over_a_thousand_or_empty_are_refused(writer, model):
    too_many = writer.post_json(URL, {"events": [event(i) for i in range(1001)]})
    empty = writer.post_json(URL, {"events": []})

    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "events"
    assert empty.status_code == 422
    assert UsageEvent.objects.count() == 0


def test_a_repeated_request_id_is_a_duplicate_not_a_second_row(writer, model):
    first = writer.post_json(URL, {"events": [event(1), event(2)]}).json()
    second = writer.post_json(URL, {"events": [event(2), event(3), event(3)]}).json()

    assert (first["accepted"], first["duplicates"]) == (2, 0)
    assert (second["accepted"], second["duplicates"]) == (1, 2)
    assert UsageEvent.objects.count() == 3
    assert DailyCost.objects.get().requests == 3


def test_the_age_bound_is_a_setting(writer, model, settings):
    settings.LLMHIVE_USAGE_MAX_AGE_DAYS = 1
    now = datetime.now(UTC)

    old = writer.post_json(URL, {"events": [event(1, occurred_at=(now - timedelta(days=2)).isoformat())]})
    recent = writer.post_json(URL, {"events": [event(2, occurred_at=(now - timedelta(hours=12)).isoformat())]})

    assert old.status_code == 422 and "LLMHIVE_USAGE_MAX_AGE_DAYS" in old.json()["errors"][0]["message"]
    assert recent.status_code == 200 and recent.json()["accepted"] == 1


def full_event(n: int, **overrides) -> dict:
    return event(
        n,
        role="writer",
        category="programming",
        decision_id="d-1",
        reasoning_tokens=50,
        cached_tokens=100,
        cache_write_tokens=20,
        cost_usd=1.255e-05,
        quality_score=0.8,
        escalation_depth=1,
        tools=["search", "code"],
        generation_id="gen-1",
        **overrides,
    )


def test_an_identical_repeat_is_a_duplicate_whatever_its_spelling(writer, model):
    assert writer.post_json(URL, {"events": [full_event(1)]}).json()["accepted"] == 1

    # The same instant in another timezone, the same cost written out: the same event.
    again = full_event(1, occurred_at="2026-03-10T14:00:00+02:00") | {"cost_usd": "0.00001255"}
    response = writer.post_json(URL, {"events": [again, full_event(2)]})

    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["duplicates"]) == (1, 1)


def test_a_repeat_of_a_cost_with_every_decimal_is_a_duplicate(writer, model):
    # 23 significant digits: PostgreSQL keeps them all, SQLite 15; a repeat is the same event on both.
    cost = "123.45678901234567890123"
    assert writer.post_json(URL, {"events": [event(1, cost_usd=cost)]}).json()["accepted"] == 1

    response = writer.post_json(URL, {"events": [event(1, cost_usd=cost)]})

    assert response.status_code == 200 and response.json()["duplicates"] == 1, response.content


@pytest.mark.parametrize(
    "change",
    [
        {"success": False},
        {"prompt_tokens": 1001},
        {"occurred_at": "2026-03-10T12:00:01+00:00"},
        {"cost_usd": 1.256e-05},
        {"tools": ["search"]},
        {"model": "acme/model-20260301"},  # resolves to the same model, but says something else
        {"role": ""},
    ],
)
def test_a_request_id_reused_with_a_different_payload_is_a_409_and_nothing_is_stored(writer, model, change):
    writer.post_json(URL, {"events": [full_event(1), full_event(2)]})
    before = list(DailyCost.objects.values())

    response = writer.post_json(URL, {"events": [full_event(3), full_event(2) | change, full_event(1)]})

    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "idempotency_conflict" and body["request_ids"] == ["req-2"]
    assert "req-2" in body["detail"]
    assert sorted(UsageEvent.objects.values_list("request_id", flat=True)) == ["req-1", "req-2"]
    assert list(DailyCost.objects.values()) == before


def test_a_request_id_twice_in_one_batch_with_different_payloads_is_a_409(writer, model):
    response = writer.post_json(URL, {"events": [event(7), event(8), event(7, role="writer"), event(8)]})

    assert response.status_code == 409 and response.json()["request_ids"] == ["req-7"]
    assert UsageEvent.objects.count() == 0


def test_checking_repeats_costs_one_query_whatever_the_batch(writer, model):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    writer.post_json(URL, {"events": [event(i) for i in range(300)]})

    def queries(batch: list[dict]) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert writer.post_json(URL, {"events": batch}).status_code == 200
        return len(captured)

    # The same batch sizes with and without repeats (SQLite inserts in chunks, so size matters).
    assert queries([event(0), event("new-a")]) == queries([event("fresh-a"), event("fresh-b")]) + 1
    many = queries([event(i) for i in range(1, 300)] + [event(f"new-{i}") for i in range(300)])
    assert many == queries([event(f"fresh-{i}") for i in range(599)]) + 1


def test_the_canonical_slug_resolves_to_the_catalog_model(writer, model):
    CatalogModelFactory(id="acme/model:free", canonical_slug="acme/model-20260301", price_prompt=0, price_completion=0)

    writer.post_json(URL, {"events": [event(1, model="acme/model-20260301")]})

    stored = UsageEvent.objects.get()
    assert stored.model_id == "acme/model" and stored.model_ref == "acme/model-20260301"
    assert DailyCost.objects.get().model == "acme/model"


def test_an_unknown_model_is_stored_with_its_string_and_alerted_once(writer, model):
    body = writer.post_json(URL, {"events": [event(1, model="mystery/model", cost_usd="0.002")]}).json()
    writer.post_json(URL, {"events": [event(2, model="mystery/model")]})

    assert body["unknown_models"] == ["mystery/model"]
    stored = UsageEvent.objects.get(request_id="req-1")
    assert stored.model_id is None and stored.model_ref == "mystery/model"
    assert stored.computed_cost_usd is None and stored.cost_usd == Decimal("0.002")
    alert = Alert.objects.get(kind=CostAlertKind.UNKNOWN_MODEL_REPORTED)
    assert "mystery/model" in alert.message and alert.times == 2
    row = DailyCost.objects.get(model="mystery/model")
    assert row.cost_usd == Decimal("0.002") and row.unpriced_requests == 1


def test_a_model_without_a_usable_price_is_unpriced_not_free(writer, db):
    CatalogModelFactory(id="router/auto", variable_pricing=True, price_prompt=None, price_completion=None)

    body = writer.post_json(URL, {"events": [event(1, model="router/auto")]}).json()

    assert body["unpriced_models"] == ["router/auto"]
    assert Alert.objects.filter(kind=CostAlertKind.UNPRICED_MODEL, model_id="router/auto").exists()
    row = DailyCost.objects.get()
    assert row.cost_usd == 0 and row.unpriced_requests == 1


def test_the_price_in_force_when_the_call_happened_is_used(writer, model):
    # The prompt price was 0.000002 until T0 + 1h, when it dropped to the current 0.00000125.
    PriceChange.objects.create(
        model=model,
        field="prompt",
        old=Decimal("0.000002"),
        new=Decimal("0.00000125"),
        observed_at=T0 + timedelta(hours=1),
    )
    before = event(1, occurred_at=T0.isoformat(), completion_tokens=0)
    after = event(2, occurred_at=(T0 + timedelta(hours=2)).isoformat(), completion_tokens=0)

    writer.post_json(URL, {"events": [before, after]})

    costs = dict(UsageEvent.objects.values_list("request_id", "computed_cost_usd"))
    assert costs == {"req-1": Decimal("0.002"), "req-2": Decimal("0.00125")}


def test_recent_events_are_priced_from_the_catalog_in_hand_and_a_price_change_is_seen_at_once(writer, model):
    """The catalog's prices are kept in the process while its version stands (one small read per
    batch); a sync or an edit moves the version in the transaction that changes the prices."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    now = datetime.now(UTC).replace(microsecond=0)
    writer.post_json(URL, {"events": [event(1, occurred_at=(now - timedelta(minutes=5)).isoformat())]})
    with CaptureQueriesContext(connection) as captured:
        writer.post_json(URL, {"events": [event(2, occurred_at=(now - timedelta(minutes=4)).isoformat())]})
    catalog_reads = [
        q["sql"] for q in captured if 'FROM "model_catalog"' in q["sql"] or "catalog_pricechange" in q["sql"]
    ]
    assert catalog_reads == []

    # A sync lowers the prompt price a minute ago (the model and its history, as catalog.apply
    # writes them). An event from before the change keeps the old price.
    changed_at = now - timedelta(minutes=1)
    model.price_prompt = Decimal("0.000001")
    model.save()
    PriceChange.objects.create(
        model=model, field="prompt", old=Decimal("0.00000125"), new=Decimal("0.000001"), observed_at=changed_at
    )
    writer.post_json(
        URL,
        {
            "events": [
                event(3, occurred_at=(changed_at - timedelta(seconds=30)).isoformat(), completion_tokens=0),
                event(4, occurred_at=now.isoformat(), completion_tokens=0),
            ]
        },
    )

    costs = dict(UsageEvent.objects.values_list("request_id", "computed_cost_usd"))
    assert costs["req-2"] == Decimal("0.00325")
    assert costs["req-3"] == Decimal("0.00125") and costs["req-4"] == Decimal("0.001")


def test_reported_cost_wins_in_reports_and_the_drift_is_kept(writer, model):
    writer.post_json(URL, {"events": [event(1, cost_usd=0.0034), event(2)]})

    row = DailyCost.objects.get()
    assert row.cost_usd == Decimal("0.0034") + Decimal("0.00325")
    assert row.reported_cost_usd == Decimal("0.0034")
    assert row.computed_cost_of_reported_usd == Decimal("0.00325")
    assert row.drift_usd == Decimal("0.00015")


def test_events_fall_into_their_utc_day(writer, model):
    late = "2026-03-31T23:59:59.999999+00:00"
    early_elsewhere = "2026-04-01T01:30:00+02:00"  # still March 31st in UTC
    next_day = "2026-04-01T00:00:00+00:00"

    writer.post_json(
        URL,
        {"events": [event(1, occurred_at=late), event(2, occurred_at=early_elsewhere), event(3, occurred_at=next_day)]},
    )

    days = dict(DailyCost.objects.values_list("day", "requests"))
    assert days == {datetime(2026, 3, 31).date(): 2, datetime(2026, 4, 1).date(): 1}


@pytest.mark.django_db(transaction=True)
def test_decimal_sums_stay_exact_over_many_events(writer, model, connection_vendor):
    if connection_vendor != "postgresql":
        pytest.skip("SQLite stores decimals as 15-digit floats; exact money needs PostgreSQL")
    price = Decimal("0.00000001703012")
    model.price_prompt, model.price_completion = price, price
    model.save()
    batches = [
        [event(f"{b}-{i}", prompt_tokens=7, completion_tokens=3, cost_usd="0.00000000000001") for i in range(1000)]
        for b in range(5)
    ]
    for batch in batches:
        assert writer.post_json(URL, {"events": batch}).status_code == 200

    row = DailyCost.objects.get()
    assert row.cost_usd == Decimal("0.00000000000001") * 5000
    assert row.computed_cost_of_reported_usd == price * 10 * 5000
    assert sum(UsageEvent.objects.values_list("computed_cost_usd", flat=True)) == price * 10 * 5000


@pytest.fixture
def connection_vendor():
    from django.db import connection

    return connection.vendor


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_clients_with_overlapping_batches_store_each_event_once(live_server, make_api_key, model):
    key = make_api_key("usage:write")
    # Client c sends ids [c*100, c*100 + 300): every id is sent by up to three clients at once.
    batches = [
        [event(i, occurred_at=(T0 + timedelta(minutes=i % 7)).isoformat()) for i in range(c * 100, c * 100 + 300)]
        for c in range(8)
    ]
    barrier = threading.Barrier(8)

    def send(batch):
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
            barrier.wait()
            response = client.post(URL, json={"events": batch})
            assert response.status_code == 200, response.text
            return response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, batches))

    distinct = len({e["request_id"] for batch in batches for e in batch})
    assert distinct == 1000
    assert sum(a["accepted"] for a in answers) == distinct
    assert sum(a["duplicates"] for a in answers) == 8 * 300 - distinct
    assert UsageEvent.objects.count() == distinct
    row = DailyCost.objects.get()
    assert row.requests == distinct and row.prompt_tokens == 1000 * distinct
    assert row.cost_usd == Decimal("0.00325") * distinct


def test_usage_needs_the_usage_write_scope(make_api_key, model):
    from tests.conftest import ApiClient

    wrong = ApiClient(make_api_key("route", "costs:read")).post_json(URL, {"events": [event(1)]})
    anonymous = ApiClient().post_json(URL, {"events": [event(1)]})

    assert wrong.status_code == 403 and wrong.json()["code"] == "missing_scope"
    assert anonymous.status_code == 401
    assert UsageEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_batch_moves_its_data_versions_together_in_one_statement_inside_its_transaction(model):
    """The spend, the strategy memory and the cooldowns a batch moved get their new versions in
    one statement before the batch commits (not a statement and a commit each after it), and this
    process's watch holds the committed values without reading them again."""
    from django.db import connection

    from core.models import DataVersion, version_watch
    from costs.ingest import ingest_events

    now = datetime.now(UTC)
    failing = [
        event(f"f{i}", occurred_at=now, success=False, error=error)
        for i, error in enumerate(["rate_limited", "timeout", "provider_error"])
    ]
    rows = [dict(e, occurred_at=now) for e in [event("ok"), *failing]]
    DataVersion.bump("spend", "stats", "cooldowns")  # (each row made once per database: not measured)
    before = DataVersion.current()
    writes: list[tuple[str, bool]] = []

    def record(execute, sql, params, many, context):
        if "dataversion" in sql and not sql.lstrip().upper().startswith("SELECT"):
            writes.append((sql, connection.in_atomic_block))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        result = ingest_events(rows)

    assert result.accepted == 4
    assert len(writes) == 1, writes
    assert writes[0][1], "the versions are written inside the batch's transaction"
    after = DataVersion.current()
    moved = {name for name in after if after[name] != before.get(name)}
    assert moved == {"spend", "stats", "cooldowns"}
    assert {name: version_watch.local_values[name] for name in moved} == {name: after[name] for name in moved}


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_trips_nothing_leaves_the_cooldown_version_alone(model):
    from core.models import DataVersion
    from costs.ingest import ingest_events

    before = DataVersion.current()
    ingest_events([dict(event("calm"), occurred_at=datetime.now(UTC))])
    after = DataVersion.current()
    assert {name for name in after if after[name] != before.get(name)} == {"spend", "stats"}
