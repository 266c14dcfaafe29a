"""The model catalog: what OpenRouter offers, as LLMHive has curated it."""

from __future__ import annotations

import fnmatch
from datetime import timedelta
from decimal import Decimal

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.money import decimal_str, money_field
from openrouter import PRICE_KEYS

# The data version routing's snapshot watches for the catalog (models, families, categories,
# rankings): bumped on a curator's save and at the end of a sync or research run.
CATALOG_VERSION = "catalog"

# OpenRouter's price keys (openrouter.PRICE_KEYS), in the order the admin and the API show them.
# Each is stored in a `price_<key>` column in USD per token.
PRICE_FIELDS = tuple(f"price_{key}" for key in PRICE_KEYS)
PER_MILLION = Decimal(1_000_000)

# capability name -> (where it comes from, the value that grants it)
CAPABILITY_RULES = {
    "supports_tools": ("supported_parameters", "tools"),
    "supports_reasoning": ("supported_parameters", "reasoning"),
    "supports_structured_outputs": ("supported_parameters", "structured_outputs"),
    "supports_multimodal_image": ("input_modalities", "image"),
    "supports_file_pdf": ("input_modalities", "file"),
    "supports_audio": ("input_modalities", "audio"),
    "supports_video": ("input_modalities", "video"),
}
CAPABILITIES = tuple(CAPABILITY_RULES)


def derive_capabilities(supported_parameters, input_modalities) -> dict[str, bool]:
    sources = {
        "supported_parameters": set(supported_parameters or ()),
        "input_modalities": set(input_modalities or ()),
    }
    return {name: value in sources[source] for name, (source, value) in CAPABILITY_RULES.items()}


# Family slugs carry versions ("gpt-5.2") and OpenRouter's category slugs nest ("marketing/seo"),
# which Django's SlugField would refuse.
family_slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9.\-]*$", "Lowercase letters, digits, dots and hyphens.")
category_slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9\-]*(/[a-z0-9\-]+)*$", "Lowercase words with hyphens, nested with '/'."
)


class Family(models.Model):
    slug = models.CharField(max_length=64, unique=True, validators=[family_slug_validator])
    name = models.CharField(max_length=100)
    pattern = models.CharField(max_length=200, help_text="A glob on the model id (fnmatch), e.g. openai/gpt-5.2*")
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower is tried first: give the more specific pattern the lower number."
    )
    vendor = models.CharField(max_length=100, blank=True)
    # More globs the family claims, besides `pattern`: OpenRouter's moving aliases
    # (`~anthropic/claude-opus-latest`) start with "~" and share no prefix with the line's ids.
    aliases = models.JSONField(
        default=list, blank=True, help_text="More globs on the model id, e.g. ~anthropic/claude-opus-latest"
    )

    class Meta:
        ordering = ["priority", "slug"]
        verbose_name_plural = "families"

    def __str__(self) -> str:
        return self.name

    @property
    def patterns(self) -> list[str]:
        return [self.pattern, *(self.aliases or [])]

    def matches(self, model_id: str) -> bool:
        # fnmatchcase: the same answer on every OS (fnmatch folds case on Windows).
        return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in self.patterns)


def classify_family(model_id: str, families) -> Family | None:
    """The first family, by priority then slug, whose pattern matches the id."""
    for family in sorted(families, key=lambda f: (f.priority, f.slug)):
        if family.matches(model_id):
            return family
    return None


class CategorySource(models.TextChoices):
    """Where a category was first seen."""

    SEED = "seed", "Seed"
    OPENROUTER = "openrouter", "OpenRouter"
    ROUTE = "route", "/route request"
    USAGE = "usage", "Usage report"
    ADMIN = "admin", "Admin"


class CategoryState(models.TextChoices):
    ACTIVE = "active", "Active"
    PROPOSED = "proposed", "Proposed"
    RETIRED = "retired", "Retired"


class SuggestionState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class FamilySuggestion(models.Model):
    """A family research proposes for unclassified or version-drifted models (catalog.families).
    One row per pattern: a rejected pattern stays, so that it is never suggested again."""

    pattern = models.CharField(max_length=200, unique=True)
    aliases = models.JSONField(default=list, blank=True)
    slug = models.CharField(max_length=64, validators=[family_slug_validator])
    name = models.CharField(max_length=100)
    vendor = models.CharField(max_length=100, blank=True)
    priority = models.PositiveIntegerField(default=100)
    state = models.CharField(max_length=16, choices=SuggestionState.choices, default=SuggestionState.PENDING)
    model_ids = models.JSONField(default=list, blank=True, help_text="The ids the family would take.")
    drift = models.BooleanField(default=False, help_text="Some of them drifted from the family that holds them.")
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    # While pending: the family an alias would be added to (none: a new family is created).
    # Once accepted: the family created or extended.
    family = models.ForeignKey(Family, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["state", "priority", "slug"]

    def __str__(self) -> str:
        return f"{self.slug} ({self.pattern})"

    def as_dict(self) -> dict:
        """As research's details and `manage.py family_suggestions --json` show it."""
        return {
            "pattern": self.pattern,
            "aliases": self.aliases,
            "slug": self.slug,
            "name": self.name,
            "vendor": self.vendor,
            "priority": self.priority,
            "count": len(self.model_ids),
            "models": self.model_ids,
            "drift": self.drift,
            # a suggestion for an alias can add it to an existing family instead of creating one
            "extends": self.family.slug if self.family_id and self.state == SuggestionState.PENDING else None,
        }


class Category(models.Model):
    slug = models.CharField(
        max_length=64,
        unique=True,
        validators=[category_slug_validator],
        help_text="As OpenRouter spells it, e.g. marketing/seo",
    )
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True, help_text="Retired categories are not researched.")
    # A category discovered (by research, /route or usage) and not yet adopted or retired by a
    # curator: inactive until adopted, and never proposed again once retired.
    proposed = models.BooleanField(default=False)
    source = models.CharField(max_length=16, choices=CategorySource.choices, default=CategorySource.ADMIN)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    seen_count = models.PositiveIntegerField(
        default=0, help_text="Sightings while proposed (at most one a minute per process)."
    )

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "categories"
        constraints = [
            models.CheckConstraint(
                condition=~(Q(active=True) & Q(proposed=True)), name="category_proposed_is_inactive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def state(self) -> str:
        if self.active:
            return CategoryState.ACTIVE
        return CategoryState.PROPOSED if self.proposed else CategoryState.RETIRED


class ModelStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    MISSING = "missing", "Missing"


# The family filter's value for models in no family (the API's `family=none`, the admin's filter).
NO_FAMILY = "none"


class CatalogModelQuerySet(models.QuerySet):
    def routable(self):
        """Models a decision may choose: active, enabled, not expired, fixed-priced."""
        today = timezone.now().date()
        return self.filter(status=ModelStatus.ACTIVE, enabled=True, variable_pricing=False).filter(
            Q(expiration_date__isnull=True) | Q(expiration_date__gt=today)
        )

    def active(self):
        return self.filter(status=ModelStatus.ACTIVE)

    def unclassified(self):
        """In no family (no pattern matches the id)."""
        return self.filter(family__isnull=True)

    def in_family(self, slug: str):
        """Members of the family `slug`; NO_FAMILY ("none") for the unclassified."""
        return self.unclassified() if slug == NO_FAMILY else self.filter(family__slug=slug)


class CatalogModel(models.Model):
    # OpenRouter's `id`. Never canonical_slug: `:free` and `:thinking` variants share it.
    id = models.CharField(max_length=200, primary_key=True)
    name = models.CharField(max_length=300, blank=True)
    canonical_slug = models.CharField(max_length=200, blank=True, db_index=True)
    author = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    created = models.DateTimeField(null=True, blank=True, help_text="When OpenRouter added the model.")
    context_length = models.PositiveIntegerField(null=True, blank=True)
    max_completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    modality = models.CharField(max_length=100, blank=True)
    input_modalities = models.JSONField(default=list, blank=True)
    output_modalities = models.JSONField(default=list, blank=True)
    tokenizer = models.CharField(max_length=100, blank=True)
    supported_parameters = models.JSONField(default=list, blank=True)
    default_parameters = models.JSONField(default=dict, blank=True)

    price_prompt = money_field(null=True, blank=True)
    price_completion = money_field(null=True, blank=True)
    price_request = money_field(null=True, blank=True)
    price_image = money_field(null=True, blank=True)
    price_image_token = money_field(null=True, blank=True)
    price_image_output = money_field(null=True, blank=True)
    price_audio = money_field(null=True, blank=True)
    price_audio_output = money_field(null=True, blank=True)
    price_input_audio_cache = money_field(null=True, blank=True)
    price_web_search = money_field(null=True, blank=True)
    price_internal_reasoning = money_field(null=True, blank=True)
    price_input_cache_read = money_field(null=True, blank=True)
    price_input_cache_write = money_field(null=True, blank=True)
    price_input_cache_write_1h = money_field(null=True, blank=True)
    price_discount = money_field(null=True, blank=True, help_text="A fraction: prices are multiplied by 1 - discount.")
    extra_prices = models.JSONField(
        default=dict,
        blank=True,
        help_text="Pricing keys OpenRouter sent that the catalog has no column for: {key: decimal string}.",
    )
    variable_pricing = models.BooleanField(
        default=False, help_text='Router models priced "-1": the price depends on the model it picks.'
    )

    supports_tools = models.BooleanField(default=False)
    supports_reasoning = models.BooleanField(default=False)
    supports_structured_outputs = models.BooleanField(default=False)
    supports_multimodal_image = models.BooleanField(default=False)
    supports_file_pdf = models.BooleanField(default=False)
    supports_audio = models.BooleanField(default=False)
    supports_video = models.BooleanField(default=False)

    family = models.ForeignKey(Family, null=True, blank=True, on_delete=models.SET_NULL, related_name="models")
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.ACTIVE)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    missing_since = models.DateTimeField(null=True, blank=True)
    expiration_date = models.DateField(null=True, blank=True)

    enabled = models.BooleanField(default=True, help_text="Disabled models are never routed to.")
    notes = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True, help_text="The model's entry in the latest sync.")
    updated_at = models.DateTimeField(auto_now=True)

    objects = CatalogModelQuerySet.as_manager()

    class Meta:
        db_table = "model_catalog"
        ordering = ["id"]
        verbose_name = "model"
        indexes = [
            models.Index(fields=["status", "enabled"], name="catalog_status_enabled_idx"),
            models.Index(fields=["author"], name="catalog_author_idx"),
        ]

    def __str__(self) -> str:
        return self.id

    def price(self, key: str) -> Decimal | None:
        return getattr(self, f"price_{key}")

    @property
    def pricing(self) -> dict[str, Decimal | None]:
        return {key: self.price(key) for key in PRICE_KEYS}

    @property
    def capabilities(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in CAPABILITIES}

    def per_million(self, key: str) -> Decimal | None:
        value = self.price(key)
        return None if value is None else (value * PER_MILLION).normalize()

    @property
    def prompt_per_million(self) -> Decimal | None:
        return self.per_million("prompt")

    @property
    def completion_per_million(self) -> Decimal | None:
        return self.per_million("completion")


class PriceChange(models.Model):
    """Effective-dated price history: the price `field` went from `old` to `new` at observed_at."""

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="price_changes")
    # One of PRICE_KEYS, or a key of CatalogModel.extra_prices (a price OpenRouter added since).
    field = models.CharField(max_length=64)
    old = money_field(null=True, blank=True)
    new = money_field(null=True, blank=True)
    observed_at = models.DateTimeField(default=timezone.now)
    run = models.ForeignKey("SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-observed_at", "model_id", "field"]
        indexes = [models.Index(fields=["model", "field", "observed_at"], name="pricechange_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.model_id} {self.field}: {decimal_str(self.old)} -> {decimal_str(self.new)}"


class SyncKind(models.TextChoices):
    SYNC = "sync", "Sync"
    RESEARCH = "research", "Research"


class SyncTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    ADMIN = "admin", "Admin"
    API = "api", "API"
    COMMAND = "command", "Command"


class SyncSource(models.TextChoices):
    API = "api", "OpenRouter API"
    FILE = "file", "File"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    # Left "running" by a process that died (killed, out of memory): found and marked by the
    # next run (see catalog.sync and core.locks).
    ABANDONED = "abandoned", "Abandoned"


class SyncRun(models.Model):
    kind = models.CharField(max_length=16, choices=SyncKind.choices, default=SyncKind.SYNC)
    trigger = models.CharField(max_length=16, choices=SyncTrigger.choices, default=SyncTrigger.COMMAND)
    source = models.CharField(max_length=16, choices=SyncSource.choices, default=SyncSource.API)
    source_detail = models.CharField(max_length=500, blank=True, help_text="The URL or file synced from.")
    forced = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    seen = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    reactivated = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    price_changes = models.PositiveIntegerField(default=0)
    skipped_entries = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["kind", "status", "-finished_at"], name="syncrun_latest_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def summary(self) -> str:
        if self.status == SyncStatus.SKIPPED:
            return f"{self.kind} skipped: {self.error}"
        if self.status in (SyncStatus.FAILED, SyncStatus.ABANDONED):
            return f"{self.kind} {self.status}: {self.error}"
        text = (
            f"{self.kind} {self.status}: {self.seen} seen, {self.added} added, {self.updated} updated, "
            f"{self.reactivated} reactivated, {self.missing} missing, {self.price_changes} price changes"
        )
        if self.skipped_entries:
            text += f", {self.skipped_entries} malformed entries skipped"
        abandoned = self.details.get("abandoned_runs") if self.details else None
        if abandoned:
            text += "; marked abandoned: " + ", ".join(f"run #{item['run']}" for item in abandoned)
        if self.kind == SyncKind.RESEARCH and self.details:
            text += f"; {self.details.get('rankings', 0)} ranking rows, {self.details.get('endpoints', 0)} endpoints"
        return text


class CategoryRanking(models.Model):
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="rankings")
    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="rankings")
    rank = models.PositiveIntegerField()
    observed_at = models.DateTimeField(default=timezone.now)
    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="rankings")

    class Meta:
        ordering = ["category", "-observed_at", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["run", "category", "model"], name="ranking_once_per_run"),
        ]
        indexes = [models.Index(fields=["category", "-observed_at", "rank"], name="ranking_current_idx")]

    def __str__(self) -> str:
        return f"{self.category_id} #{self.rank} {self.model_id}"


class ModelEndpoint(models.Model):
    """One provider endpoint of a model, as `/models/{author}/{slug}/endpoints` last showed it."""

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="endpoints")
    name = models.CharField(max_length=300, blank=True)
    provider_name = models.CharField(max_length=100)
    tag = models.CharField(max_length=150, blank=True)
    quantization = models.CharField(max_length=50, blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    max_completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    pricing = models.JSONField(default=dict, blank=True, help_text="Decimal strings in USD per token.")
    status = models.IntegerField(null=True, blank=True, help_text="OpenRouter's status: 0 is up.")
    uptime_last_30m = models.FloatField(null=True, blank=True)
    latency_last_30m = models.FloatField(null=True, blank=True)
    throughput_last_30m = models.FloatField(null=True, blank=True)
    observed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "provider_name", "tag"]

    def __str__(self) -> str:
        return f"{self.model_id} via {self.provider_name}"


class AlertKind(models.TextChoices):
    """The alerts the catalog raises (registered with core in CatalogConfig.ready())."""

    NEW_MODEL = "new_model", "New model"
    MODEL_MISSING = "model_missing", "Model missing"
    MODEL_RETURNED = "model_returned", "Model returned"
    PRICE_CHANGE = "price_change", "Price change"
    CAPABILITY_CHANGE = "capability_change", "Capability change"
    UNCLASSIFIED_MODEL = "unclassified_model", "Unclassified model"
    MODEL_EXPIRING = "model_expiring", "Model expiring"
    SYNC_FAILED = "sync_failed", "Sync failed"
    MALFORMED_ENTRY = "malformed_entry", "Malformed entry skipped"
    RUN_ABANDONED = "run_abandoned", "Run abandoned"
    RESEARCH_DIGEST = "research_digest", "Research digest"
    UNKNOWN_PRICE_KEY = "unknown_price_key", "Unknown price key"
    NEW_CATEGORY = "new_category", "New category"
    VERSION_DRIFT = "version_drift", "Version drift"
