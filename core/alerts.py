"""Raising alerts without duplicates: an open alert with the same key is bumped, not repeated;
a new one is sent to the subscriptions that want its kind (`core.tasks.deliver_alert`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.models import ALERT_SUBSCRIPTIONS_VERSION, Alert, AlertDelivery, AlertSubscription, version_watch


@dataclass
class NewAlert:
    kind: str
    message: str
    model_id: str | None = None
    details: dict = field(default_factory=dict)
    # What makes two alerts the same; defaults to kind + model.
    subject: str | None = None
    # Raise only if no alert with this key was ever raised (open or acknowledged): for states such
    # as "expires on 2026-02-01" that should be announced once, not after every sync.
    once: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject or self.model_id or ''}"


# Keys of `once` alerts this process knows were raised (committed): never asked about again. A
# budget past its limit is checked after every usage batch of its window; without this, each
# batch asked the database whether its alert existed.
_raised_once: set[str] = set()


def forget_raised_once() -> None:
    """For tests, whose alerts are rolled back."""
    _raised_once.clear()


def raise_alerts(alerts: Iterable[NewAlert]) -> dict[str, int]:
    """Create new alerts and bump open ones with the same key, in a fixed number of queries
    (none when each is a `once` alert this process knows was raised).

    Returns {"created": n, "bumped": m}.
    """
    by_key: dict[str, NewAlert] = {}
    for alert in alerts:
        if not (alert.once and alert.key in _raised_once):
            by_key[alert.key] = alert  # the last word on a key wins
    if not by_key:
        return {"created": 0, "bumped": 0}

    keys = list(by_key)
    now = timezone.now()
    open_alerts = {a.key: a for a in Alert.objects.open().filter(key__in=keys)}
    once_keys = [k for k, a in by_key.items() if a.once]
    ever_raised = set(Alert.objects.filter(key__in=once_keys).values_list("key", flat=True)) if once_keys else set()

    to_create = [
        Alert(
            kind=a.kind,
            model_id=a.model_id,
            key=key,
            message=a.message,
            details=a.details,
            created_at=now,
            last_raised_at=now,
        )
        for key, a in by_key.items()
        if key not in open_alerts and key not in ever_raised
    ]
    # ignore_conflicts: if another process raised the same alert a moment ago, theirs stands.
    Alert.objects.bulk_create(to_create, ignore_conflicts=True)
    if to_create:
        _queue_deliveries(to_create, now)
    if once_keys:
        transaction.on_commit(partial(_raised_once.update, once_keys))

    to_bump, reworded = [], []
    for key, existing in open_alerts.items():
        new = by_key[key]
        if new.once:
            continue
        to_bump.append(existing.pk)
        if (existing.message, existing.details) != (new.message, new.details):
            existing.message, existing.details = new.message, new.details
            reworded.append(existing)
    if reworded:
        Alert.objects.bulk_update(reworded, ["message", "details"])
    if to_bump:
        # A repeat that says the same thing (a model reported in every batch) costs one statement.
        Alert.objects.filter(pk__in=to_bump).update(times=F("times") + 1, last_raised_at=now)
    return {"created": len(to_create), "bumped": len(to_bump)}


def active_subscriptions() -> list[tuple[int, frozenset[str]]]:
    """The active subscriptions as (id, kinds wanted; empty: every kind), read now."""
    return [
        (pk, frozenset(kinds)) for pk, kinds in AlertSubscription.objects.filter(active=True).values_list("pk", "kinds")
    ]


class SubscriptionCache:
    """The active subscriptions as (id, kinds) pairs, kept per process and rebuilt when the
    `alert_subscriptions` data version moves: raising alerts with no subscription costs no query."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._subscriptions: list[tuple[int, frozenset[str]]] = []

    def active(self) -> list[tuple[int, frozenset[str]]]:
        version = version_watch.versions().get(ALERT_SUBSCRIPTIONS_VERSION, 0)
        if version != self._version:
            with self._lock:
                if version != self._version:
                    self._subscriptions = active_subscriptions()
                    self._version = version
        return self._subscriptions

    def clear(self) -> None:
        self._version = None


subscription_cache = SubscriptionCache()


def _queue_deliveries(created: list[Alert], now: datetime) -> None:
    """Log a pending delivery per new alert and subscription that wants its kind, and queue
    them once the transaction commits (a rolled-back alert is never sent)."""
    cached = subscription_cache.active()
    wanted = {a.key for a in created if any(not kinds or a.kind in kinds for _, kinds in cached)}
    if not wanted:
        return
    # The cache may be a check interval behind another process's change: the subscriptions are
    # read again (one query, only when some may want these alerts), so none deleted is referenced.
    subscriptions = active_subscriptions()
    # bulk_create with ignore_conflicts returns no ids; the rows this call made are those with
    # its keys and its timestamp (a concurrent raiser's row for the same key has its own).
    rows = Alert.objects.open().filter(key__in=wanted, created_at=now).values_list("pk", "kind")
    deliveries = [
        AlertDelivery(subscription_id=sub_id, alert_id=alert_id, created_at=now)
        for alert_id, kind in rows
        for sub_id, kinds in subscriptions
        if not kinds or kind in kinds
    ]
    AlertDelivery.objects.bulk_create(deliveries)
    from core.tasks import queue_deliveries

    transaction.on_commit(partial(queue_deliveries, [d.pk for d in deliveries]))


def alert_payload(alert: Alert) -> dict:
    """An alert as the API lists it and a webhook receives it."""
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "kind_label": alert.kind_label,
        "model_id": alert.model_id,
        "key": alert.key,
        "message": alert.message,
        "details": alert.details,
        "created_at": alert.created_at,
        "last_raised_at": alert.last_raised_at,
        "times": alert.times,
        "state": "open" if alert.acknowledged_at is None else "acknowledged",
        "acknowledged_at": alert.acknowledged_at,
    }
