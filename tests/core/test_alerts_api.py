"""Alerts over the API (GET /api/v1/alerts with alerts:read, acknowledging with alerts:write) and
the alert_subscription command."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from catalog.models import AlertKind
from core.models import Alert, AlertSubscription
from costs.models import AlertKind as CostAlertKind
from tests.conftest import ApiClient
from tests.factories import AlertFactory, AlertSubscriptionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/alerts"


@pytest.fixture
def reader(make_api_key) -> ApiClient:
    return ApiClient(make_api_key("alerts:read"))


@pytest.fixture
def writer(make_api_key) -> ApiClient:
    return ApiClient(make_api_key("alerts:write"))


def alert(key: str, *, hours_ago: float = 0, acknowledged: bool = False, **kwargs) -> Alert:
    at = timezone.now() - timedelta(hours=hours_ago)
    return AlertFactory(
        key=key, created_at=at, last_raised_at=at, acknowledged_at=at if acknowledged else None, **kwargs
    )


def ids(response) -> list[int]:
    assert response.status_code == HTTPStatus.OK, response.content
    return [item["id"] for item in response.json()["items"]]


def test_it_lists_open_alerts_newest_raised_first_with_every_field(reader):
    old = alert("old", hours_ago=5, kind=AlertKind.PRICE_CHANGE, model_id="acme/a", details={"was": "1"})
    new = alert("new", hours_ago=1)
    alert("done", acknowledged=True)

    response = reader.get(URL)

    assert ids(response) == [new.pk, old.pk]
    body = response.json()
    assert body["count"] == 2
    item = body["items"][1]
    assert set(item) == {
        "id",
        "kind",
        "kind_label",
        "model_id",
        "key",
        "message",
        "details",
        "created_at",
        "last_raised_at",
        "times",
        "state",
        "acknowledged_at",
    }
    assert (item["kind"], item["kind_label"], item["model_id"], item["key"]) == (
        "price_change",
        "Price change",
        "acme/a",
        "old",
    )
    assert (item["details"], item["times"], item["state"], item["acknowledged_at"]) == ({"was": "1"}, 1, "open", None)


def test_it_filters_by_state(reader):
    open_alert = alert("open")
    done = alert("done", hours_ago=1, acknowledged=True)

    assert ids(reader.get(URL, {"state": "acknowledged"})) == [done.pk]
    assert ids(reader.get(URL, {"state": "all"})) == [open_alert.pk, done.pk]
    assert reader.get(URL, {"state": "acknowledged"}).json()["items"][0]["state"] == "acknowledged"


def test_it_filters_by_kinds_repeated_or_comma_separated(reader):
    price = alert("p", kind=AlertKind.PRICE_CHANGE)
    budget = alert("b", hours_ago=1, kind=CostAlertKind.BUDGET_THRESHOLD)
    alert("n", hours_ago=2, kind=AlertKind.NEW_MODEL)

    assert ids(reader.get(URL, {"kind": "price_change"})) == [price.pk]
    assert ids(reader.get(URL, {"kind": ["price_change", "budget_threshold"]})) == [price.pk, budget.pk]
    assert ids(reader.get(URL, {"kind": "price_change,budget_threshold"})) == [price.pk, budget.pk]


def test_since_is_on_last_raised_at(reader):
    recent = alert("recent", hours_ago=1)
    raised_again = alert("again", hours_ago=48)
    raised_again.last_raised_at = timezone.now()
    raised_again.save()
    alert("stale", hours_ago=30)
    since = (timezone.now() - timedelta(hours=2)).isoformat()

    assert ids(reader.get(URL, {"since": since})) == [raised_again.pk, recent.pk]


def test_it_pages_with_limit_and_offset(reader):
    made = [alert(f"a{i}", hours_ago=i) for i in range(5)]

    page = reader.get(URL, {"limit": 2, "offset": 2})

    assert ids(page) == [made[2].pk, made[3].pk] and page.json()["count"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-01T00:00:00"}, "since"),  # no timezone
        ({"state": "closed"}, "state"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_filters_are_a_422_naming_the_field(reader, params, field):
    response = reader.get(URL, params)

    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    body = response.json()
    assert body["code"] == "invalid" and body["errors"][0]["field"] == field and body["errors"][0]["in"] == "query"


def test_an_unknown_kind_is_named_with_the_known_ones(reader):
    detail = reader.get(URL, {"kind": "new_model,bogus"}).json()["detail"]
    assert "unknown kind(s) bogus" in detail and "new_model" in detail


def test_reading_needs_the_alerts_read_scope(make_api_key, anon_client):
    response = ApiClient(make_api_key("route", "costs:read")).get(URL)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == {"detail": "This API key lacks the 'alerts:read' scope.", "code": "missing_scope"}
    assert anon_client.get(URL).status_code == HTTPStatus.UNAUTHORIZED


def test_acknowledging_needs_the_alerts_write_scope(reader):
    target = alert("a")
    response = reader.post(f"{URL}/{target.pk}/acknowledge")
    assert response.status_code == HTTPStatus.FORBIDDEN and response.json()["code"] == "missing_scope"
    target.refresh_from_db()
    assert target.acknowledged_at is None


def test_it_acknowledges_an_alert_once(writer):
    target = alert("a")

    first = writer.post(f"{URL}/{target.pk}/acknowledge")
    assert first.status_code == HTTPStatus.OK
    assert first.json()["state"] == "acknowledged" and first.json()["id"] == target.pk
    acknowledged_at = first.json()["acknowledged_at"]
    assert acknowledged_at is not None

    again = writer.post(f"{URL}/{target.pk}/acknowledge")
    assert again.status_code == HTTPStatus.OK and again.json()["acknowledged_at"] == acknowledged_at


def test_acknowledging_an_unknown_alert_is_a_json_404(writer):
    response = writer.post(f"{URL}/999999/acknowledge")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {"detail": "No alert with id 999999.", "code": "not_found"}
    assert writer.post(f"{URL}/99999999999999999999/acknowledge").status_code == HTTPStatus.UNPROCESSABLE_ENTITY


def test_it_acknowledges_several_alerts_at_once(writer):
    first, second = alert("first"), alert("second")
    done = alert("done", acknowledged=True)

    response = writer.post_json(f"{URL}/acknowledge", {"ids": [first.pk, second.pk, done.pk, 424242]})

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "acknowledged": [first.pk, second.pk],
        "already_acknowledged": [done.pk],
        "unknown": [424242],
    }
    assert not Alert.objects.open().exists()
    empty = writer.post_json(f"{URL}/acknowledge", {"ids": []})
    assert empty.status_code == HTTPStatus.UNPROCESSABLE_ENTITY and empty.json()["errors"][0]["field"] == "ids"


# --- manage.py alert_subscription -----------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("alert_subscription", *args, stdout=out)
    return out.getvalue().strip()


def test_the_command_adds_lists_and_removes_subscriptions():
    added = run("add", "https://hooks.example.org/a", "--kinds", "sync_failed,budget_threshold", "--secret", "s")
    hook = AlertSubscription.objects.get()
    assert added == f"Added alert subscription #{hook.pk}: https://hooks.example.org/a (budget_threshold, sync_failed)"
    assert (hook.kinds, hook.secret, hook.format, hook.active) == (
        ["budget_threshold", "sync_failed"],
        "s",
        "json",
        True,
    )

    slack = run("add", "https://hooks.slack.com/services/x", "--format", "slack")
    generated = AlertSubscription.objects.get(format="slack").secret
    assert len(generated) >= 32 and slack.endswith(f"its generated secret is {generated}")
    run("add", "--email", "ops@example.org")
    mail = AlertSubscription.objects.get(target="ops@example.org")
    assert mail.is_email and mail.secret == "" and mail.kinds == []

    listed = run("list").splitlines()
    assert listed[0] == f"#{hook.pk}\tactive\tjson\thttps://hooks.example.org/a\tbudget_threshold,sync_failed"
    assert listed[2] == f"#{mail.pk}\tactive\temail\tops@example.org\tevery kind"

    assert run("remove", str(hook.pk)) == f"Removed alert subscription #{hook.pk}."
    assert AlertSubscription.objects.count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "not a url"], "target: Enter a webhook URL (http:// or https://) or an e-mail address."),
        (["add", "ftp://example.org/x"], "target: Not a valid http(s) URL: ftp://example.org/x"),
        (["add", "https://example.org/x", "--kinds", "nope"], "kinds: unknown alert kind(s): nope; known: "),
        (["add"], "give either a webhook URL or --email ADDRESS"),
        (["add", "https://example.org/x", "--email", "a@b.c"], "give either a webhook URL or --email ADDRESS"),
        (["remove", "12345"], "no alert subscription #12345"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(args, message):
    with pytest.raises(CommandError) as error:
        run(*args)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert AlertSubscription.objects.count() == 0


def test_the_command_lists_nothing_readably():
    assert run("list") == "No alert subscriptions."


def test_removing_a_subscription_stops_its_deliveries_everywhere():
    from core.alerts import subscription_cache

    hook = AlertSubscriptionFactory()
    assert [pk for pk, _ in subscription_cache.active()] == [hook.pk]
    run("remove", str(hook.pk))
    assert subscription_cache.active() == []
