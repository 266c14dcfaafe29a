"""What the sync and research jobs recorded: sync runs and category rankings, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html
from django.utils.text import Truncator

from catalog.admin.common import EMPTY, ReadOnlyAdmin
from catalog.models import CategoryRanking, SyncRun, SyncStatus
from catalog.selectors import current_rankings_queryset
from core.admin_mixins import pretty_json

STATUS_COLOURS = {
    SyncStatus.SUCCEEDED: "#2e7d32",
    SyncStatus.FAILED: "#c62828",
    SyncStatus.RUNNING: "#1565c0",
    SyncStatus.SKIPPED: "#757575",
    SyncStatus.ABANDONED: "#ef6c00",
}


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    # The source and the reactivated count are on the run's page: the list keeps what a person
    # scans for (which runs failed, and why) inside 1,400 px.
    list_display = (
        "id",
        "kind",
        "trigger",
        "coloured_status",
        "started_at",
        "duration_display",
        "seen",
        "added",
        "updated",
        "missing",
        "price_changes",
        "short_error",
    )
    list_filter = ("kind", "status", "trigger")
    fields = (
        ("kind", "trigger", "forced"),
        ("source", "source_detail"),
        ("status", "started_at", "finished_at", "duration_display"),
        ("seen", "added", "updated", "reactivated", "missing", "price_changes", "skipped_entries"),
        "error",
        "details_pretty",
    )
    readonly_fields = ("duration_display", "details_pretty")

    @admin.display(description="status", ordering="status")
    def coloured_status(self, obj: SyncRun) -> str:
        colour = STATUS_COLOURS.get(obj.status, "inherit")
        return format_html('<strong style="color: {}">{}</strong>', colour, obj.get_status_display())

    @admin.display(description="duration")
    def duration_display(self, obj: SyncRun) -> str:
        if obj.duration is None:
            return EMPTY
        seconds = obj.duration.total_seconds()
        if seconds < 60:
            return f"{seconds:.1f} s"
        minutes, seconds = divmod(round(seconds), 60)
        return f"{minutes} min {seconds} s"

    @admin.display(description="error")
    def short_error(self, obj: SyncRun) -> str:
        if not obj.error:
            return ""
        return format_html('<span title="{}">{}</span>', obj.error, Truncator(obj.error).chars(80))

    @admin.display(description="details")
    def details_pretty(self, obj: SyncRun) -> str:
        return pretty_json(obj.details)


class RankingSetListFilter(admin.SimpleListFilter):
    title = "ranking set"
    parameter_name = "set"

    def lookups(self, request, model_admin):
        return (("current", "Current"),)

    def queryset(self, request, queryset):
        if self.value() == "current":
            return queryset.filter(pk__in=current_rankings_queryset().values("pk"))
        return queryset


@admin.register(CategoryRanking)
class CategoryRankingAdmin(ReadOnlyAdmin):
    list_display = ("category", "rank", "model", "observed_at")
    list_select_related = ("category", "model")
    list_filter = ("category", RankingSetListFilter)
    search_fields = ("model__id",)
