"""What every app needs and no app owns: data versions, API keys, locks and alerts.

Each model keeps the table it had before `core` existed (see `db_table`), so a database made by
an earlier version moves here without copying a row.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import connection, models
from django.db.models import Case, Q, Value, When
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from core.kinds import alert_kind_label, alert_kinds
from core.versions import VersionWatch, refresher


class DataVersion(models.Model):
    """A version per kind of data that in-process caches are built from.

    Whatever changes such data bumps its version (on save and delete, at the end of a sync, after
    an ingest). Each web worker compares the versions with those its caches were built from, at
    most every few hundred milliseconds (`core.versions.version_watch`), and rebuilds when they
    differ: between checks a request touches no database. Each app names its own versions.
    """

    name = models.CharField(max_length=32, primary_key=True)
    version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "llmhive_site_dataversion"
        verbose_name = "data version"

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @classmethod
    def bump(cls, *names: str) -> dict[str, int]:
        """Give each named version a new value; returns them (a cache that has taken in the
        change itself can record the version it is at, and skip the rebuild the bump asks for)."""
        values = cls.write(*names)
        # This process sees its own change at once.
        version_watch.expire(values, committed=not connection.in_atomic_block)
        return values

    @classmethod
    def write(cls, *names: str) -> dict[str, int]:
        """`bump` without telling this process's watch, in one statement however many names:
        for a caller that writes them inside its transaction and tells the watch itself once
        the transaction is settled (`version_watch.expire`; the usage ingest does)."""
        # A random value rather than a counter: a bump rolled back and made again (a failed
        # transaction, a test) can never bring back a value a cache has already seen.
        now = timezone.now()
        values = {name: secrets.randbits(62) for name in sorted(set(names))}
        if not values:
            return values
        if len(values) == 1:
            version = next(iter(values.values()))
        else:
            version = Case(*(When(name=name, then=Value(value)) for name, value in values.items()))
        if cls.objects.filter(name__in=values).update(version=version, changed_at=now) < len(values):
            for name, value in values.items():  # (a version no one has written yet: once per database)
                if not cls.objects.filter(name=name).update(version=value, changed_at=now):
                    cls.objects.get_or_create(name=name, defaults={"version": value, "changed_at": now})
        return values

    @classmethod
    def current(cls) -> dict[str, int]:
        return dict(cls.objects.values_list("name", "version"))


version_watch = VersionWatch(DataVersion.current)


# --- API keys ------------------------------------------------------------------------------------

KEY_PREFIX = "lh_"
API_KEYS_VERSION = "api_keys"


class Scope(models.TextChoices):
    ROUTE = "route", "route: routing decisions and the catalog"
    USAGE_WRITE = "usage:write", "usage:write: report usage events"
    COSTS_READ = "costs:read", "costs:read: cost reports and budgets"
    CATALOG_SYNC = "catalog:sync", "catalog:sync: start syncs, read runs"
    METRICS_READ = "metrics:read", "metrics:read: Prometheus metrics (GET /metrics)"
    ALERTS_READ = "alerts:read", "alerts:read: list alerts"
    ALERTS_WRITE = "alerts:write", "alerts:write: acknowledge alerts"


def hash_secret(raw_key: str) -> str:
    # Keys are 190+ bits of randomness, so a fast hash is enough: a slow KDF would only add
    # latency to every API call without making a random key harder to guess.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def live(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown in clear to tell keys apart.")
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        db_table = "routing_apikey"
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, *, name: str, scopes: list[str], created_by=None) -> tuple[ApiKey, str]:
        """Create a key; returns it with the secret, which is not stored and is shown once."""
        unknown = set(scopes) - set(Scope.values)
        if unknown:
            raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}; known: {', '.join(Scope.values)}")
        if not scopes:
            raise ValueError(f"give at least one scope: {', '.join(Scope.values)}")
        prefix = secrets.token_hex(4)
        raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        key = cls.objects.create(
            name=name,
            prefix=prefix,
            secret_hash=hash_secret(raw_key),
            scopes=sorted(set(scopes)),
            created_by=created_by,
        )
        return key, raw_key

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def touch(self, *, every: timedelta = timedelta(minutes=1), later: bool = False) -> None:
        """Record use, at most once a minute: a write on every request would cost more than it tells.
        `later`: written by this process's refresh thread (core.versions.refresher), not by the
        caller, whose request then makes no query for it."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= every:
            if later:
                refresher.submit(f"llmhive-key-used-{self.pk}", self._record_use, now)
            else:
                self._record_use(now)
            self.last_used_at = now

    def _record_use(self, when) -> None:
        type(self).objects.filter(pk=self.pk).update(last_used_at=when)


# --- Locks ---------------------------------------------------------------------------------------


class Lock(models.Model):
    """One row per lock name, claimed with a conditional UPDATE (works on PostgreSQL and SQLite);
    `core.locks.hold_lock` takes and releases it. `locked_until` is pushed ahead by the holder's
    heartbeat; `host` and `pid` tell whether the holder's process still exists."""

    name = models.CharField(max_length=32, primary_key=True)
    locked_until = models.DateTimeField()
    holder = models.CharField(max_length=64, blank=True)
    host = models.CharField(max_length=255, blank=True, help_text="The holder's host name.")
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="The holder's process id on that host.")

    class Meta:
        db_table = "catalog_synclock"

    def __str__(self) -> str:
        return f"{self.name} lock"


# --- Alerts --------------------------------------------------------------------------------------


class AlertQuerySet(models.QuerySet):
    def open(self):
        return self.filter(acknowledged_at__isnull=True)


class Alert(models.Model):
    """Something a person should look at, raised by any app (`core.alerts.raise_alerts`).

    Each app registers the kinds it raises (`core.alerts.register_kinds`) in its AppConfig. An alert
    about a catalog model names it by id in `model_id`: core sits below the catalog, so this is
    the id as a string rather than a foreign key (models are never deleted, only marked missing).
    """

    kind = models.CharField(max_length=32, choices=alert_kinds)
    model_id = models.CharField(max_length=200, null=True, blank=True, db_index=True, verbose_name="model")
    # What makes two alerts "the same": kind plus the model or other subject. An open alert with
    # a key is never raised twice; a repeat bumps `times` and `last_raised_at` instead.
    key = models.CharField(max_length=300)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_raised_at = models.DateTimeField(default=timezone.now)
    times = models.PositiveIntegerField(default=1)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = AlertQuerySet.as_manager()

    class Meta:
        db_table = "catalog_catalogalert"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(acknowledged_at__isnull=True), name="alert_open_once"),
        ]
        indexes = [models.Index(fields=["kind", "-created_at"], name="alert_kind_idx")]

    def __str__(self) -> str:
        return f"{self.kind_label}: {self.message[:80]}"

    @property
    def kind_label(self) -> str:
        return alert_kind_label(self.kind)


# --- Alert subscriptions -------------------------------------------------------------------------

ALERT_SUBSCRIPTIONS_VERSION = "alert_subscriptions"


class AlertFormat(models.TextChoices):
    JSON = "json", "JSON (signed)"
    SLACK = "slack", "Slack-compatible"


def validate_kinds(kinds: list[str]) -> None:
    known = {value for value, _ in alert_kinds()}
    unknown = sorted(set(kinds) - known)
    if unknown:
        raise ValidationError(f"unknown alert kind(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")


class AlertSubscription(models.Model):
    """Someone to tell when an alert is raised: a webhook (signed JSON or a Slack-compatible
    body) or an e-mail address. Only new alerts are sent (`core.alerts.raise_alerts`), not repeats."""

    target = models.CharField(max_length=500, help_text="A webhook URL (http or https) or an e-mail address.")
    kinds = models.JSONField(default=list, blank=True, help_text="The alert kinds to send; none means every kind.")
    secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="Webhooks: the key of the X-LLMHive-Signature HMAC (one is generated when left blank).",
    )
    format = models.CharField(max_length=10, choices=AlertFormat.choices, default=AlertFormat.JSON)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name = "alert subscription"

    def __str__(self) -> str:
        return f"{self.target} ({', '.join(self.kinds) or 'every kind'})"

    @property
    def is_email(self) -> bool:
        return "://" not in self.target

    def clean(self) -> None:
        if self.is_email:
            try:
                validate_email(self.target)
            except ValidationError:
                raise ValidationError(
                    {"target": "Enter a webhook URL (http:// or https://) or an e-mail address."}
                ) from None
        else:
            try:
                URLValidator(schemes=["http", "https"])(self.target)
            except ValidationError:
                raise ValidationError({"target": f"Not a valid http(s) URL: {self.target}"}) from None
            if not self.secret:
                self.secret = secrets.token_urlsafe(32)
        try:
            validate_kinds(self.kinds)
        except ValidationError as error:
            raise ValidationError({"kinds": error.messages}) from None


@receiver(post_save, sender=AlertSubscription, dispatch_uid="core.alert_subscriptions.save")
@receiver(post_delete, sender=AlertSubscription, dispatch_uid="core.alert_subscriptions.delete")
def alert_subscriptions_changed(**kwargs) -> None:
    # Every process's cache of the active subscriptions (core.alerts) rebuilds on this.
    DataVersion.bump(ALERT_SUBSCRIPTIONS_VERSION)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class AlertDelivery(models.Model):
    """One alert sent to one subscription: the delivery log, and the state its retries go on from."""

    subscription = models.ForeignKey(AlertSubscription, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True, help_text="The receiver's last HTTP status.")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "alert delivery"
        verbose_name_plural = "alert deliveries"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "alert"], name="alert_delivery_once"),
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="alert_delivery_status_idx")]

    def __str__(self) -> str:
        return f"alert #{self.alert_id} to {self.subscription_id}: {self.status}"
