"""New alerts reach their subscriptions: signed webhooks (JSON or Slack-compatible) and e-mail,
sent by django-q2 tasks (run in django-q2's sync mode here), retried with backoff through its
scheduler, logged; raised by the apps' own code paths (budgets, syncs). The receiver is a real
HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import Schedule
from django_q.scheduler import scheduler

from catalog.models import AlertKind, SyncStatus
from catalog.sync import sync_catalog
from core.alerts import NewAlert, raise_alerts, subscription_cache
from core.models import AlertDelivery, AlertFormat, DeliveryStatus, version_watch
from costs.budgets import check_budget_thresholds
from costs.models import AlertKind as CostAlertKind
from costs.models import BudgetPeriod
from tests.catalog.test_admin import message_texts
from tests.catalog.test_sync import ten_models
from tests.factories import (
    AlertDeliveryFactory,
    AlertSubscriptionFactory,
    BudgetFactory,
    ingest,
)

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP server that records each POST and answers the statuses it is given, in turn
    (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                answer = b"ok" if status < 300 else b"receiver is down"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/llmhive"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver():
    started: list[Receiver] = []

    def start(*statuses: int) -> Receiver:
        started.append(Receiver(list(statuses)))
        return started[-1]

    yield start
    for r in started:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture(autouse=True)
def tasks_run_at_once(monkeypatch, settings, django_capture_on_commit_callbacks):
    """django-q2's sync mode: async_task runs the task through its worker in this process.
    Deliveries are queued on commit: `committed()` runs the callbacks of what it wraps as a
    commit would (the test's transaction never commits)."""
    global committed
    from django_q.conf import Conf

    committed = partial(django_capture_on_commit_callbacks, execute=True)

    monkeypatch.setattr(Conf, "SYNC", True)
    settings.LLMHIVE_ALERT_RETRY_SECONDS = 0.05
    settings.LLMHIVE_ALERT_RETRY_BACKOFF = 2
    settings.LLMHIVE_ALERT_MAX_ATTEMPTS = 3
    settings.LLMHIVE_ALERT_WEBHOOK_TIMEOUT_SECONDS = 2
    subscription_cache.clear()
    version_watch.poll_now()
    yield


committed = None


def raise_new(kind: str = AlertKind.NEW_MODEL, model_id: str = "acme/new", **kwargs) -> dict:
    with committed():
        return raise_alerts([NewAlert(kind=kind, message=f"{kind} for {model_id}", model_id=model_id, **kwargs)])


def run_due_retries(deadline_seconds: float = 5.0) -> None:
    """Run django-q2's scheduler, as a cluster does, until no retry is waiting."""
    deadline = time.monotonic() + deadline_seconds
    while Schedule.objects.exists():
        assert time.monotonic() < deadline, "the retries did not finish in time"
        time.sleep(0.02)
        scheduler()


def test_a_new_alert_reaches_a_webhook_with_a_verifiable_signature(receiver):
    hook = receiver()
    subscription = AlertSubscriptionFactory(target=hook.url, secret="s3cret")

    raise_new(details={"price": "0.000001"})

    [(headers, body)] = hook.requests
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-llmhive-signature"], expected)
    assert headers["content-type"] == "application/json" and headers["x-llmhive-event"] == "alert.raised"
    payload = json.loads(body)
    assert payload["event"] == "alert.raised"
    alert = payload["alert"]
    assert (alert["kind"], alert["model_id"], alert["state"], alert["times"]) == ("new_model", "acme/new", "open", 1)
    assert alert["details"] == {"price": "0.000001"} and alert["message"] == "new_model for acme/new"
    delivery = AlertDelivery.objects.get()
    assert (delivery.subscription, delivery.alert_id, delivery.status) == (subscription, alert["id"], "delivered")
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
    assert delivery.delivered_at is not None


def test_a_tampered_body_does_not_match_the_signature(receiver):
    hook = receiver()
    AlertSubscriptionFactory(target=hook.url, secret="s3cret")
    raise_new()

    [(headers, body)] = hook.requests
    tampered = body.replace(b"acme/new", b"acme/old")
    assert headers["x-llmhive-signature"] != "sha256=" + hmac.new(b"s3cret", tampered, hashlib.sha256).hexdigest()


def test_a_repeat_of_an_open_alert_is_not_sent_again(receiver):
    hook = receiver()
    AlertSubscriptionFactory(target=hook.url)

    assert raise_new() == {"created": 1, "bumped": 0}
    assert raise_new() == {"created": 0, "bumped": 1}

    assert len(hook.requests) == 1 and AlertDelivery.objects.count() == 1


def test_only_active_subscriptions_to_the_alerts_kind_receive_it(receiver):
    wants_prices, wants_all, inactive = receiver(), receiver(), receiver()
    AlertSubscriptionFactory(target=wants_prices.url, kinds=[AlertKind.PRICE_CHANGE])
    AlertSubscriptionFactory(target=wants_all.url)
    AlertSubscriptionFactory(target=inactive.url, active=False)

    raise_new(AlertKind.NEW_MODEL)
    raise_new(AlertKind.PRICE_CHANGE)

    assert [b["alert"]["kind"] for b in wants_prices.bodies()] == ["price_change"]
    assert sorted(b["alert"]["kind"] for b in wants_all.bodies()) == ["new_model", "price_change"]
    assert inactive.requests == []


def test_the_slack_format_posts_text_and_blocks(receiver):
    hook = receiver()
    AlertSubscriptionFactory(target=hook.url, format=AlertFormat.SLACK)

    with committed():
        raise_alerts([NewAlert(kind=AlertKind.PRICE_CHANGE, message="Price of <x> & y doubled", model_id="acme/x")])

    [body] = hook.bodies()
    assert set(body) == {"text", "blocks"}
    assert body["text"] == "[LLMHive] Price change: Price of <x> & y doubled"
    section, context = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"] == "*Price change*\nPrice of &lt;x&gt; &amp; y doubled"
    assert context["type"] == "context" and "model `acme/x`" in context["elements"][0]["text"]


def test_a_receiver_failing_once_gets_the_alert_on_the_retry(receiver):
    hook = receiver(500)
    AlertSubscriptionFactory(target=hook.url)

    raise_new()

    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500: receiver is down"
    [retry] = Schedule.objects.all()
    assert retry.func == "core.tasks.deliver_alert" and retry.next_run == delivery.next_attempt_at

    run_due_retries()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered",
        2,
        200,
        "",
    )
    first, second = hook.requests
    assert first[1] == second[1]  # the same body, signed the same way
    assert first[0]["x-llmhive-signature"] == second[0]["x-llmhive-signature"]


def test_a_receiver_that_never_accepts_ends_as_failed_with_the_reason(receiver, settings):
    hook = receiver(503, 503, 503, 503)
    AlertSubscriptionFactory(target=hook.url)

    raise_new()
    run_due_retries()

    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 503)
    assert delivery.last_error == "gave up after 3 attempts; last: HTTP 503: receiver is down"
    assert len(hook.requests) == 3 and delivery.next_attempt_at is None


def test_the_retries_wait_longer_each_time(receiver, settings):
    settings.LLMHIVE_ALERT_RETRY_SECONDS = 10
    settings.LLMHIVE_ALERT_RETRY_BACKOFF = 4
    hook = receiver(500)
    AlertSubscriptionFactory(target=hook.url)

    raise_new()

    delivery = AlertDelivery.objects.get()
    wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert wait == pytest.approx(10)
    scheduler()  # not due yet
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and len(hook.requests) == 1
    from core.tasks import retry_delay

    assert [retry_delay(n).total_seconds() for n in (1, 2, 3)] == [10, 40, 160]


def test_an_unreachable_receiver_is_logged_as_a_connection_error(receiver, settings):
    settings.LLMHIVE_ALERT_MAX_ATTEMPTS = 1
    gone = receiver()
    url = gone.url
    gone.server.shutdown()
    gone.server.server_close()
    AlertSubscriptionFactory(target=url)

    raise_new()

    delivery = AlertDelivery.objects.get()
    assert delivery.status == "failed" and delivery.last_status_code is None
    assert delivery.last_error.startswith("gave up after 1 attempts; last: ConnectError")


def test_a_delivery_already_done_is_not_sent_again(receiver):
    from core.tasks import deliver_alert

    hook = receiver()
    delivery = AlertDeliveryFactory(subscription__target=hook.url, status=DeliveryStatus.DELIVERED)

    assert deliver_alert(delivery.pk) == f"alert delivery #{delivery.pk}: already delivered"
    assert hook.requests == []


def test_an_email_subscription_gets_a_mail(mailoutbox, settings):
    settings.LLMHIVE_ALERT_EMAIL_FROM = "llmhive@example.org"
    AlertSubscriptionFactory(target="ops@example.org", secret="", kinds=[AlertKind.MODEL_MISSING])

    raise_new(AlertKind.MODEL_MISSING, "acme/gone")

    [mail] = mailoutbox
    assert mail.to == ["ops@example.org"] and mail.from_email == "llmhive@example.org"
    assert mail.subject == "[LLMHive] Model missing: model_missing for acme/gone"
    assert "Model: acme/gone" in mail.body
    assert AlertDelivery.objects.get().status == "delivered"


def test_raising_alerts_with_no_subscription_costs_no_extra_query(settings):
    settings.LLMHIVE_SNAPSHOT_CHECK_SECONDS = 60  # no periodic version check falls inside
    subscription_cache.active()  # warm, as a process is after its first alert
    with CaptureQueriesContext(connection) as queries:
        raise_new()
    assert len(queries) == 2  # the open alerts with these keys, the insert


def test_a_budget_threshold_and_a_failed_sync_reach_a_webhook(receiver, fake_openrouter):
    hook = receiver()
    AlertSubscriptionFactory(target=hook.url, kinds=[CostAlertKind.BUDGET_THRESHOLD, AlertKind.SYNC_FAILED])
    fake_openrouter.set_models(ten_models())
    assert sync_catalog().status == SyncStatus.SUCCEEDED  # (new models: not subscribed to)

    BudgetFactory(name="daily", period=BudgetPeriod.DAY, limit_usd=Decimal("1"))
    with committed():
        ingest(occurred_at=datetime.now(UTC), model="acme/model-0", cost_usd="2")
        check_budget_thresholds()
    fake_openrouter.set_models(ten_models()[:1])
    with committed():
        assert sync_catalog().status == SyncStatus.FAILED

    kinds = [b["alert"]["kind"] for b in hook.bodies()]
    assert kinds == ["budget_threshold", "budget_threshold", "sync_failed"]  # soft limit, exhausted; the sync
    assert "would mark 9 of 10 active models missing" in hook.bodies()[-1]["alert"]["message"]


# --- Admin ---------------------------------------------------------------------------------------


def test_the_admin_adds_a_subscription_and_generates_its_secret(admin_client):
    response = admin_client.post(
        reverse("admin:core_alertsubscription_add"),
        {"target": "https://hooks.example.org/llmhive", "kinds": ["new_model", "sync_failed"], "format": "json"},
    )
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:2000]
    from core.models import AlertSubscription

    subscription = AlertSubscription.objects.get()
    assert subscription.kinds == ["new_model", "sync_failed"] and len(subscription.secret) >= 32


def test_the_admin_refuses_a_target_that_is_neither_url_nor_email(admin_client):
    response = admin_client.post(
        reverse("admin:core_alertsubscription_add"), {"target": "ftp://example.org/x", "format": "json"}
    )
    assert response.status_code == HTTPStatus.OK
    assert "Not a valid http(s) URL: ftp://example.org/x" in response.content.decode()


def test_the_admin_sends_a_test_alert_and_says_how_it_went(admin_client, receiver):
    hook, down = receiver(), receiver(500)
    working = AlertSubscriptionFactory(target=hook.url, secret="k")
    failing = AlertSubscriptionFactory(target=down.url)

    response = admin_client.post(
        reverse("admin:core_alertsubscription_changelist"),
        {"action": "send_test_alert", "_selected_action": [working.pk, failing.pk]},
        follow=True,
    )

    assert message_texts(response) == [
        f"Test alert sent to {hook.url}.",
        f"Test alert to {down.url} failed: HTTP 500: receiver is down",
    ]
    [(headers, body)] = hook.requests
    assert json.loads(body)["event"] == "alert.test"
    assert headers["x-llmhive-signature"] == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert AlertDelivery.objects.count() == 0


def test_the_delivery_log_is_read_only_and_filters_by_status_and_subscription(admin_client):
    failed = AlertDeliveryFactory(status=DeliveryStatus.FAILED, attempts=3, last_error="gave up after 3 attempts")
    delivered = AlertDeliveryFactory(status=DeliveryStatus.DELIVERED, attempts=1)
    url = reverse("admin:core_alertdelivery_changelist")

    by_status = admin_client.get(url, {"status__exact": "failed"})
    assert [d.pk for d in by_status.context["cl"].result_list] == [failed.pk]
    assert "gave up after 3 attempts" in by_status.content.decode()
    by_subscription = admin_client.get(url, {"subscription__id__exact": delivered.subscription_id})
    assert [d.pk for d in by_subscription.context["cl"].result_list] == [delivered.pk]
    assert admin_client.get(reverse("admin:core_alertdelivery_add")).status_code == HTTPStatus.FORBIDDEN


def test_the_log_sends_failed_deliveries_again_from_their_first_attempt(admin_client, receiver):
    hook = receiver()
    failed = AlertDeliveryFactory(
        subscription__target=hook.url, status=DeliveryStatus.FAILED, attempts=3, last_error="gave up after 3 attempts"
    )
    done = AlertDeliveryFactory(subscription=failed.subscription, status=DeliveryStatus.DELIVERED, attempts=1)

    with committed():
        response = admin_client.post(
            reverse("admin:core_alertdelivery_changelist"),
            {"action": "send_again", "_selected_action": [failed.pk, done.pk]},
            follow=True,
        )

    assert message_texts(response) == ["Queued 1 delivery again."]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error, failed.last_status_code) == ("delivered", 1, "", 200)
    assert [b["alert"]["id"] for b in hook.bodies()] == [failed.alert_id]
