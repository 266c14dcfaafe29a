"""The usage ledger (append-only), its daily rollup, and budgets.

Every report reads the ledger's rollup (`DailyCost`), never a counter something has to reset:
a budget's spend in a window is the sum of the rollup rows in that window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from catalog.models import CatalogModel
from core.money import money_field, usd_display

# The data versions the budget book watches: the ledger's rollups moved (spend), and budgets changed.
SPEND_VERSION = "spend"
BUDGETS_VERSION = "budgets"


class AlertKind(models.TextChoices):
    """The alerts the ledger and budgets raise (registered with core in CostsConfig.ready())."""

    UNKNOWN_MODEL_REPORTED = "unknown_model_reported", "Unknown model reported"
    UNPRICED_MODEL = "unpriced_model", "Unpriced model"
    BUDGET_THRESHOLD = "budget_threshold", "Budget threshold"
    BUDGET_FORECAST = "budget_forecast", "Budget forecast"


class ErrorClass(models.TextChoices):
    """Why a call failed, as the orchestrator classed it (empty on success). Retryable classes are
    the provider's trouble, not the request's: they count toward a model's cooldown."""

    RATE_LIMITED = "rate_limited", "Rate limited"
    PROVIDER_ERROR = "provider_error", "Provider error"
    TIMEOUT = "timeout", "Timeout"
    CONTEXT_LENGTH = "context_length", "Context length exceeded"
    CONTENT_FILTER = "content_filter", "Content filter"
    INVALID_REQUEST = "invalid_request", "Invalid request"
    QUALITY = "quality", "Quality (the answer was not good enough)"


RETRYABLE_ERRORS = (ErrorClass.RATE_LIMITED, ErrorClass.PROVIDER_ERROR, ErrorClass.TIMEOUT)


def error_counter(error: str) -> str:
    """The counter column of an error class in the rollups (DailyCost, StrategyStat)."""
    return f"{error}_errors"


ERROR_COUNTERS = tuple(error_counter(e) for e in ErrorClass.values)


class ErrorCounters(models.Model):
    """Failures by class (ERROR_COUNTERS, one per ErrorClass), for the rollups that count them
    (DailyCost, routing's StrategyStat); a failure reported without a class is in none. Database
    defaults too, for rows written with SQL that names the older columns only."""

    rate_limited_errors = models.PositiveBigIntegerField(default=0, db_default=0)
    provider_error_errors = models.PositiveBigIntegerField(default=0, db_default=0)
    timeout_errors = models.PositiveBigIntegerField(default=0, db_default=0)
    context_length_errors = models.PositiveBigIntegerField(default=0, db_default=0)
    content_filter_errors = models.PositiveBigIntegerField(default=0, db_default=0)
    invalid_request_errors = models.PositiveBigIntegerField(default=0, db_default=0)
    quality_errors = models.PositiveBigIntegerField(default=0, db_default=0)

    class Meta:
        abstract = True


def error_summary(row) -> str:
    """A rollup row's failures by class, for the admin: "2 rate_limited, 1 timeout" ("—" for none)."""
    parts = [f"{n} {e}" for e in ErrorClass.values if (n := getattr(row, error_counter(e)))]
    return ", ".join(parts) or "—"


class UsageEvent(models.Model):
    """One call the orchestrator made, as it reported it. Never updated, never deleted."""

    # The idempotency key: a report sent twice is stored once.
    request_id = models.CharField(max_length=200, unique=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    # The catalog model the report resolved to (by id or canonical slug), null when unknown.
    model = models.ForeignKey(
        CatalogModel, null=True, blank=True, on_delete=models.PROTECT, related_name="usage_events", db_index=False
    )
    # The string the orchestrator reported, kept whatever it resolved to.
    model_ref = models.CharField(max_length=200)
    role = models.CharField(max_length=100, blank=True)
    strategy = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=100, blank=True)
    decision_id = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0, help_text="Reasoning tokens are counted inside.")
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0, help_text="Prompt tokens read from the cache.")
    cache_write_tokens = models.PositiveIntegerField(default=0, help_text="Prompt tokens written to the cache.")
    cost_usd = money_field(null=True, blank=True, help_text="What OpenRouter reported (usage.cost).")
    computed_cost_usd = money_field(
        null=True, blank=True, help_text="From the catalog's prices in force at occurred_at."
    )
    success = models.BooleanField()
    # A database default too: rows loaded with SQL (a restore, a bulk load) are successes unless they say.
    error = models.CharField(
        max_length=16,
        blank=True,
        default="",
        db_default="",
        choices=ErrorClass.choices,
        help_text="Why the call failed; empty on success.",
    )
    quality_score = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    escalation_depth = models.PositiveSmallIntegerField(default=0)
    tools = models.JSONField(default=list, blank=True)
    generation_id = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        permissions = [("export_usageevent", "Can export usage events")]
        indexes = [
            models.Index(fields=["occurred_at"], name="usage_occurred_idx"),
            models.Index(fields=["model", "occurred_at"], name="usage_model_idx"),
            models.Index(fields=["strategy", "occurred_at"], name="usage_strategy_idx"),
            # The cooldown check counts a model's recent retryable failures: only those rows are in it.
            models.Index(
                fields=["model", "occurred_at"],
                condition=models.Q(error__in=RETRYABLE_ERRORS),
                name="usage_retryable_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model_ref}"


class DailyCost(ErrorCounters):
    """The ledger rolled up by UTC day × model × strategy × role, kept current on ingest.

    Keys are strings ('' when absent) so the unique key works for upserts on every database
    (a NULL never conflicts). `model` is the catalog id when the report resolved, else what was
    reported.
    """

    day = models.DateField()
    model = models.CharField(max_length=200)
    strategy = models.CharField(max_length=100, blank=True)
    role = models.CharField(max_length=100, blank=True)
    requests = models.PositiveBigIntegerField(default=0)
    successes = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    # The cost reports count: reported where present, computed otherwise.
    cost_usd = money_field(total=True, default=Decimal(0))
    # For the drift between OpenRouter's figure and ours, over the events that carry both.
    reported_cost_usd = money_field(total=True, default=Decimal(0))
    computed_cost_of_reported_usd = money_field(total=True, default=Decimal(0))
    reported_requests = models.PositiveBigIntegerField(default=0)
    # Events whose cost is unknown (no reported cost, no usable price): counted, not free.
    unpriced_requests = models.PositiveBigIntegerField(default=0)
    latency_ms_sum = models.PositiveBigIntegerField(default=0)
    latency_count = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "model", "strategy", "role"]
        constraints = [
            models.UniqueConstraint(fields=["day", "model", "strategy", "role"], name="dailycost_key"),
        ]
        indexes = [
            models.Index(fields=["model", "day"], name="dailycost_model_idx"),
            models.Index(fields=["strategy", "day"], name="dailycost_strategy_idx"),
            models.Index(fields=["role", "day"], name="dailycost_role_idx"),
        ]
        verbose_name = "daily cost"
        permissions = [("export_dailycost", "Can export daily costs")]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.strategy or '-'} {self.role or '-'}"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_per_success_usd(self) -> Decimal | None:
        # Nothing priced: the cost is unknown, not zero.
        if not self.successes or self.requests <= self.unpriced_requests:
            return None
        return self.cost_usd / self.successes

    @property
    def drift_usd(self) -> Decimal:
        return self.reported_cost_usd - self.computed_cost_of_reported_usd


class BudgetScope(models.TextChoices):
    GLOBAL = "global", "Global"
    ROLE = "role", "Role"
    STRATEGY = "strategy", "Strategy"
    MODEL = "model", "Model"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week (from Monday)"
    MONTH = "month", "Month"


class BudgetAction(models.TextChoices):
    BLOCK = "block", "Block (answer 402)"
    DOWNGRADE = "downgrade", "Downgrade to cheaper models"


class BudgetState(models.TextChoices):
    OK = "ok", "OK"
    SOFT_LIMIT = "soft_limit", "Soft limit passed"
    EXHAUSTED = "exhausted", "Exhausted"


def window_start(period: str, day: date) -> date:
    """The first UTC day of the window that holds `day`."""
    if period == BudgetPeriod.DAY:
        return day
    if period == BudgetPeriod.WEEK:
        return day - timedelta(days=day.weekday())
    if period == BudgetPeriod.MONTH:
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def window_end(period: str, start: date) -> date:
    """The first day after the window that starts on `start`."""
    if period == BudgetPeriod.DAY:
        return start + timedelta(days=1)
    if period == BudgetPeriod.WEEK:
        return start + timedelta(days=7)
    if period == BudgetPeriod.MONTH:
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


class Budget(models.Model):
    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=16, choices=BudgetScope.choices, default=BudgetScope.GLOBAL)
    scope_value = models.CharField(
        max_length=200, blank=True, help_text="The role, strategy or model id the budget covers; empty for global."
    )
    period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    limit_usd = money_field(total=True, validators=[MinValueValidator(Decimal("0.01"))])
    soft_limit_percent = models.PositiveSmallIntegerField(
        default=80,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Past this share of the limit, routing leans toward cheaper models and an alert is raised.",
    )
    action = models.CharField(max_length=16, choices=BudgetAction.choices, default=BudgetAction.DOWNGRADE)
    forecast_lead_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(24 * 366)],
        help_text="Alert this many hours before the budget is forecast to run out; "
        "empty: LLMHIVE_BUDGET_FORECAST_LEAD_HOURS.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "scope_value", "period"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "scope_value", "period"], name="budget_one_per_scope_period"),
            models.CheckConstraint(
                condition=models.Q(scope=BudgetScope.GLOBAL, scope_value="")
                | ~models.Q(scope=BudgetScope.GLOBAL) & ~models.Q(scope_value=""),
                name="budget_scope_value_matches_scope",
            ),
        ]

    def __str__(self) -> str:
        target = f" {self.scope_value}" if self.scope_value else ""
        return f"{self.name} ({self.get_scope_display()}{target}, {usd_display(self.limit_usd)} per {self.period})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.scope == BudgetScope.GLOBAL and self.scope_value:
            raise ValidationError({"scope_value": "A global budget covers everything: leave this empty."})
        if self.scope != BudgetScope.GLOBAL and not self.scope_value:
            raise ValidationError({"scope_value": f"Name the {self.scope} this budget covers."})

    @property
    def soft_limit_usd(self) -> Decimal:
        return self.limit_usd * self.soft_limit_percent / Decimal(100)

    def window(self, today: date | None = None) -> tuple[date, date]:
        today = today or timezone.now().date()
        start = window_start(self.period, today)
        return start, window_end(self.period, start)

    def state_for(self, spent: Decimal) -> str:
        if spent >= self.limit_usd:
            return BudgetState.EXHAUSTED
        if spent >= self.soft_limit_usd:
            return BudgetState.SOFT_LIMIT
        return BudgetState.OK


class CheckStatus(models.TextChoices):
    """Where an event stands against OpenRouter's own record of its generation (costs.reconcile)."""

    MATCHED = "matched", "Matched"
    DRIFT = "drift", "Drift"
    # OpenRouter answers 404 for a while after a generation: asked again on later runs.
    PENDING = "pending", "Pending"
    # Still 404 after LLMHIVE_RECONCILE_MAX_ATTEMPTS runs: settled, not asked again.
    NOT_FOUND = "not_found", "Not found"
    # An answer that could not be used (retried like pending, up to the same number of attempts).
    ERROR = "error", "Error"


# The statuses a run asks about again (while attempts and age allow).
UNSETTLED_CHECKS = (CheckStatus.PENDING, CheckStatus.ERROR)


class GenerationCheck(models.Model):
    """One usage event checked against `GET /generation?id=`: OpenRouter's cost and native
    token counts beside the ledger's. One row per event, updated by each run that asks again
    while it is unsettled (costs.reconcile); never edited by hand."""

    event = models.OneToOneField(UsageEvent, on_delete=models.PROTECT, related_name="generation_check")
    generation_id = models.CharField(max_length=100)
    # As the rollup keys it: the catalog id when the event resolved, else what was reported.
    model = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=CheckStatus.choices)
    first_checked_at = models.DateTimeField(default=timezone.now)
    checked_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    # What OpenRouter billed (total_cost) and what the provider charged it (upstream_inference_cost).
    openrouter_cost_usd = money_field(null=True, blank=True)
    upstream_cost_usd = money_field(null=True, blank=True)
    # The event's reported cost, else its computed one; null when it has neither.
    ledger_cost_usd = money_field(null=True, blank=True)
    # OpenRouter's cost minus the ledger's (all of OpenRouter's cost when the ledger has none).
    difference_usd = money_field(null=True, blank=True)
    provider_name = models.CharField(max_length=200, blank=True)
    native_prompt_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    native_completion_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    native_reasoning_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    native_cached_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [
            models.Index(fields=["status", "checked_at"], name="gencheck_status_idx"),
            models.Index(fields=["model", "status"], name="gencheck_model_idx"),
        ]
        verbose_name = "generation check"

    def __str__(self) -> str:
        return f"{self.generation_id} {self.status}"

    @property
    def tokens_differ(self) -> bool | None:
        """Whether OpenRouter's native prompt or completion count differs from the ledger's (None
        when it sent neither)."""
        if self.native_prompt_tokens is None and self.native_completion_tokens is None:
            return None
        return (self.native_prompt_tokens, self.native_completion_tokens) != (
            self.event.prompt_tokens,
            self.event.completion_tokens,
        )
