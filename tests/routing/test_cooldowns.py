"""Cooldowns (circuit breakers per model), driven through the real API: failures reported with
POST /usage trip them, /route and /escalate leave cooling models out, GET /health/models and the
admin show them."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from costs.ingest import ingest_events
from routing import cooldowns, decision
from routing.models import CooldownState, ModelCooldown
from routing.snapshot import current_snapshot
from tests.factories import (
    CatalogModelFactory,
    EscalationOverrideFactory,
    RoleFactory,
    RolePreferenceFactory,
    usage_event,
)
from tests.routing.test_routing_admin import role_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def models(db):
    return {
        name: CatalogModelFactory(id=f"acme/{name}", supports_tools=True, supports_video=(name == "a"))
        for name in ("a", "b", "c")
    }


@pytest.fixture
def coder(models):
    role = RoleFactory(slug="coder", required_capabilities=["supports_tools"])
    RolePreferenceFactory(role=role, model=models["a"], position=10)  # acme/a is chosen while it is usable
    return role


def report(client, model: str, count: int = 1, *, error: str = "", success: bool | None = None, at=None, **extra):
    """POST /usage: `count` events for `model` (failures when an error class is given)."""
    events = [
        usage_event(
            model=model,
            error=error,
            success=(not error) if success is None else success,
            occurred_at=(at or datetime.now(UTC)).isoformat(),
            **extra,
        )
        for _ in range(count)
    ]
    response = client.post_json("/api/v1/usage", {"events": events})
    assert response.status_code == 200, response.content
    return response


def route(client, role: str = "coder", **body) -> dict:
    response = client.post_json("/api/v1/route", {"role": role, **body})
    assert response.status_code == 200, response.content
    return response.json()


def cooldown(model: str, role: str = "") -> ModelCooldown:
    return ModelCooldown.objects.get(model=model, role=role)


def test_retryable_failures_reaching_the_threshold_within_the_window_trip_a_cooldown(api_client, coder):
    report(api_client, "acme/a", 2, error="rate_limited")
    assert route(api_client)["model"] == "acme/a"  # two of three: still routed
    assert cooldown("acme/a").state == CooldownState.CLOSED

    report(api_client, "acme/a", error="timeout")  # a batch of one is enough

    row = cooldown("acme/a")
    assert row.state == CooldownState.OPEN and row.trips == 1 and row.streak == 1
    assert row.reason == "2 rate_limited, 1 timeout in 60 s; out for 30 s"
    assert (row.until - row.opened_at).total_seconds() == 30
    body = route(api_client)
    assert body["model"] != "acme/a" and "acme/a" not in body["fallbacks"]
    assert "acme/a" not in {c["model"] for c in body["candidates"]}


def test_failures_that_are_not_the_providers_fault_do_not_count(api_client, coder):
    for error in ("context_length", "content_filter", "invalid_request", "quality", ""):
        report(api_client, "acme/a", 3, error=error, success=False)

    assert not ModelCooldown.objects.exists()
    assert route(api_client)["model"] == "acme/a"


def test_failures_outside_the_window_do_not_count(api_client, coder):
    report(api_client, "acme/a", 2, error="provider_error", at=datetime.now(UTC) - timedelta(seconds=61))
    report(api_client, "acme/a", error="provider_error")
    assert cooldown("acme/a").state == CooldownState.CLOSED

    report(api_client, "acme/a", error="provider_error")
    report(api_client, "acme/a", error="provider_error")
    assert cooldown("acme/a").state == CooldownState.OPEN


def test_failures_are_counted_over_every_roles_events(api_client, coder):
    report(api_client, "acme/a", error="timeout", role="planner")
    report(api_client, "acme/a", error="timeout", role="reviewer")
    report(api_client, "acme/a", error="timeout", role="coder")

    assert cooldown("acme/a").state == CooldownState.OPEN


def test_a_batch_of_successes_costs_no_cooldown_query(api_client, coder):
    report(api_client, "acme/b", 3, error="rate_limited")  # a cooldown exists, for another model
    report(api_client, "acme/a")  # this process reads the changed cooldowns once (the in-process book)
    table = ModelCooldown._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        report(api_client, "acme/a", 50)

    assert not [q["sql"] for q in queries.captured_queries if table in q["sql"]]


def test_the_open_time_doubles_on_each_trip_in_a_row_capped_and_a_success_closes_it(api_client, coder, settings):
    settings.LLMHIVE_COOLDOWN_SECONDS = 0.2
    settings.LLMHIVE_COOLDOWN_MAX_SECONDS = 0.3
    report(api_client, "acme/a", 3, error="timeout")
    first = cooldown("acme/a")
    assert (first.until - first.opened_at).total_seconds() == pytest.approx(0.2)

    # Calls made before the trip and reported late change nothing while it is open.
    report(api_client, "acme/a", error="timeout", at=first.opened_at - timedelta(seconds=1))
    report(api_client, "acme/a", success=True, at=first.opened_at - timedelta(seconds=1))
    assert cooldown("acme/a").trips == 1 and cooldown("acme/a").state == CooldownState.OPEN

    time.sleep(0.25)  # half-open now: a failure reopens it for twice as long (capped at 0.3)
    report(api_client, "acme/a", error="rate_limited")
    second = cooldown("acme/a")
    assert second.state == CooldownState.OPEN and second.trips == 2 and second.streak == 2
    assert (second.until - second.opened_at).total_seconds() == pytest.approx(0.3)
    assert second.reason == "rate_limited while half-open; out for 0.3 s"

    time.sleep(0.35)  # half-open again: a success made now closes it
    report(api_client, "acme/a")
    closed = cooldown("acme/a")
    assert closed.state == CooldownState.CLOSED and closed.streak == 0 and closed.trips == 2
    assert route(api_client)["model"] == "acme/a"

    # Closed: the failures before it closed no longer count; three new ones trip it afresh.
    report(api_client, "acme/a", 2, error="timeout")
    assert cooldown("acme/a").state == CooldownState.CLOSED
    report(api_client, "acme/a", error="timeout")
    again = cooldown("acme/a")
    assert again.state == CooldownState.OPEN and again.streak == 1 and again.trips == 3
    assert (again.until - again.opened_at).total_seconds() == pytest.approx(0.2)


def test_while_half_open_a_seeded_share_of_decisions_tries_the_model(api_client, coder, settings):
    settings.LLMHIVE_COOLDOWN_SECONDS = 0.6
    settings.LLMHIVE_COOLDOWN_HALF_OPEN_SHARE = 0.25
    report(api_client, "acme/a", 3, error="provider_error")
    until = cooldown("acme/a").until
    assert all(route(api_client)["model"] != "acme/a" for _ in range(5))  # open: never
    assert datetime.now(UTC) < until

    time.sleep(max((until - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    decision.rng.seed(12)
    tried = sum(route(api_client)["model"] == "acme/a" for _ in range(400))
    decision.rng.seed(12)
    again = sum(route(api_client)["model"] == "acme/a" for _ in range(400))

    assert tried == again  # seeded: the same draws, the same decisions
    assert 70 <= tried <= 130, tried  # about a quarter of 400


def test_a_role_with_its_own_settings_is_judged_by_them(api_client, coder, models):
    planner = RoleFactory(slug="planner", required_capabilities=["supports_tools"], cooldown_failures=5)
    RolePreferenceFactory(role=planner, model=models["a"], position=10)

    report(api_client, "acme/a", 3, error="timeout")
    assert cooldown("acme/a").state == CooldownState.OPEN
    assert cooldown("acme/a", "planner").state == CooldownState.CLOSED
    assert route(api_client)["model"] != "acme/a"
    assert route(api_client, "planner")["model"] == "acme/a"

    report(api_client, "acme/a", 2, error="timeout")
    planner_row = cooldown("acme/a", "planner")
    assert planner_row.state == CooldownState.OPEN and planner_row.reason.startswith("5 timeout in 60 s")
    assert route(api_client, "planner")["model"] != "acme/a"


def test_no_eligible_model_counts_the_cooling_ones(api_client, coder):
    RoleFactory(slug="video", required_capabilities=["supports_video"])  # acme/a alone can serve it
    report(api_client, "acme/a", 3, error="rate_limited")

    response = api_client.post_json("/api/v1/route", {"role": "video"})

    assert response.status_code == 422, response.content
    assert response.json()["code"] == "no_eligible_model"
    assert response.json()["rejected"]["cooling_down"] == 1


def test_the_escalation_chain_skips_a_cooling_model(api_client, coder, models):
    EscalationOverrideFactory(from_model=models["b"], to_model=models["a"])
    escalate = {"role": "coder", "failed_model": "acme/b"}
    assert api_client.post_json("/api/v1/escalate", escalate).json()["chain"][0] == "acme/a"

    report(api_client, "acme/a", 3, error="timeout")

    assert "acme/a" not in api_client.post_json("/api/v1/escalate", escalate).json()["chain"]


def test_health_models_shows_cooldowns_also_of_models_never_checked(api_client, coder, settings):
    report(api_client, "acme/a", 3, error="rate_limited")
    rows = {r["model_id"]: r for r in api_client.get("/api/v1/health/models").json()}

    assert set(rows) == {"acme/a"}
    row = rows["acme/a"]
    assert row["reliability"] is None and row["checks_count"] == 0
    assert row["cooldown"]["state"] == "open" and row["cooldown"]["trips"] == 1
    assert row["cooldown"]["reason"].startswith("3 rate_limited in 60 s")
    assert datetime.fromisoformat(row["cooldown"]["until"]) > datetime.now(UTC)
    assert row["role_cooldowns"] == {}

    ModelCooldown.objects.filter(model="acme/a").update(until=datetime.now(UTC) - timedelta(seconds=1))
    assert api_client.get("/api/v1/health/models").json()[0]["cooldown"]["state"] == "half-open"


def test_the_usage_api_takes_only_known_error_classes_and_only_on_failure(api_client, coder):
    bad = usage_event(model="acme/a", success=False, error="meltdown", occurred_at=datetime.now(UTC).isoformat())
    response = api_client.post_json("/api/v1/usage", {"events": [bad]})
    assert response.status_code == 422 and "events.0.error" in response.content.decode()

    wrong = usage_event(model="acme/a", success=True, error="timeout", occurred_at=datetime.now(UTC).isoformat())
    response = api_client.post_json("/api/v1/usage", {"events": [wrong]})
    assert response.status_code == 422 and "events.0.error" in response.content.decode()
    assert "must be empty when success is true" in response.content.decode()


def test_the_admin_lists_cooldowns_and_closes_them(admin_client, api_client, coder):
    report(api_client, "acme/a", 3, error="timeout")
    url = reverse("admin:routing_modelcooldown_changelist")

    page = admin_client.get(url).content.decode()
    assert "acme/a" in page and "3 timeout in 60 s" in page and "(default policy)" in page
    until = timezone.localtime(cooldown("acme/a").until)  # until when, as the admin writes dates
    assert f'<td class="field-until nowrap">{date_format(until, "DATETIME_FORMAT")}</td>' in page

    response = admin_client.post(
        url, {"action": "close_selected", "_selected_action": [cooldown("acme/a").pk]}, follow=True
    )
    assert "1 cooldown(s) closed." in response.content.decode()
    row = cooldown("acme/a")
    assert row.state == CooldownState.CLOSED and row.reason.startswith("closed: by admin")
    assert route(api_client)["model"] == "acme/a"


def test_the_role_admin_sets_a_cooldown_policy_that_the_next_failures_follow(admin_client, api_client, coder):
    url = reverse("admin:routing_role_change", args=[coder.pk])
    page = admin_client.get(url).content.decode()
    assert "Cooldowns" in page and 'name="cooldown_failures"' in page and 'name="cooldown_half_open_share"' in page
    policy = {"cooldown_failures": "1", "cooldown_seconds": "120", "cooldown_max_seconds": "900"}
    response = admin_client.post(url, role_form(**policy, cooldown_half_open_share="0.5"))
    assert response.status_code == 302, response.context["adminform"].form.errors

    report(api_client, "acme/a", 1, error="provider_error")  # one failure: this role's threshold

    row = cooldown("acme/a", "coder")
    assert row.state == CooldownState.OPEN and row.reason.startswith("1 provider_error in 60 s")
    assert 115 <= (row.until - datetime.now(UTC)).total_seconds() <= 120
    assert cooldown("acme/a").state == CooldownState.CLOSED  # the default policy wants three
    assert route(api_client)["model"] != "acme/a"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"cooldown_seconds": "600", "cooldown_max_seconds": "60"}, "cooldown_seconds", "longer than the longest"),
        ({"cooldown_seconds": "900"}, "cooldown_seconds", "(600 s)"),  # past the default longest
        ({"cooldown_max_seconds": "10"}, "cooldown_max_seconds", "A first trip of 30 s"),  # under the default first
        ({"cooldown_half_open_share": "0"}, "cooldown_half_open_share", "never closes"),
    ],
    ids=["first-over-longest", "first-over-default-longest", "longest-under-default-first", "no-half-open"],
)
def test_the_role_admin_refuses_a_cooldown_policy_that_would_be_overruled(admin_client, coder, fields, field, message):
    response = admin_client.post(reverse("admin:routing_role_change", args=[coder.pk]), role_form(**fields))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field]), errors
    coder.refresh_from_db()
    assert all(getattr(coder, name) is None for name in fields)  # nothing stored


def hold_rows(model):
    """A second connection holding every row of `model` locked, until it is rolled back."""
    db = connection.settings_dict
    holder = psycopg.connect(
        host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432, user=db.get("USER"), dbname=db["NAME"]
    )
    holder.execute(f'SELECT 1 FROM "{model._meta.db_table}" FOR UPDATE')
    return holder


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("split", [(3, 3), (2, 2)], ids=["both-over", "each-under"])
def test_concurrent_ingests_trip_exactly_once(split):
    """Each batch counts the failures under a lock on the model's cooldown row, so the second sees
    the first's: two batches of two (threshold three) trip it, two of three trip it once. The test
    holds the row while both batches start, so that both are in flight at once, and checks that
    both wait for it."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL")
    CatalogModelFactory(id="acme/a", supports_tools=True)
    # The row exists already (an old failure, outside the window): the batches meet on its lock.
    old = datetime.now(UTC) - timedelta(minutes=5)
    ingest_events([usage_event(model="acme/a", success=False, error="timeout", occurred_at=old)])
    assert ModelCooldown.objects.get(model="acme/a", role="").state == CooldownState.CLOSED
    errors: list[BaseException] = []

    def send(count: int, role: str) -> None:
        try:
            # Another role each: the batches share no rollup row (whose lock would queue them anyway).
            ingest_events(
                [usage_event(model="acme/a", role=role, success=False, error="timeout") for _ in range(count)]
            )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    holder = hold_rows(ModelCooldown)
    try:
        threads = [threading.Thread(target=send, args=(n, f"role-{i}")) for i, n in enumerate(split)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert all(t.is_alive() for t in threads), "a batch did not wait for the cooldown row's lock"
    finally:
        holder.rollback()
        holder.close()
    for t in threads:
        t.join(timeout=30)

    assert not errors, errors
    row = ModelCooldown.objects.get(model="acme/a", role="")
    assert row.state == CooldownState.OPEN and row.trips == 1
    assert row.reason.startswith(f"{split[0] if split[0] >= 3 else sum(split)} timeout in 60 s")


def test_a_cooldown_change_alone_keeps_the_memoised_rankings(api_client, coder):
    report(api_client, "acme/a", 3, error="timeout")
    assert route(api_client)["model"] != "acme/a"
    before = current_snapshot()
    assert before.cache

    with transaction.atomic():
        assert cooldowns.close(ModelCooldown.objects.all(), "by the test") == 1

    assert route(api_client)["model"] == "acme/a"
    after = current_snapshot()
    assert after is not before and after.cache is before.cache
