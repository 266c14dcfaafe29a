"""Sending alerts to their subscriptions: a django-q2 task per delivery, retried with backoff.

A failed attempt schedules the next one as a django-q2 `Schedule` (type ONCE, `next_run` after
LLMHIVE_ALERT_RETRY_SECONDS × LLMHIVE_ALERT_RETRY_BACKOFF^(attempts − 1)): the schedule is a row in
the database, so a retry survives a worker restart and runs when the cluster's scheduler next
looks (every 30 s or so). After LLMHIVE_ALERT_MAX_ATTEMPTS attempts the delivery is `failed`, and
the log keeps the receiver's last status and error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from core.alerts import alert_payload
from core.models import Alert, AlertDelivery, AlertFormat, AlertSubscription, DeliveryStatus

logger = logging.getLogger("llmhive.alerts")

TASK = "core.tasks.deliver_alert"
SIGNATURE_HEADER = "X-LLMHive-Signature"


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(subscription: AlertSubscription, payload: dict, event: str) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, keys sorted."""
    if subscription.format == AlertFormat.SLACK:
        where = f"model `{_slack_escape(payload['model_id'])}` · " if payload.get("model_id") else ""
        body = {
            "text": f"[LLMHive] {payload['kind_label']}: {payload['message']}",
            "blocks": [
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"*{_slack_escape(payload['kind_label'])}*\n{_slack_escape(payload['message'])}",
                    },
                },
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": f"{where}alert #{payload['id']} · {payload['created_at']}"}
                    ],
                },
            ],
        }
    else:
        body = {"event": event, "alert": payload}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False).encode()


def send(subscription: AlertSubscription, payload: dict, *, event: str = "alert.raised") -> Outcome:
    """One attempt: POST to the webhook or send the e-mail. Never raises for the receiver's failures."""
    if subscription.is_email:
        return _send_email(subscription, payload)
    body = webhook_body(subscription, payload, event)
    headers = {"Content-Type": "application/json", "User-Agent": "LLMHive-alerts", "X-LLMHive-Event": event}
    if subscription.secret:
        headers[SIGNATURE_HEADER] = signature(subscription.secret, body)
    try:
        response = httpx.post(
            subscription.target,
            content=body,
            headers=headers,
            timeout=settings.LLMHIVE_ALERT_WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc or 'no answer'}")
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code)
    answer = response.text.strip()[:200]
    return Outcome(False, response.status_code, f"HTTP {response.status_code}" + (f": {answer}" if answer else ""))


def _send_email(subscription: AlertSubscription, payload: dict) -> Outcome:
    lines = [payload["message"], "", f"Kind: {payload['kind_label']} ({payload['kind']})"]
    if payload.get("model_id"):
        lines.append(f"Model: {payload['model_id']}")
    lines += [f"Alert: #{payload['id']}, raised {payload['created_at']}", ""]
    lines.append(json.dumps(payload["details"], indent=2, sort_keys=True, default=str))
    subject = f"[LLMHive] {payload['kind_label']}: {payload['message']}"
    try:
        send_mail(
            subject[:150].replace("\n", " "),
            "\n".join(lines),
            settings.LLMHIVE_ALERT_EMAIL_FROM or None,
            [subscription.target],
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}")
    return Outcome(True)


def queue_deliveries(delivery_ids: list[int]) -> None:
    """Queue a task per delivery (after the alerts' transaction commits). A delivery that could not
    be queued stays pending in the log."""
    from django_q.tasks import async_task

    for pk in delivery_ids:
        try:
            async_task(TASK, pk, task_name=f"alert delivery #{pk}")
        except Exception:  # the alert is stored either way; the log shows the delivery pending
            logger.exception("could not queue alert delivery #%s", pk)


def retry_delay(attempts: int) -> timedelta:
    return timedelta(
        seconds=settings.LLMHIVE_ALERT_RETRY_SECONDS * settings.LLMHIVE_ALERT_RETRY_BACKOFF ** (attempts - 1)
    )


def deliver_alert(delivery_id: int) -> str:
    """One attempt at a pending delivery; schedules the next on failure. A repeat of a task
    (django-q2 hands a task out again after a worker died) finds the delivery done and stops."""
    from django_q.tasks import schedule

    with transaction.atomic():
        # The row stays locked while the receiver is called: a second copy of the task waits
        # (then finds it done) rather than sending twice.
        delivery = (
            AlertDelivery.objects.select_for_update(of=("self",))
            .select_related("subscription", "alert")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return f"alert delivery #{delivery_id}: gone"
        if delivery.status != DeliveryStatus.PENDING:
            return f"alert delivery #{delivery_id}: already {delivery.status}"
        now = timezone.now()
        if not delivery.subscription.active:
            delivery.status, delivery.last_error, delivery.next_attempt_at = (
                DeliveryStatus.FAILED,
                "not sent: the subscription was deactivated",
                None,
            )
            delivery.save()
            return f"alert delivery #{delivery_id}: {delivery.last_error}"

        outcome = send(delivery.subscription, alert_payload(delivery.alert))
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code = outcome.status_code
        delivery.next_attempt_at = None
        if outcome.ok:
            delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.DELIVERED, now, ""
        elif delivery.attempts >= settings.LLMHIVE_ALERT_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = f"gave up after {delivery.attempts} attempts; last: {outcome.error}"
        else:
            delivery.last_error = outcome.error
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)
            schedule(
                TASK,
                delivery.pk,
                name=f"alert delivery #{delivery.pk} attempt {delivery.attempts + 1}",
                next_run=delivery.next_attempt_at,
            )
        delivery.save()
    return f"alert delivery #{delivery_id}: {delivery.status} after {delivery.attempts} attempt(s)"


def send_test(subscription: AlertSubscription) -> Outcome:
    """Send a made-up alert now (the admin's "send a test alert"): nothing is stored or retried."""
    now = timezone.now()
    alert = Alert(
        pk=0,
        kind="test",
        key="test:",
        message="A test alert from LLMHive: this subscription works.",
        details={"test": True},
        created_at=now,
        last_raised_at=now,
    )
    return send(subscription, alert_payload(alert), event="alert.test")
