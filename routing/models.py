"""Routing data: roles and their preferences, escalation overrides, strategies and strategy
memory."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from catalog.models import CAPABILITIES, CatalogModel, Family, classify_family
from catalog.selectors import known_output_modalities
from core.money import money_field
from costs.models import ErrorCounters

# The data versions routing's snapshot watches besides the catalog's: the admin-curated routing
# data (roles, preferences, overrides, strategies) and the strategy memory learned from outcomes.
ROUTING_VERSION = "routing"
STATS_VERSION = "stats"
# Bumped when the memory is rebuilt from scratch (rows deleted): every worker reads it all again.
STATS_RESET_VERSION = "stats_reset"
# Bumped on every change of a model's cooldown (routing.cooldowns): each worker sees a trip
# within one version check, and rebuilds only its cooldown read model.
COOLDOWN_VERSION = "cooldowns"


# --- Admin-curated routing data ------------------------------------------------------------------


class Accuracy(models.TextChoices):
    HIGH = "high", "High: reasoning-capable first, quality weighs most"
    BALANCED = "balanced", "Balanced"
    ECONOMY = "economy", "Economy: cost weighs most"


def default_output_modalities() -> list[str]:
    return ["text"]


# OpenRouter's `:free` variants (rate-limited, may log prompts) are told by their id's suffix.
FREE_SUFFIX = ":free"


def is_free_variant(model_id: str, prompt=None, completion=None) -> bool:
    """A `:free` variant, or a model served at no price at all (both token prices exactly zero:
    OpenRouter's router of free models, a stealth model in its free alpha): the same terms — rate
    limits, prompts the provider may log — so the same rule, `Role.allow_free`. (A model with
    no price, None, is unpriced, not free.)"""
    return model_id.endswith(FREE_SUFFIX) or (prompt == 0 and completion == 0 and prompt is not None)


role_slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9_\-]*$", "Lowercase letters, digits, '_' and '-'.")


class ProviderSort(models.TextChoices):
    """OpenRouter's `provider.sort`: how it orders a model's endpoints when no order is given."""

    PRICE = "price", "Price: cheapest endpoint first"
    THROUGHPUT = "throughput", "Throughput: fastest generation first"
    LATENCY = "latency", "Latency: quickest first token first"


class DataCollection(models.TextChoices):
    ALLOW = "allow", "Allow: providers may store and train on prompts"
    DENY = "deny", "Deny: only providers that do not collect user data"


# OpenRouter's `Quantization` enum (the 2026-08 schema; the 2025-12 one lacks the mx/nv formats).
QUANTIZATIONS = ("int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32", "unknown")
# A provider slug as OpenRouter spells it ("deepinfra", "amazon-bedrock"), optionally with an
# endpoint variant ("deepinfra/turbo").
PROVIDER_SLUG = re.compile(r"^[a-z0-9][a-z0-9.\-]*(/[a-z0-9][a-z0-9.\-]*)?$")
PROVIDER_LISTS = ("provider_order", "provider_only", "provider_ignore")


class Role(models.Model):
    """What a call is for (coder, planner, reviewer…): what it needs and how to choose."""

    slug = models.CharField(max_length=64, unique=True, validators=[role_slug_validator])
    name = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    required_capabilities = models.JSONField(
        default=list, blank=True, help_text="Capabilities every candidate must have."
    )
    min_context_length = models.PositiveIntegerField(null=True, blank=True)
    default_category = models.ForeignKey(
        "catalog.Category",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The ranking used for quality when a request names no category.",
    )
    default_accuracy = models.CharField(max_length=16, choices=Accuracy.choices, default=Accuracy.BALANCED)
    exploration_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=(
            "The share of decisions that explore (Thompson sampling over what the outcomes taught): "
            "0 keeps every decision the best-scored one; 0.05–0.1 lets alternatives gather outcomes. "
            "Exploring never crosses a budget, a cost cap, a required capability or a cooldown."
        ),
    )
    output_modalities = models.JSONField(
        default=default_output_modalities,
        blank=True,
        help_text="What a candidate may answer with: a model whose output is not all among these is never chosen.",
    )
    allow_free = models.BooleanField(
        "allow :free variants",
        default=False,
        help_text="OpenRouter's :free variants are rate-limited and may log prompts: chosen only when ticked.",
    )
    active = models.BooleanField(default=True)
    max_latency_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Latency ceiling (time to first token, ms): a model whose endpoints are all known to be "
        "slower is not a candidate, and OpenRouter is asked to prefer endpoints under it.",
    )

    # OpenRouter's provider preferences (`provider` in a chat completion), sent back by /route.
    provider_sort = models.CharField(
        "sort", max_length=16, choices=ProviderSort.choices, blank=True, help_text="Blank: OpenRouter's load balancing."
    )
    provider_order = models.JSONField(
        "order", default=list, blank=True, help_text="Provider slugs to try first, in order."
    )
    provider_only = models.JSONField("only", default=list, blank=True, help_text="Provider slugs allowed (empty: any).")
    provider_ignore = models.JSONField("ignore", default=list, blank=True, help_text="Provider slugs never used.")
    provider_allow_fallbacks = models.BooleanField(
        "allow fallbacks",
        default=True,
        help_text="Off: only the providers in the order (or the first one) serve; no backup provider.",
    )
    provider_require_parameters = models.BooleanField(
        "require parameters", default=False, help_text="Only providers supporting every parameter the call sends."
    )
    provider_data_collection = models.CharField(
        "data collection",
        max_length=8,
        choices=DataCollection.choices,
        blank=True,
        help_text="Blank: OpenRouter's default (allow) and the account's settings.",
    )
    provider_zdr = models.BooleanField(
        "zero data retention", default=False, help_text="Only endpoints that retain no prompts."
    )
    provider_quantizations = models.JSONField(
        "quantizations", default=list, blank=True, help_text="Only endpoints of these quantizations (empty: any)."
    )
    # Cooldown policy: empty uses the LLMHIVE_COOLDOWN_* setting of the same name.
    cooldown_failures = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Retryable failures (rate limited, provider error, timeout) within the window that leave a model "
        "out for this role. Empty: LLMHIVE_COOLDOWN_FAILURES.",
    )
    cooldown_window_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Empty: LLMHIVE_COOLDOWN_WINDOW_SECONDS.",
    )
    cooldown_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="How long a first trip leaves the model out; doubled on each trip in a row. "
        "Empty: LLMHIVE_COOLDOWN_SECONDS.",
    )
    cooldown_max_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="The longest a model is left out. Empty: LLMHIVE_COOLDOWN_MAX_SECONDS.",
    )
    cooldown_half_open_share = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Once its time is up, the share of decisions that may try the model (0..1) until a success "
        "closes its cooldown. Empty: LLMHIVE_COOLDOWN_HALF_OPEN_SHARE.",
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    def clean(self) -> None:
        unknown = sorted(set(self.required_capabilities or []) - set(CAPABILITIES))
        if unknown:
            raise ValidationError(
                {
                    "required_capabilities": f"Unknown capabilities: {', '.join(unknown)}. Known: {', '.join(CAPABILITIES)}."
                }
            )
        modalities = self.output_modalities
        if not isinstance(modalities, list) or not modalities or not all(isinstance(m, str) for m in modalities):
            raise ValidationError({"output_modalities": 'A list of one or more modalities, e.g. ["text"].'})
        known = known_output_modalities()
        unknown = sorted(set(modalities) - known)
        if unknown:
            raise ValidationError(
                {"output_modalities": f"Unknown modalities: {', '.join(unknown)}. Known: {', '.join(sorted(known))}."}
            )
        self.clean_provider_preferences()
        self.clean_cooldowns()
        if self.default_category_id and not self.default_category.active:
            raise ValidationError(
                {"default_category": f"'{self.default_category.slug}' is retired: choose an active category or none."}
            )

    def clean_cooldowns(self) -> None:
        """Settings that would be silently overruled, or would never let a cooled model back."""
        errors: dict[str, str] = {}
        first = self.cooldown_seconds or settings.LLMHIVE_COOLDOWN_SECONDS
        longest = self.cooldown_max_seconds or settings.LLMHIVE_COOLDOWN_MAX_SECONDS
        if first > longest:
            field = "cooldown_seconds" if self.cooldown_seconds else "cooldown_max_seconds"
            errors[field] = (
                f"A first trip of {first} s is longer than the longest a model is left out ({longest} s): "
                "raise the longest or shorten the first."
            )
        if self.cooldown_half_open_share == 0:
            errors["cooldown_half_open_share"] = (
                "At 0 no decision tries a cooled model once its time is up, so its cooldown never closes "
                "(only by hand): give it a share above 0, or leave it empty for the default."
            )
        if errors:
            raise ValidationError(errors)

    def clean_provider_preferences(self) -> None:
        """What OpenRouter would refuse, or what would leave the role with no provider at all."""
        errors: dict[str, str] = {}
        for name in PROVIDER_LISTS:
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors[name] = "A list of provider slugs."
                continue
            bad = [v for v in value if not PROVIDER_SLUG.match(v)]
            if bad:
                errors[name] = (
                    f"Not a provider slug: {', '.join(bad)}. Slugs are lowercase, as in OpenRouter's "
                    "provider list ('deepinfra', 'amazon-bedrock', or an endpoint such as 'deepinfra/turbo')."
                )
            elif len(set(value)) != len(value):
                errors[name] = "Each provider once."
        quantizations = self.provider_quantizations
        if not isinstance(quantizations, list) or not all(isinstance(v, str) for v in quantizations):
            errors["provider_quantizations"] = "A list of quantizations."
        elif unknown := [q for q in quantizations if q not in QUANTIZATIONS]:
            errors["provider_quantizations"] = (
                f"Unknown quantizations: {', '.join(unknown)}. Known: {', '.join(QUANTIZATIONS)}."
            )
        if not errors:
            only, ignore, order = set(self.provider_only), set(self.provider_ignore), self.provider_order
            if both := sorted(only & ignore):
                errors["provider_ignore"] = f"Both allowed (only) and ignored: {', '.join(both)}."
            elif ignored := [p for p in order if p in ignore]:
                errors["provider_order"] = f"Ordered but ignored: {', '.join(ignored)}."
            elif only and (outside := [p for p in order if p not in only]):
                errors["provider_order"] = f"Ordered but not among the allowed (only): {', '.join(outside)}."
            elif order and self.provider_sort:
                errors["provider_sort"] = "OpenRouter sorts only when no order is given: choose an order or a sort."
        if errors:
            raise ValidationError(errors)

    @property
    def overrides_cooldowns(self) -> bool:
        return any(getattr(self, name) is not None for name in COOLDOWN_FIELDS)

    def missing_for(self, model: CatalogModel) -> list[str]:
        """Why `model` cannot serve this role (empty when it can)."""
        reasons = [f"lacks {c}" for c in self.required_capabilities or [] if not getattr(model, c, False)]
        if self.min_context_length and (model.context_length or 0) < self.min_context_length:
            reasons.append(f"context {model.context_length or 0} < {self.min_context_length}")
        extra = sorted(set(model.output_modalities or []) - set(self.output_modalities or []))
        if extra:
            reasons.append(f"outputs {', '.join(extra)}, which the role does not take")
        if is_free_variant(model.pk or "", model.price_prompt, model.price_completion) and not self.allow_free:
            reasons.append("free (a :free variant or no price), and the role does not allow them")
        return reasons


COOLDOWN_FIELDS = (
    "cooldown_failures",
    "cooldown_window_seconds",
    "cooldown_seconds",
    "cooldown_max_seconds",
    "cooldown_half_open_share",
)


class RolePreference(models.Model):
    """An admin's ordered choice for a role: a model, or any model of a family."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="preferences")
    model = models.ForeignKey(CatalogModel, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    family = models.ForeignKey("catalog.Family", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0, db_index=True)

    class Meta:
        ordering = ["role", "position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(model__isnull=False, family__isnull=True)
                | models.Q(model__isnull=True, family__isnull=False),
                name="preference_model_xor_family",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role.slug} #{self.position}: {self.model_id or self.family}"

    def clean(self) -> None:
        if bool(self.model_id) == bool(self.family_id):
            raise ValidationError("Choose a model or a family (one of them).")
        if self.model_id and self.role_id:
            reasons = self.role.missing_for(self.model)
            if reasons:
                raise ValidationError(
                    {"model": f"{self.model_id} cannot serve the role {self.role.slug}: {'; '.join(reasons)}."}
                )


class EscalationOverride(models.Model):
    """When a model (or any model of a family) fails, try this model next: tried before dynamic escalation."""

    from_model = models.ForeignKey(CatalogModel, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    from_family = models.ForeignKey("catalog.Family", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    to_model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="+")
    role = models.ForeignKey(
        Role,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="escalation_overrides",
        help_text="Only for this role; empty for every role.",
    )
    position = models.PositiveIntegerField(default=0, db_index=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(from_model__isnull=False, from_family__isnull=True)
                | models.Q(from_model__isnull=True, from_family__isnull=False),
                name="override_from_model_xor_family",
            ),
        ]

    def __str__(self) -> str:
        source = self.from_model_id or self.from_family
        scope = f" ({self.role.slug})" if self.role_id else ""
        return f"{source} → {self.to_model_id}{scope}"

    def clean(self) -> None:
        if bool(self.from_model_id) == bool(self.from_family_id):
            raise ValidationError("Escalate from a model or from a family (one of them).")
        if self.from_model_id and self.from_model_id == self.to_model_id:
            raise ValidationError({"to_model": "A model cannot escalate to itself."})
        if self.to_model_id and self.from_family_id and self.from_family.matches(self.to_model_id):
            raise ValidationError(
                {"to_model": f"{self.to_model_id} is itself in the family {self.from_family}: that would loop."}
            )
        cycle = self.cycle_through()
        if cycle:
            raise ValidationError({"to_model": f"This override would make a cycle: {' → '.join(cycle)}."})

    def cycle_through(self) -> list[str]:
        """The cycle this override would close, as a path of model ids, or [] when there is none.

        Overrides form a graph over models (a family source stands for each of its models). The
        new edge closes a cycle when its target already leads back to its source.
        """
        if not self.to_model_id:
            return []
        families = list(Family.objects.all())
        others = EscalationOverride.objects.exclude(pk=self.pk).select_related("from_family")
        if self.role_id:  # an override for one role meets the general ones and its own role's
            others = others.filter(models.Q(role__isnull=True) | models.Q(role=self.role_id))

        def sources_match(override, model_id: str) -> bool:
            if override.from_model_id:
                return override.from_model_id == model_id
            return classify_family(model_id, families) == override.from_family

        def is_source(model_id: str) -> bool:
            if self.from_model_id:
                return model_id == self.from_model_id
            return classify_family(model_id, families) == self.from_family

        edges = list(others)
        path = [str(self.from_model_id or self.from_family), self.to_model_id]
        seen = {self.to_model_id}
        frontier = [(self.to_model_id, path)]
        while frontier:
            current, trail = frontier.pop()
            for override in edges:
                if not sources_match(override, current):
                    continue
                nxt = override.to_model_id
                if is_source(nxt):
                    return [*trail, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append((nxt, [*trail, nxt]))
        return []


class QualityPrior(models.Model):
    """A quality score from outside (an arena, a benchmark) for a model or a whole family: the
    prior a decision starts from where no category ranking speaks, before any outcome."""

    model = models.ForeignKey(CatalogModel, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    family = models.ForeignKey("catalog.Family", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)], help_text="0 to 1; higher is better."
    )
    source = models.CharField(max_length=100, help_text='Where the score comes from, e.g. "LMArena text".')
    as_of = models.DateField(help_text="When the source published it.")
    note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "family"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(model__isnull=False, family__isnull=True)
                | models.Q(model__isnull=True, family__isnull=False),
                name="qualityprior_model_xor_family",
            ),
            models.CheckConstraint(condition=models.Q(score__gte=0, score__lte=1), name="qualityprior_score_0_1"),
            models.UniqueConstraint(fields=["model"], name="qualityprior_one_per_model"),
            models.UniqueConstraint(fields=["family"], name="qualityprior_one_per_family"),
        ]
        permissions = [("export_qualityprior", "Can export quality priors")]

    def __str__(self) -> str:
        return f"{self.model_id or self.family}: {self.score:g} ({self.label})"

    @property
    def label(self) -> str:
        """How a candidate's parts name the prior: its source and date."""
        return f"{self.source} ({self.as_of.isoformat()})"

    def clean(self) -> None:
        if bool(self.model_id) == bool(self.family_id):
            raise ValidationError("Give a model or a family (one of them).")


class Strategy(models.Model):
    """How the orchestrator runs a task (single, refine_on_failure, ensemble…)."""

    slug = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "strategies"

    def __str__(self) -> str:
        return self.slug


class StrategyStat(ErrorCounters):
    """Strategy memory: outcomes per (model, role, category, strategy), from the usage ledger."""

    model = models.CharField(max_length=200)
    role = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=100, blank=True)
    strategy = models.CharField(max_length=100, blank=True)
    requests = models.PositiveBigIntegerField(default=0)
    successes = models.PositiveBigIntegerField(default=0)
    quality_sum = models.FloatField(default=0)
    quality_count = models.PositiveBigIntegerField(default=0)
    cost_usd = money_field(total=True, default=0)
    latency_ms_sum = models.PositiveBigIntegerField(default=0)
    latency_count = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)
    # On PostgreSQL, the transaction that last wrote the row (core.upsert.add_to_rows): each
    # worker reads exactly the rows committed since its last look, in whatever order the
    # writers committed (routing.snapshot.OutcomeBook). Rows are written only by routing.memory,
    # which stamps it; a row written otherwise reaches the workers with the next full read.
    changed_in = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["model", "role", "category", "strategy"]
        constraints = [
            models.UniqueConstraint(fields=["model", "role", "category", "strategy"], name="strategystat_key"),
        ]
        # Each worker reads the rows written since its last look (routing.snapshot.OutcomeBook).
        indexes = [
            models.Index(fields=["updated_at"], name="strategystat_updated"),
            models.Index(fields=["changed_in"], name="strategystat_changed_in"),
        ]
        verbose_name = "strategy memory"
        verbose_name_plural = "strategy memory"

    def __str__(self) -> str:
        return f"{self.model} {self.role or '-'} {self.category or '-'} {self.strategy or '-'}: {self.successes}/{self.requests}"

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None


# --- Cooldowns -----------------------------------------------------------------------------------


class CooldownState(models.TextChoices):
    CLOSED = "closed", "Closed: routed as usual"
    OPEN = "open", "Open: left out (half-open once `until` has passed)"


class ModelCooldown(models.Model):
    """A model's circuit breaker (routing.cooldowns), for the default policy (`role` empty) or for a
    role with its own cooldown settings. Open until `until`, then half-open: a share of decisions
    may try the model; a success reported after `until` closes it, a retryable failure reopens it
    for twice as long (up to the max)."""

    model = models.CharField(max_length=200)
    role = models.CharField(
        max_length=64, blank=True, help_text="Empty: the default policy (every role without its own)."
    )
    state = models.CharField(max_length=8, choices=CooldownState.choices, default=CooldownState.CLOSED)
    reason = models.CharField(max_length=300, blank=True)
    trips = models.PositiveIntegerField(default=0, help_text="Times it was opened, ever.")
    streak = models.PositiveIntegerField(
        default=0, help_text="Trips in a row without a success closing it: the open time doubles with each."
    )
    opened_at = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    # Failures before this instant no longer count (set when it closes).
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "role"]
        constraints = [models.UniqueConstraint(fields=["model", "role"], name="modelcooldown_key")]
        indexes = [models.Index(fields=["state"], name="modelcooldown_state_idx")]

    def __str__(self) -> str:
        return f"{self.model} {self.role or '(default)'}: {self.shown_state}"

    @property
    def shown_state(self) -> str:
        """closed, open or half-open (open with its time up)."""
        if self.state == CooldownState.OPEN and self.until is not None and self.until <= timezone.now():
            return "half-open"
        return self.state


class PolicyDraft(models.Model):
    """A routing policy an admin is preparing, to evaluate before anyone applies it by hand
    (routing.policies: its JSON format; routing.replay: the evaluation). A draft changes no
    routing: saving one touches no data version."""

    name = models.CharField(max_length=100, unique=True)
    policy = models.TextField(
        default="{}",
        help_text="The policy as JSON (see docs/ops/evaluating.md): weights, every_role, roles, budgets, learn, "
        "price_basis. What it does not say is what is in force.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "policy draft"

    def __str__(self) -> str:
        return self.name
