"""Health of the models routing may choose: runs of checks, each model's result, and the
reliability figure routing reads."""

from __future__ import annotations

import math

from django.db import models
from django.utils import timezone

from catalog.models import CatalogModel
from core.money import money_field

# The data version routing's snapshot watches for reliability and models down right now.
HEALTH_VERSION = "health"


class AlertKind(models.TextChoices):
    """The alerts health checks raise (registered with core in HealthConfig.ready())."""

    MODEL_UNHEALTHY = "model_unhealthy", "Model unhealthy"


class RunStatus(models.TextChoices):
    RUNNING = "running", "running"
    OK = "ok", "ok: every checked model healthy"
    DEGRADED = "degraded", "degraded: some checked models failed"
    FAILED = "failed", "failed: every checked model failed"
    ERROR = "error", "error: could not check (OpenRouter unreachable)"


class Trigger(models.TextChoices):
    COMMAND = "command", "command"
    SCHEDULE = "schedule", "schedule"
    ADMIN = "admin", "admin"
    API = "api", "API"


class HealthCheckRun(models.Model):
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.COMMAND)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    models_checked = models.PositiveIntegerField(default=0)
    models_failed = models.PositiveIntegerField(default=0)
    pinged = models.PositiveIntegerField(default=0)
    ping_spend_usd = money_field(default=0)
    key_limit_usd = money_field(null=True, blank=True)
    key_usage_usd = money_field(null=True, blank=True)
    note = models.TextField(blank=True, help_text="Why pings were skipped, and the like.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"
        # Pings spend money: queueing a run from the admin is its own permission.
        permissions = [("run_healthcheckrun", "Can run health checks")]

    def __str__(self) -> str:
        return f"health run #{self.pk} {self.status}"

    @staticmethod
    def status_for(checked: int, failed: int) -> str:
        if failed == 0:
            return RunStatus.OK
        return RunStatus.FAILED if failed == checked else RunStatus.DEGRADED


class ModelHealthCheck(models.Model):
    """One model in one run: free endpoint status first, then (maybe) a ping."""

    run = models.ForeignKey(HealthCheckRun, on_delete=models.CASCADE, related_name="checks")
    # A foreign key rather than the id as a string: the catalog never deletes a model (it marks
    # it missing), so PROTECT costs nothing and keeps the history joined to the catalog for the
    # admin's filters and select_related. Ids the catalog does not know are refused up front.
    model = models.ForeignKey(CatalogModel, on_delete=models.PROTECT, related_name="health_checks")
    checked_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    endpoints_total = models.PositiveIntegerField(default=0)
    endpoints_up = models.PositiveIntegerField(default=0)
    best_uptime = models.FloatField(
        null=True, blank=True, help_text="Best endpoint uptime over the last 30 minutes, %."
    )
    pinged = models.BooleanField(default=False)
    ping_ok = models.BooleanField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    ping_cost_usd = money_field(null=True, blank=True)

    class Meta:
        ordering = ["-checked_at", "model"]
        indexes = [models.Index(fields=["model", "-checked_at"], name="health_model_checked_idx")]

    def __str__(self) -> str:
        return f"{self.model_id} {'ok' if self.ok else 'failed'} at {self.checked_at:%Y-%m-%d %H:%M}"


class ModelReliability(models.Model):
    """0..1 from the model's checks, recent ones weighing more; routing reads it."""

    model = models.OneToOneField(CatalogModel, on_delete=models.PROTECT, primary_key=True, related_name="reliability")
    reliability = models.FloatField()
    checks_count = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField()
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["reliability", "model"]
        verbose_name_plural = "model reliability"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(reliability__gte=0) & models.Q(reliability__lte=1), name="health_reliability_0_1"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_id}: {self.reliability:.2f}"

    def add_check(self, score: float, *, half_life: float) -> None:
        """Fold one check's score (0..1) into the figure.

        The figure is the mean of every check's score, each weighted by 0.5 ** (its age in
        checks / half_life). Weights of n checks sum to (1 - d**n) / (1 - d) with d the per-check
        decay, so the running mean needs no more than checks_count: a model's first checks count
        fully instead of being pulled toward a prior it never had.
        """
        decay = 0.5 ** (1 / half_life)
        previous = self.checks_count
        old_weight = (1 - decay**previous) / (1 - decay)
        new_weight = (1 - decay ** (previous + 1)) / (1 - decay)
        old = self.reliability if previous else 0.0
        value = (old * old_weight * decay + score) / new_weight
        self.reliability = min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0
        self.checks_count = previous + 1
