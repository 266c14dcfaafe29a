"""The catalog models admin: curators enable, disable and annotate models, and trigger syncs,
research and forced syncs from the change list."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog.admin.common import EMPTY, PRICE_HISTORY_LIMIT, NewestFirstFormSet, ReadOnlyInline
from catalog.families import drifted_models
from catalog.models import (
    CAPABILITIES,
    CATALOG_VERSION,
    NO_FAMILY,
    PRICE_FIELDS,
    CatalogModel,
    Family,
    ModelEndpoint,
    ModelStatus,
    PriceChange,
    SyncKind,
    SyncRun,
    SyncStatus,
    SyncTrigger,
)
from catalog.queueing import request_catalog_job
from catalog.tasks import queue_catalog_job
from core.admin_mixins import plural, pretty_json
from core.models import DataVersion
from core.money import decimal_str, usd_html

# The compact capability column: one letter per capability, in CAPABILITIES order.
CAPABILITY_LETTERS = {
    "supports_tools": ("T", "tools"),
    "supports_reasoning": ("R", "reasoning"),
    "supports_structured_outputs": ("S", "structured outputs"),
    "supports_multimodal_image": ("I", "image input"),
    "supports_file_pdf": ("F", "file/PDF input"),
    "supports_audio": ("A", "audio input"),
    "supports_video": ("V", "video input"),
}


class FamilyListFilter(admin.SimpleListFilter):
    title = "family"
    parameter_name = "family"
    NONE = "-"

    def lookups(self, request, model_admin):
        families = [(f.slug, f.name) for f in Family.objects.only("slug", "name")]
        return [*families, (self.NONE, "No family")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.in_family(NO_FAMILY if self.value() == self.NONE else self.value())
        return queryset


class VersionDriftFilter(admin.SimpleListFilter):
    """Models whose version differs from their family's (catalog.families.drifts)."""

    title = "version drift"
    parameter_name = "drift"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() not in ("yes", "no"):
            return queryset
        drifted = [model_id for model_id, _family in drifted_models(active_only=False)]
        return queryset.filter(id__in=drifted) if self.value() == "yes" else queryset.exclude(id__in=drifted)


class AuthorListFilter(admin.SimpleListFilter):
    title = "author"
    parameter_name = "author"

    def lookups(self, request, model_admin):
        authors = (
            CatalogModel.objects.exclude(author="").values_list("author").annotate(n=Count("id")).order_by("author")
        )
        return [(author, f"{author} ({n})") for author, n in authors]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(author=self.value())
        return queryset


# Prices charged per request, per image or per search; every other price key is per token.
PER_UNIT_PRICES = frozenset({"request", "image", "web_search"})


def price_html(key: str, value) -> str:
    """A price as people read it: per million tokens for token prices, in dollars for the rest,
    the discount (a fraction off, not money) as a percentage; the exact stored value on hover."""
    if key == "discount" and value is not None:
        return format_html('<span title="{}">{} %</span>', decimal_str(value), decimal_str(value * 100))
    return usd_html(value, per_million=key not in PER_UNIT_PRICES)


class PriceChangeInline(ReadOnlyInline):
    model = PriceChange
    formset = NewestFirstFormSet
    fields = ("field", "old_price", "new_price", "observed_at", "run")
    readonly_fields = ("old_price", "new_price")
    verbose_name_plural = f"price history (newest {PRICE_HISTORY_LIMIT})"
    empty_message = "No price changes recorded."

    @admin.display(description="old")
    def old_price(self, obj: PriceChange) -> str:
        return price_html(obj.field, obj.old)

    @admin.display(description="new")
    def new_price(self, obj: PriceChange) -> str:
        return price_html(obj.field, obj.new)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("run")


class ModelEndpointInline(ReadOnlyInline):
    model = ModelEndpoint
    fields = (
        "provider_name",
        "tag",
        "quantization",
        "context_length",
        "max_completion_tokens",
        "status",
        "uptime_last_30m",
        "latency_last_30m",
        "observed_at",
    )
    empty_message = "No provider endpoints recorded (the next health check or sync fetches them)."


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "family",
        "author",
        "prompt_per_million",
        "completion_per_million",
        "context_length",
        "capability_flags",
        "status",
        "enabled",
    )
    list_select_related = ("family",)
    list_filter = (
        FamilyListFilter,
        VersionDriftFilter,
        "status",
        *CAPABILITIES,
        AuthorListFilter,
        "enabled",
        "variable_pricing",
    )
    search_fields = ("id", "name", "canonical_slug")
    list_per_page = 100
    actions = ("enable_models", "disable_models")
    inlines = (PriceChangeInline, ModelEndpointInline)
    # Everything else is written by the sync; curators own only these.
    editable_fields = ("enabled", "notes")
    fieldsets = (
        (None, {"fields": ("id", "name", "canonical_slug", "author", "family", "status", "description")}),
        ("Curation", {"fields": ("enabled", "notes")}),
        (
            "Limits and modalities",
            {
                "fields": (
                    "context_length",
                    "max_completion_tokens",
                    "modality",
                    "input_modalities",
                    "output_modalities",
                    "tokenizer",
                    "supported_parameters",
                    "default_parameters",
                )
            },
        ),
        (
            "Pricing (USD per token)",
            {
                "fields": (
                    "prompt_per_million",
                    "completion_per_million",
                    *PRICE_FIELDS,
                    "extra_prices_shown",
                    "variable_pricing",
                )
            },
        ),
        ("Capabilities", {"fields": CAPABILITIES}),
        (
            "Lifecycle",
            {"fields": ("created", "first_seen_at", "last_seen_at", "missing_since", "expiration_date", "updated_at")},
        ),
        ("Raw payload of the latest sync", {"classes": ("collapse",), "fields": ("raw_payload",)}),
    )

    def get_readonly_fields(self, request, obj=None):
        synced = [f.name for f in CatalogModel._meta.concrete_fields if f.name not in self.editable_fields]
        synced.remove("raw")  # shown pretty-printed instead
        synced.remove("extra_prices")  # shown as a list instead
        return (*synced, "prompt_per_million", "completion_per_million", "extra_prices_shown", "raw_payload")

    def has_add_permission(self, request):
        return False  # models come from OpenRouter

    def has_delete_permission(self, request, obj=None):
        return False  # a model gone from OpenRouter is marked missing, never deleted

    @staticmethod
    def _per_million(obj: CatalogModel, key: str) -> str:
        if obj.variable_pricing:
            return "variable"
        return usd_html(obj.price(key), per_million=True, unit=False)

    @admin.display(description="prompt $/M tok", ordering="price_prompt")
    def prompt_per_million(self, obj: CatalogModel) -> str:
        return self._per_million(obj, "prompt")

    @admin.display(description="completion $/M tok", ordering="price_completion")
    def completion_per_million(self, obj: CatalogModel) -> str:
        return self._per_million(obj, "completion")

    @admin.display(description="capabilities")
    def capability_flags(self, obj: CatalogModel) -> str:
        return format_html(
            '<span style="font-family: monospace; white-space: nowrap">{}</span>',
            format_html_join(
                "",
                '<span title="{}">{}</span>',
                (
                    (label if getattr(obj, name) else f"no {label}", letter if getattr(obj, name) else "·")
                    for name, (letter, label) in CAPABILITY_LETTERS.items()
                ),
            ),
        )

    @admin.display(description="other prices")
    def extra_prices_shown(self, obj: CatalogModel) -> str:
        """Pricing keys OpenRouter sent that the catalog has no column for (kept, not dropped)."""
        if not obj.extra_prices:
            return EMPTY
        return format_html_join(", ", "{}: {}", sorted(obj.extra_prices.items()))

    @admin.display(description="raw payload")
    def raw_payload(self, obj: CatalogModel) -> str:
        return pretty_json(obj.raw)

    @admin.action(description="Enable selected models", permissions=["change"])
    def enable_models(self, request: HttpRequest, queryset) -> None:
        changed = queryset.filter(enabled=False).update(enabled=True, updated_at=timezone.now())
        DataVersion.bump(CATALOG_VERSION)  # no save signal on update(): tell routing
        self.message_user(request, f"Enabled {plural(changed, 'model')}.", messages.SUCCESS)

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable_models(self, request: HttpRequest, queryset) -> None:
        changed = queryset.filter(enabled=True).update(enabled=False, updated_at=timezone.now())
        DataVersion.bump(CATALOG_VERSION)  # no save signal on update(): tell routing
        self.message_user(request, f"Disabled {plural(changed, 'model')}.", messages.SUCCESS)

    # The sync and research buttons on the change list, and the forced sync.

    def get_urls(self):
        opts = self.opts
        name = f"{opts.app_label}_{opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("sync/", wrap(self.sync_view), name=f"{name}_sync"),
            path("research/", wrap(self.research_view), name=f"{name}_research"),
            path("force-sync/", wrap(self.force_sync_view), name=f"{name}_force_sync"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {"can_sync": self.has_change_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra_context)

    def _changelist_url(self) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist", current_app=self.admin_site.name
        )

    def _queue(self, request: HttpRequest, kind: str, *, force: bool = False) -> HttpResponseRedirect:
        what = {"sync": "Catalog sync", "research": "Catalog research"}[kind]
        if force:
            # An explicit, confirmed override: queued even beside a normal sync, which would
            # otherwise answer for it without forcing anything.
            task_id = queue_catalog_job(kind, trigger=SyncTrigger.ADMIN, force=True)
            self.message_user(
                request,
                f"Forced catalog sync queued (task {task_id}). Its run appears under Sync runs once a worker picks it up.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(self._changelist_url())
        # As POST /catalog/sync: at most one queued job per kind, however often the button is pressed.
        job = request_catalog_job(kind, trigger=SyncTrigger.ADMIN)
        if job.already_queued:
            where = f"run #{job.run.pk}" if job.run is not None else f"task {job.task_id}"
            self.message_user(
                request,
                f"{what} already {job.status} ({where}); no second one was queued.",
                messages.WARNING,
            )
        else:
            self.message_user(
                request,
                f"{what} queued (task {job.task_id}). Its run appears under Sync runs once a worker picks it up.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._changelist_url())

    def _check_can_sync(self, request: HttpRequest) -> None:
        if not self.has_change_permission(request):
            raise PermissionDenied

    def sync_view(self, request: HttpRequest):
        self._check_can_sync(request)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return self._queue(request, SyncKind.SYNC)

    def research_view(self, request: HttpRequest):
        self._check_can_sync(request)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return self._queue(request, SyncKind.RESEARCH)

    def force_sync_view(self, request: HttpRequest):
        self._check_can_sync(request)
        if request.method == "POST":
            return self._queue(request, SyncKind.SYNC, force=True)
        last_run = SyncRun.objects.filter(kind=SyncKind.SYNC).exclude(status=SyncStatus.SKIPPED).first()
        context = {
            **self.admin_site.each_context(request),
            "title": "Force a catalog sync",
            "opts": self.opts,
            "active_models": CatalogModel.objects.filter(status=ModelStatus.ACTIVE).count(),
            "max_missing_fraction": f"{settings.LLMHIVE_SYNC_MAX_MISSING_FRACTION:.0%}",
            "last_run": last_run,
            "changelist_url": self._changelist_url(),
        }
        return TemplateResponse(request, "admin/catalog/catalogmodel/force_sync_confirmation.html", context)
