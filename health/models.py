"""Health of the models routing may choose: runs of checks, each model's result, and the
reliability figure routing reads."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from catalog.models import CatalogModel, money


class RunStatus(models.TextChoices):
    RUNNING = "running", "running"
    OK = "ok", "all checked models healthy"
    FAILURES = "failures", "some checked models failed"
    ERROR = "error", "could not check (OpenRouter unreachable)"


class HealthCheckRun(models.Model):
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, default="command")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    models_checked = models.PositiveIntegerField(default=0)
    models_failed = models.PositiveIntegerField(default=0)
    pinged = models.PositiveIntegerField(default=0)
    ping_spend_usd = money(default=0)
    key_limit_usd = money(null=True, blank=True)
    key_usage_usd = money(null=True, blank=True)
    note = models.TextField(blank=True, help_text="Why pings were skipped, and the like.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"

    def __str__(self) -> str:
        return f"health run #{self.pk} {self.status}"


class ModelHealthCheck(models.Model):
    """One model in one run: free endpoint status first, then (maybe) a ping."""

    run = models.ForeignKey(HealthCheckRun, on_delete=models.CASCADE, related_name="checks")
    # PROTECT: a model is never deleted (missing instead), and its history must stay.
    model = models.ForeignKey(CatalogModel, on_delete=models.PROTECT, related_name="health_checks")
    checked_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    endpoints_total = models.PositiveIntegerField(default=0)
    endpoints_up = models.PositiveIntegerField(default=0)
    best_uptime = models.FloatField(null=True, blank=True, help_text="Best endpoint uptime over the last 30 minutes, %.")
    pinged = models.BooleanField(default=False)
    ping_ok = models.BooleanField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    ping_cost_usd = money(null=True, blank=True)

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

    class Meta:
        ordering = ["reliability", "model"]
        verbose_name_plural = "model reliability"

    def __str__(self) -> str:
        return f"{self.model_id}: {self.reliability:.2f}"
