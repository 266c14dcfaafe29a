"""The catalog alerts admin: read, filter by open or acknowledged, acknowledge."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import Truncator

from catalog.admin.common import plural, pretty_json
from catalog.models import CatalogAlert


class OpenListFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "Open"), ("acknowledged", "Acknowledged"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "acknowledged":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(CatalogAlert)
class CatalogAlertAdmin(admin.ModelAdmin):
    list_display = (
        "kind",
        "model",
        "short_message",
        "times",
        "created_at",
        "last_raised_at",
        "acknowledged",
        "acknowledged_by",
    )
    list_select_related = ("model", "acknowledged_by")
    list_filter = ("kind", OpenListFilter)
    search_fields = ("message", "model__id")
    # Open alerts first (newest first), then the acknowledged ones, the most recently handled first.
    ordering = (F("acknowledged_at").desc(nulls_first=True), "-created_at")
    actions = ("acknowledge",)
    fields = (
        ("kind", "model"),
        "message",
        ("times", "created_at", "last_raised_at"),
        ("acknowledged_at", "acknowledged_by"),
        "details_pretty",
    )
    readonly_fields = ("details_pretty",)

    def has_add_permission(self, request):
        return False  # alerts are raised by jobs

    def has_change_permission(self, request, obj=None):
        return False  # the change view is read-only; the action acknowledges

    def has_acknowledge_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="message")
    def short_message(self, obj: CatalogAlert) -> str:
        return Truncator(obj.message).chars(120)

    @admin.display(description="acknowledged", boolean=True, ordering="acknowledged_at")
    def acknowledged(self, obj: CatalogAlert) -> bool:
        return obj.acknowledged_at is not None

    @admin.display(description="details")
    def details_pretty(self, obj: CatalogAlert) -> str:
        return pretty_json(obj.details)

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset) -> None:
        changed = queryset.filter(acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
        self.message_user(request, f"Acknowledged {plural(changed, 'alert')}.", messages.SUCCESS)
