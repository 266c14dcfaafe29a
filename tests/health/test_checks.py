"""Health checks against the fake OpenRouter: endpoint status first, pings only with a key and
under the daily cap, the faults a real provider gives, bounded concurrency, reliability and
alerts, the command, the admin and the API."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from catalog.models import AlertKind, CatalogAlert
from costs.models import UsageEvent
from health.checks import HEALTH_STRATEGY, run_health_checks
from health.models import HealthCheckRun, ModelHealthCheck, ModelReliability
from health.selectors import reliability_by_model, unhealthy_models
from llmhive_site.models import DataVersion
from routing.models import Role, RolePreference
from tests.conftest import ApiClient
from tests.fake_openrouter import Reply, error_body, load_recorded, recorded_dir, status, timeout
from tests.factories import CatalogModelFactory

pytestmark = pytest.mark.django_db

UP = {"name": "Acme", "provider_name": "Acme", "context_length": 128000, "pricing": {"prompt": "0.000001", "completion": "0.000002"},
      "status": 0, "uptime_last_30m": 99.5, "supported_parameters": ["max_tokens"]}
DOWN = {**UP, "name": "Acme slow", "status": -2, "uptime_last_30m": 40.0}


def completion(model: str, cost: str = "0.0000125") -> dict:
    """A chat completion in the recorded 2026 shape, for `model`."""
    path = recorded_dir() / "chat_completions" / "chat_completion_2026-04-27_openai-gpt-5.4-nano.json"
    if path.exists():
        body = load_recorded("chat_completions/chat_completion_2026-04-27_openai-gpt-5.4-nano.json")
        body = body["response"]["body"]
    else:
        body = {"id": "gen-1", "choices": [{"message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}
    body = json.loads(json.dumps(body))
    body["model"] = model
    body.setdefault("usage", {})["cost"] = float(cost)
    return body


@pytest.fixture
def models(db, fake_openrouter, settings):
    settings.LLMHIVE_HEALTH_TIMEOUT_SECONDS = 1.0
    made = [CatalogModelFactory(id=f"acme/m{i}", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
            for i in range(4)]
    for m in made:
        fake_openrouter.set_endpoints(m.id, [UP, DOWN])
        fake_openrouter.set_chat(m.id, completion(m.id))
    fake_openrouter.set_key({"data": {"label": "test", "limit": 25, "usage": 3.5, "is_free_tier": False}})
    return made


@pytest.fixture
def keyed(settings):
    settings.OPENROUTER_API_KEY = "sk-or-test"


def ids(models) -> list[str]:
    return [m.id for m in models]


def test_without_a_key_only_the_free_checks_run(models, fake_openrouter, settings):
    settings.OPENROUTER_API_KEY = ""
    run = run_health_checks(model_ids=ids(models))

    assert run.status == "ok" and run.models_checked == 4 and run.pinged == 0
    assert "no OPENROUTER_API_KEY" in run.note
    check = run.checks.get(model_id="acme/m0")
    assert (check.endpoints_total, check.endpoints_up, check.best_uptime, check.pinged) == (2, 1, 99.5, False)
    assert not fake_openrouter.requests_to("/chat/completions")
    assert reliability_by_model()["acme/m0"] == 0.5  # half the endpoints up, no ping


def test_a_ping_is_small_recorded_in_the_ledger_and_costs_what_openrouter_says(models, fake_openrouter, keyed):
    run = run_health_checks(model_ids=["acme/m0"])

    assert run.pinged == 1 and run.ping_spend_usd == Decimal("0.0000125")
    assert (run.key_limit_usd, run.key_usage_usd) == (Decimal(25), Decimal("3.5"))
    sent = fake_openrouter.requests_to("/chat/completions")[0].json()
    assert sent["max_tokens"] <= 5 and sent["reasoning"]["effort"] == "minimal"
    event = UsageEvent.objects.get()
    assert event.strategy == HEALTH_STRATEGY and event.cost_usd == Decimal("0.0000125") and event.model_id == "acme/m0"
    assert reliability_by_model()["acme/m0"] == 1.0


def test_the_daily_cap_holds_even_for_concurrent_pings(models, fake_openrouter, keyed, settings):
    # Each ping may cost 20 x 0.000001 + 5 x 0.000002 = 0.00003 at catalog prices: room for two.
    settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD = Decimal("0.00007")
    run = run_health_checks(model_ids=ids(models))
    assert run.pinged == 2 and "daily ping cap" in run.note
    assert len(fake_openrouter.requests_to("/chat/completions")) == 2

    # What was spent today (0.0000125 a ping, as reported) counts: later runs ping while the
    # next ping's estimate still fits, then stop.
    pinged = [run_health_checks(model_ids=ids(models)).pinged for _ in range(4)]
    assert pinged == [1, 1, 0, 0]
    spent = sum(e.cost_usd for e in UsageEvent.objects.filter(strategy=HEALTH_STRATEGY))
    assert spent == Decimal("0.00005") <= settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD


@pytest.mark.parametrize(("reply", "code"), [
    (error_body(402, "Insufficient credits"), "paymentrequired"),
    (status(429, {"error": {"code": 429, "message": "Rate limited"}}), "ratelimited"),
    (status(502, {"error": {"code": 502, "message": "Bad gateway"}}), "servererror"),
    (status(503, {"error": {"code": 503, "message": "No provider available"}}), "servererror"),
    (timeout(3), "unreachable"),
    (Reply(json={"error": {"code": 502, "message": "Provider returned error"}}), ""),
])
def test_a_failing_ping_fails_the_check_with_its_reason(models, fake_openrouter, keyed, reply, code):
    fake_openrouter.script("/chat/completions", reply)

    run = run_health_checks(model_ids=["acme/m1"])

    check = run.checks.get()
    assert check.ok is False and check.ping_ok is False and check.pinged
    assert check.error_code.startswith(code) and check.error_message
    assert run.status == "failures" and run.models_failed == 1
    assert not UsageEvent.objects.exists()  # a failed ping costs nothing we know of


def test_no_endpoint_up_fails_without_a_ping(models, fake_openrouter, keyed):
    fake_openrouter.set_endpoints("acme/m2", [DOWN])
    run = run_health_checks(model_ids=["acme/m2"])
    check = run.checks.get()
    assert (check.ok, check.pinged, check.error_code) == (False, False, "no_endpoint_up")


def test_twenty_checks_with_a_concurrency_of_ten_keep_ten_in_flight(db, fake_openrouter, settings):
    settings.OPENROUTER_API_KEY = ""
    settings.LLMHIVE_HEALTH_CONCURRENCY = 10
    made = [CatalogModelFactory(id=f"acme/c{i}") for i in range(20)]
    for m in made:
        fake_openrouter.set_endpoints(m.id, [UP])
    fake_openrouter.handler_delay = 0.3
    fake_openrouter.reset_counters()

    run = run_health_checks(model_ids=ids(made))

    assert run.models_checked == 20 and run.models_failed == 0
    assert fake_openrouter.max_in_flight == 10  # counted by the server


def test_reliability_weighs_recent_checks_and_alerts_after_repeated_failures(models, fake_openrouter, settings):
    settings.OPENROUTER_API_KEY = ""
    settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT = 3
    fake_openrouter.set_endpoints("acme/m3", [UP])
    run_health_checks(model_ids=["acme/m3"])
    assert reliability_by_model()["acme/m3"] == 1.0
    before = DataVersion.current().get(DataVersion.HEALTH)

    fake_openrouter.set_endpoints("acme/m3", [DOWN])
    for expected in (0.7, 0.49, 0.343):
        run_health_checks(model_ids=["acme/m3"])
        assert reliability_by_model()["acme/m3"] == pytest.approx(expected)
    assert DataVersion.current().get(DataVersion.HEALTH) != before
    alert = CatalogAlert.objects.open().get(kind=AlertKind.MODEL_UNHEALTHY)
    assert alert.model_id == "acme/m3" and "3 health checks in a row" in alert.message
    assert [r.model_id for r in unhealthy_models()] == ["acme/m3"]

    fake_openrouter.set_endpoints("acme/m3", [UP])
    run_health_checks(model_ids=["acme/m3"])
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None and "Recovered" in alert.message
    assert ModelReliability.objects.get(model_id="acme/m3").consecutive_failures == 0


def test_by_default_the_models_that_matter_are_checked(models, fake_openrouter, settings):
    settings.OPENROUTER_API_KEY = ""
    role = Role.objects.create(slug="coder")
    RolePreference.objects.create(role=role, model_id="acme/m2", position=1)
    CatalogModelFactory(id="acme/off", enabled=False)
    RolePreference.objects.create(role=role, model_id="acme/off", position=2)

    run = run_health_checks()

    assert list(run.checks.values_list("model_id", flat=True)) == ["acme/m2"]


def test_unreachable_openrouter_is_one_readable_line_and_a_recorded_run(db, settings):
    settings.OPENROUTER_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 1
    CatalogModelFactory(id="acme/x")
    with pytest.raises(CommandError) as error:
        call_command("check_openrouter_models", "--model", "acme/x", stdout=io.StringIO())
    assert "OpenRouter is unreachable" in str(error.value) and "\n" not in str(error.value)
    assert HealthCheckRun.objects.get().status == "error"


def test_the_command_prints_a_table_or_json_and_exits_1_on_a_failure(models, fake_openrouter, keyed):
    out = io.StringIO()
    call_command("check_openrouter_models", "--model", "acme/m0", "--model", "acme/m1", stdout=out)
    table = out.getvalue()
    assert "key: limit 25 USD, usage 3.5 USD" in table
    assert "acme/m0" in table and "1/2" in table and "99.5%" in table and "2 checked, 0 failed, 2 pinged" in table

    fake_openrouter.set_endpoints("acme/m1", [DOWN])
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("check_openrouter_models", "--model", "acme/m0", "--model", "acme/m1", "--json", "--no-ping", stdout=out)
    assert exit_.value.code == 1
    body = json.loads(out.getvalue())
    assert body["failed"] == 1 and {m["model"]: m["ok"] for m in body["models"]} == {"acme/m0": True, "acme/m1": False}
    assert body["pinged"] == 0 and "pings off" in body["note"]

    with pytest.raises(CommandError, match="not in the catalog: nobody/none"):
        call_command("check_openrouter_models", "--model", "nobody/none", stdout=io.StringIO())


def test_the_health_models_api(models, fake_openrouter, make_api_key, settings):
    settings.OPENROUTER_API_KEY = ""
    run_health_checks(model_ids=["acme/m0", "acme/m1"])
    assert ApiClient().get("/api/v1/health/models").status_code == 401
    assert ApiClient(make_api_key("costs:read")).get("/api/v1/health/models").status_code == 403

    rows = ApiClient(make_api_key("route")).get("/api/v1/health/models").json()

    assert [r["model"] for r in rows] == ["acme/m0", "acme/m1"]
    assert rows[0]["reliability"] == 0.5 and rows[0]["endpoints_up"] == 1 and rows[0]["best_uptime"] == 99.5


def test_service_health_reports_the_task_queue(anon_client):
    from django_q.tasks import async_task

    async_task("health.tasks.run_health_checks_task")
    body = anon_client.get("/api/v1/health").json()
    queue = body["checks"]["task_queue"]
    assert queue["broker"] == "orm" and queue["queued"] == 1 and queue["oldest_queued_seconds"] >= 0
    assert queue["status"] == "no_worker" and body["status"] == "degraded"


def test_the_admin_pages_and_the_run_now_button(admin_client, models, fake_openrouter, settings, django_assert_max_num_queries):
    settings.OPENROUTER_API_KEY = ""
    run = run_health_checks(model_ids=ids(models))
    for url in (reverse("admin:health_healthcheckrun_changelist"), reverse("admin:health_healthcheckrun_change", args=[run.pk]),
                reverse("admin:health_modelhealthcheck_changelist"), reverse("admin:health_modelreliability_changelist")):
        with django_assert_max_num_queries(12):
            assert admin_client.get(url).status_code == 200
    response = admin_client.post(reverse("admin:health_run_now"), follow=True)
    assert "Health checks queued" in response.content.decode()
    from django_q.models import OrmQ

    assert OrmQ.objects.count() == 1
