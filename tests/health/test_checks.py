"""Health checks against the fake OpenRouter: endpoint status first, pings only with a key and
under the daily cap, the faults a real provider gives, bounded concurrency, and which models
are checked."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import CategoryRanking, ModelStatus
from core.locks import hold_lock
from costs.models import UsageEvent
from health.checks import models_to_check, run_health_checks
from health.models import HealthCheckRun, ModelHealthCheck
from health.pings import spent_today
from health.probing import PING_LOCK, HealthCheckError, run_async
from health.selectors import HEALTH_STRATEGY
from tests.factories import (
    CatalogModelFactory,
    CategoryFactory,
    EscalationOverrideFactory,
    FamilyFactory,
    RoleFactory,
    RolePreferenceFactory,
    SyncRunFactory,
    ingest,
)
from tests.fake_openrouter import Reply, drop, error_body, error_json, status, timeout
from tests.health.conftest import DOWN, UP, completion, endpoint, ids, recorded_reply

pytestmark = pytest.mark.django_db


# --- Without a key: the free checks only -------------------------------------------------------


def test_without_a_key_only_the_free_checks_run(acme, fake_openrouter, no_key):
    run = run_health_checks(model_ids=ids(acme))

    assert (run.status, run.models_checked, run.models_failed, run.pinged) == ("ok", 4, 0, 0)
    assert "no OPENROUTER_API_KEY" in run.note
    check = run.checks.get(model_id="acme/m0")
    assert (check.endpoints_total, check.endpoints_up, check.best_uptime, check.pinged, check.ping_ok) == (
        2,
        1,
        99.5,
        False,
        None,
    )
    assert not fake_openrouter.requests_to("/chat/completions")
    assert not fake_openrouter.requests_to("/key")
    assert len(fake_openrouter.requests_to("/models")) == 1  # connectivity
    assert not UsageEvent.objects.exists()


def test_no_ping_keeps_to_the_free_checks_even_with_a_key(acme, fake_openrouter, keyed):
    run = run_health_checks(model_ids=ids(acme), ping=False)

    assert run.pinged == 0 and "pings off" in run.note
    assert not fake_openrouter.requests_to("/chat/completions")
    assert run.key_limit_usd == Decimal(25)  # /key is still read


# --- The ping ----------------------------------------------------------------------------------


def test_a_ping_is_small_and_books_the_cost_openrouter_reports(acme, fake_openrouter, keyed, recorded_completion):
    fake_openrouter.set_chat("acme/m0", recorded_reply(recorded_completion))

    run = run_health_checks(model_ids=["acme/m0"])

    sent = fake_openrouter.requests_to("/chat/completions")[0]
    assert sent.headers["authorization"] == "Bearer sk-or-v1-test"
    body = sent.json()
    assert body["model"] == "acme/m0" and body["max_tokens"] == 5 and body["stream"] is False
    assert "reasoning" not in body  # the model has no reasoning to turn off
    # The recorded answer: 19 prompt and 7 completion tokens for 1.255e-05 USD.
    event = UsageEvent.objects.get()
    assert event.request_id == f"health:{run.pk}:acme/m0" and event.strategy == HEALTH_STRATEGY
    assert (event.model_id, event.prompt_tokens, event.completion_tokens) == ("acme/m0", 19, 7)
    assert event.cost_usd == Decimal("0.00001255") and event.success
    assert event.generation_id == recorded_completion["response"]["body"]["id"]
    check = run.checks.get()
    assert (check.pinged, check.ping_ok, check.http_status, check.ok) == (True, True, 200, True)
    assert check.ping_cost_usd == Decimal("0.00001255") == run.ping_spend_usd
    assert check.latency_ms is not None
    assert (run.key_limit_usd, run.key_usage_usd) == (Decimal(25), Decimal("3.5"))


def test_a_ping_without_a_reported_cost_is_booked_at_catalog_prices(acme, fake_openrouter, keyed):
    fake_openrouter.set_chat("acme/m1", completion("acme/m1", cost=None, prompt_tokens=10, completion_tokens=2))

    run_health_checks(model_ids=["acme/m1"])

    event = UsageEvent.objects.get()
    assert event.cost_usd is None and event.computed_cost_usd == Decimal("0.000014")  # 10 x 0.000001 + 2 x 0.000002
    assert spent_today() == Decimal("0.000014")


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        ({"mandatory": False, "supported_efforts": ["high", "medium", "low", "minimal"]}, {"enabled": False}),
        ({"mandatory": True, "supported_efforts": ["high", "medium", "low"]}, {"effort": "low", "exclude": True}),
        (None, {"effort": "minimal", "exclude": True}),  # not known: the lowest effort works everywhere
    ],
)
def test_reasoning_is_off_when_it_can_be_and_minimal_when_it_must_run(
    db, fake_openrouter, fast, keyed, reasoning, expected
):
    raw = {"reasoning": reasoning} if reasoning else {}
    model = CatalogModelFactory(id="acme/thinker", supports_reasoning=True, raw=raw)
    fake_openrouter.set_endpoints(model.id, [UP])

    run_health_checks(model_ids=[model.id])

    assert fake_openrouter.requests_to("/chat/completions")[0].json()["reasoning"] == expected


def test_a_ping_that_may_reach_openai_asks_for_the_16_tokens_openai_requires(acme, fake_openrouter, keyed):
    # OpenAI's Responses API answers 400 to max_output_tokens below 16.
    fake_openrouter.set_endpoints("acme/m2", [endpoint("OpenAI"), endpoint("Azure", status=-1)])

    run_health_checks(model_ids=["acme/m2"])

    assert fake_openrouter.requests_to("/chat/completions")[0].json()["max_tokens"] == 16


def test_a_model_without_a_usable_price_is_not_pinged(db, fake_openrouter, fast, keyed):
    CatalogModelFactory(id="openrouter/auto", variable_pricing=True, price_prompt=None, price_completion=None)
    fake_openrouter.set_endpoints("openrouter/auto", [UP])

    run = run_health_checks(model_ids=["openrouter/auto"])

    check = run.checks.get()
    assert (check.ok, check.pinged) == (True, False) and check.error_message.startswith("ping skipped")
    assert "1 ping skipped: no usable price" in run.note
    assert not fake_openrouter.requests_to("/chat/completions")


def test_a_refused_key_skips_the_pings_and_keeps_the_free_checks(acme, fake_openrouter, keyed):
    fake_openrouter.set_key(status(401, error_json(401, "User not found.")))

    run = run_health_checks(model_ids=ids(acme))

    assert run.status == "ok" and run.pinged == 0 and run.models_checked == 4
    assert "the key was refused" in run.note and "User not found" in run.note
    assert not fake_openrouter.requests_to("/chat/completions")


# --- The daily spend cap -----------------------------------------------------------------------
# A ping of these models is estimated at 32 x 0.000001 + 5 x 0.000002 = 0.000042 USD (prompt
# with its chat template, five completion tokens); OpenRouter reports 0.0000125 for each.


def slow_pings(fake, models, cost: str = "0.0000125", delay: float = 0.3) -> None:
    """Pings that answer after the endpoint checks of the whole run are back, so every
    reservation is made before any ping settles: the outcome does not depend on timing."""
    for m in models:
        fake.set_chat(m.id, Reply(json=completion(m.id, cost=cost), delay=delay))


def test_concurrent_pings_reserve_their_estimate_so_the_cap_holds(acme, fake_openrouter, keyed, settings):
    settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD = Decimal("0.0001")  # two estimates fit, not three
    slow_pings(fake_openrouter, acme)

    run = run_health_checks(model_ids=ids(acme))

    assert run.pinged == 2 and len(fake_openrouter.requests_to("/chat/completions")) == 2
    assert run.status == "ok"  # a skipped ping is not a failure
    assert "2 pings skipped: the daily ping cap is reached" in run.note
    assert "spent on pings today before this run: 0 of 0.0001 USD" in run.note
    skipped = run.checks.filter(pinged=False)
    assert skipped.count() == 2
    assert all("would pass the daily cap of 0.0001 USD" in c.error_message for c in skipped)


def test_todays_ping_spend_counts_and_once_the_cap_is_reached_nothing_is_pinged(acme, fake_openrouter, keyed, settings):
    settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD = Decimal("0.0001")
    slow_pings(fake_openrouter, acme)
    # Yesterday's pings do not count against today.
    ingest(
        request_id="health:0:acme/m0",
        occurred_at=timezone.now() - timedelta(days=1),
        model="acme/m0",
        strategy=HEALTH_STRATEGY,
        cost_usd=Decimal("1"),
    )

    pinged = [run_health_checks(model_ids=ids(acme)).pinged for _ in range(5)]

    # 0.0001 left: 2 pings; then 0.000075, 0.0000625, 0.00005 left: 1 each; 0.0000375 < 0.000042.
    assert pinged == [2, 1, 1, 1, 0]
    today = UsageEvent.objects.filter(strategy=HEALTH_STRATEGY, occurred_at__date=timezone.now().date())
    assert sum(e.cost_usd for e in today) == Decimal("0.0000625") == spent_today()
    assert spent_today() <= settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD


def test_nothing_is_spent_over_the_cap_when_pings_cost_what_they_were_estimated_at(
    acme, fake_openrouter, keyed, settings
):
    settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD = Decimal("0.0002")
    slow_pings(fake_openrouter, acme, cost="0.000042")

    for _ in range(3):
        run_health_checks(model_ids=ids(acme))

    assert UsageEvent.objects.count() == 4  # 4 x 0.000042 = 0.000168; a fifth would pass 0.0002
    assert spent_today() == Decimal("0.000168") <= settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD


def test_a_second_run_while_one_is_pinging_does_only_the_free_checks(acme, fake_openrouter, keyed):
    with hold_lock(PING_LOCK, holder="health run #0 (test)", ttl_seconds=60):
        run = run_health_checks(model_ids=ids(acme))

    assert run.pinged == 0 and run.models_checked == 4
    assert "another health run is pinging (health run #0 (test))" in run.note
    assert not fake_openrouter.requests_to("/chat/completions")


# --- Faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code", "http_status"),
    [
        (
            status(402, error_json(402, "Insufficient credits. Add more using https://openrouter.ai/credits")),
            "paymentrequired:402",
            402,
        ),
        (status(429, error_json(429, "Rate limit exceeded: free-models-per-min.")), "ratelimited:429", 429),
        (status(502, error_json(502, "Provider returned error", {"provider_name": "Acme"})), "servererror:502", 502),
        (status(503, error_json(503, "No instances available")), "servererror:503", 503),
        (timeout(3), "timeout", None),
        (drop(), "unreachable", None),
        # The status line went out before the provider failed: a 200 whose body is an error.
        (error_body(502, "Provider returned error", {"provider_name": "Acme"}), "servererror:502", 200),
        (error_body(402, "Insufficient credits"), "paymentrequired:402", 200),
    ],
)
def test_a_failing_ping_fails_the_check_with_its_reason(acme, fake_openrouter, keyed, reply, code, http_status):
    fake_openrouter.script("/chat/completions", reply)

    run = run_health_checks(model_ids=["acme/m1"])

    check = run.checks.get()
    assert (check.ok, check.pinged, check.ping_ok) == (False, True, False)
    assert (check.error_code, check.http_status) == (code, http_status)
    assert check.error_message and check.ping_cost_usd is None
    assert (check.endpoints_up, check.endpoints_total) == (1, 2)  # the free part was read
    assert (run.status, run.models_failed) == ("failed", 1)
    assert not UsageEvent.objects.exists()  # a failed ping's cost is unknown: nothing booked


def test_the_ping_is_sent_once_never_retried(acme, fake_openrouter, keyed):
    fake_openrouter.script("/chat/completions", status(503))

    run_health_checks(model_ids=["acme/m1"])

    assert len(fake_openrouter.requests_to("/chat/completions")) == 1


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (status(404, error_json(404, "Model not found")), "badresponse:404"),
        (status(503), "servererror:503"),
        (timeout(3), "timeout"),
    ],
)
def test_a_failing_endpoint_list_fails_the_check_without_a_ping(acme, fake_openrouter, keyed, reply, code):
    fake_openrouter.script("/models/acme/m2/endpoints", reply)

    check = run_health_checks(model_ids=["acme/m2"]).checks.get()

    assert (check.ok, check.pinged, check.error_code) == (False, False, code)
    assert not fake_openrouter.requests_to("/chat/completions")


def test_no_endpoint_up_fails_without_a_ping(acme, fake_openrouter, keyed):
    fake_openrouter.set_endpoints("acme/m2", [DOWN, endpoint("Other", status=-5, uptime_last_30m=None)])
    fake_openrouter.set_endpoints("acme/m3", [])

    run = run_health_checks(model_ids=["acme/m2", "acme/m3"])

    checks = {c.model_id: c for c in run.checks.all()}
    assert (checks["acme/m2"].ok, checks["acme/m2"].pinged, checks["acme/m2"].error_code) == (
        False,
        False,
        "no_endpoint_up",
    )
    assert checks["acme/m2"].best_uptime == 40.0
    assert (checks["acme/m3"].ok, checks["acme/m3"].error_code) == (False, "no_endpoints")
    assert run.status == "failed" and not fake_openrouter.requests_to("/chat/completions")


def test_one_failure_among_several_makes_the_run_degraded(acme, fake_openrouter, keyed):
    fake_openrouter.set_endpoints("acme/m0", [DOWN])

    run = run_health_checks(model_ids=ids(acme))

    assert (run.status, run.models_checked, run.models_failed, run.pinged) == ("degraded", 4, 1, 3)


def test_unreachable_openrouter_is_a_recorded_error_run(db, settings, fast):
    settings.OPENROUTER_BASE_URL = "http://127.0.0.1:9/api/v1"  # nothing listens there
    CatalogModelFactory(id="acme/x")

    with pytest.raises(HealthCheckError, match="OpenRouter is unreachable"):
        run_health_checks(model_ids=["acme/x"])

    run = HealthCheckRun.objects.get()
    assert run.status == "error" and "unreachable" in run.error and run.finished_at is not None
    assert not ModelHealthCheck.objects.exists()


# --- Concurrency -------------------------------------------------------------------------------


def test_twenty_checks_with_a_concurrency_of_ten_keep_exactly_ten_in_flight(db, fake_openrouter, keyed, settings):
    settings.LLMHIVE_HEALTH_CONCURRENCY = 10
    settings.LLMHIVE_HEALTH_TIMEOUT_SECONDS = 5.0
    made = [
        CatalogModelFactory(id=f"acme/c{i:02}", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
        for i in range(20)
    ]
    for m in made:
        fake_openrouter.set_endpoints(m.id, [UP])
        fake_openrouter.set_chat(m.id, completion(m.id))
    fake_openrouter.handler_delay = 0.2
    fake_openrouter.reset_counters()

    run = run_health_checks(model_ids=ids(made))

    assert (run.models_checked, run.models_failed, run.pinged) == (20, 0, 20)
    assert len(fake_openrouter.requests_to("/chat/completions")) == 20
    assert fake_openrouter.max_in_flight == 10  # counted by the server: up to ten, never more


def test_a_slow_check_times_out_alone(acme, fake_openrouter, no_key):
    fake_openrouter.script("/models/acme/m3/endpoints", timeout(3))

    run = run_health_checks(model_ids=ids(acme))

    failed = run.checks.get(ok=False)
    assert failed.model_id == "acme/m3" and failed.error_code == "timeout" and "1 s" in failed.error_message
    assert run.models_failed == 1


def test_the_async_part_runs_from_inside_a_running_event_loop():
    async def inner() -> str:
        await asyncio.sleep(0)
        return "done"

    async def caller() -> str:
        return run_async(inner())  # a sync helper called by async code: runs in a fresh thread

    assert asyncio.run(caller()) == "done"


# --- Which models are checked ------------------------------------------------------------------


def test_by_default_the_models_that_matter_are_checked(db, no_key):
    made = {
        name: CatalogModelFactory(id=f"acme/{name}")
        for name in (
            "preferred",
            "in-family",
            "override-from",
            "override-to",
            "ranked",
            "used",
            "pinged-only",
            "disabled",
            "missing",
            "unrelated",
        )
    }
    family = FamilyFactory(slug="acme-fam", pattern="acme/in-family*")
    made["in-family"].family = family
    made["in-family"].save()
    made["disabled"].enabled = False
    made["disabled"].save()
    made["missing"].status = ModelStatus.MISSING
    made["missing"].save()
    role = RoleFactory(slug="coder")
    RolePreferenceFactory(role=role, model=made["preferred"])
    RolePreferenceFactory(role=role, family=family)
    RolePreferenceFactory(role=role, model=made["disabled"])
    EscalationOverrideFactory(from_model=made["override-from"], to_model=made["override-to"])
    run = SyncRunFactory(kind="research", status="succeeded")
    CategoryRanking.objects.create(category=CategoryFactory(slug="programming"), model=made["ranked"], rank=1, run=run)
    CategoryRanking.objects.create(category=CategoryFactory(slug="legal"), model=made["missing"], rank=1, run=run)
    ingest(
        {"model": "acme/used"},
        {"model": "acme/unrelated", "occurred_at": timezone.now() - timedelta(days=8)},
        {"model": "acme/pinged-only", "strategy": HEALTH_STRATEGY},
    )

    assert set(models_to_check()) == {
        "acme/preferred",
        "acme/in-family",
        "acme/override-from",
        "acme/override-to",
        "acme/ranked",
        "acme/used",
    }
    assert len(models_to_check(top=2)) == 2


def test_named_models_are_checked_even_when_disabled_and_unknown_ones_are_refused(db, acme, no_key):
    CatalogModelFactory(id="acme/off", enabled=False)
    assert models_to_check(explicit=["acme/off", "acme/m0", "acme/off"]) == ["acme/off", "acme/m0"]
    with pytest.raises(HealthCheckError, match="not in the catalog: nobody/none"):
        models_to_check(explicit=["acme/m0", "nobody/none"])
