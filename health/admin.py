"""Health in the admin: runs with their checks, each model's history, reliability, and "Run
health checks now" (a button, and an action for selected models) that queues the same task the
hourly schedule runs."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin_mixins import EmptyMessageInline, ReadOnlyMixin
from core.money import usd_html
from health.models import HealthCheckRun, ModelHealthCheck, ModelReliability, RunStatus, Trigger

RUN_PERMISSION = "health.run_healthcheckrun"
STATUS_COLOURS = {
    RunStatus.OK: "#2e7d32",
    RunStatus.DEGRADED: "#ef6c00",
    RunStatus.FAILED: "#c62828",
    RunStatus.ERROR: "#c62828",
    RunStatus.RUNNING: "#1565c0",
}


def queue_health_checks(model_ids: list[str] | None = None) -> str:
    """Queue the health checks task (all the models that matter, or these); its task id."""
    from django_q.tasks import async_task

    kwargs = {"trigger": Trigger.ADMIN}
    if model_ids:
        kwargs["model_ids"] = list(model_ids)
    return async_task("health.tasks.run_health_checks_task", task_name="health checks (admin)", **kwargs)


class CheckInline(EmptyMessageInline, ReadOnlyMixin, admin.TabularInline):
    model = ModelHealthCheck
    fields = (
        "model",
        "ok",
        "endpoints_up",
        "endpoints_total",
        "best_uptime",
        "pinged",
        "ping_ok",
        "latency_ms",
        "http_status",
        "error_code",
        "error_message",
        "ping_cost",
    )
    readonly_fields = fields
    extra = 0
    show_change_link = True
    empty_message = "No model was checked in this run."

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("model")

    @admin.display(description="ping cost")
    def ping_cost(self, check: ModelHealthCheck) -> str:
        return usd_html(check.ping_cost_usd)


@admin.register(HealthCheckRun)
class HealthCheckRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "started_at",
        "trigger",
        "coloured_status",
        "models_checked",
        "models_failed",
        "pinged",
        "ping_spend",
        "error",
        "note",
    )
    list_filter = ("status", "trigger")
    date_hierarchy = "started_at"
    inlines = (CheckInline,)
    change_list_template = "admin/health/healthcheckrun/change_list.html"

    @admin.display(description="ping spend", ordering="ping_spend_usd")
    def ping_spend(self, run: HealthCheckRun) -> str:
        return usd_html(run.ping_spend_usd)

    @admin.display(description="status", ordering="status")
    def coloured_status(self, run: HealthCheckRun) -> str:
        return format_html('<b style="color:{}">{}</b>', STATUS_COLOURS.get(run.status, "inherit"), run.status)

    def get_urls(self):
        run_now = path("run-now/", self.admin_site.admin_view(self.run_now_view), name="health_run_now")
        return [run_now, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {"can_run_checks": request.user.has_perm(RUN_PERMISSION), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra_context)

    def run_now_view(self, request: HttpRequest):
        """POST: queue the health checks of the models that matter (what the hourly schedule
        runs) and come back to the runs."""
        if not request.user.has_perm(RUN_PERMISSION):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        task_id = queue_health_checks()
        self.message_user(
            request,
            f"Health checks queued (task {task_id}); the run appears here once a worker picks it up.",
            messages.SUCCESS,
        )
        return redirect("admin:health_healthcheckrun_changelist")


class CheckedModelFilter(admin.SimpleListFilter):
    """One model's history: the models ever checked (one query, from their reliability rows)."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        ids = ModelReliability.objects.order_by("model_id").values_list("model_id", flat=True)
        return [(model_id, model_id) for model_id in ids]

    def queryset(self, request, queryset):
        return queryset.filter(model_id=self.value()) if self.value() else queryset


@admin.register(ModelHealthCheck)
class ModelHealthCheckAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Per-model history: filter by model, result and date."""

    list_display = (
        "checked_at",
        "model",
        "ok",
        "ping_ok",
        "latency_ms",
        "error_code",
        "ping_cost",
        "endpoints_up",
        "endpoints_total",
        "best_uptime",
        "pinged",
        "http_status",
        "run",
    )
    list_filter = (CheckedModelFilter, "ok", "pinged", "error_code")
    search_fields = ("=model__id",)
    date_hierarchy = "checked_at"
    list_select_related = ("model", "run")
    show_full_result_count = False

    @admin.display(description="ping cost", ordering="ping_cost_usd")
    def ping_cost(self, check: ModelHealthCheck) -> str:
        return usd_html(check.ping_cost_usd)


@admin.register(ModelReliability)
class ModelReliabilityAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "model",
        "reliability_percent",
        "consecutive_failures",
        "last_error",
        "last_checked_at",
        "last_ok_at",
        "checks_count",
        "history",
    )
    list_filter = ("consecutive_failures",)
    search_fields = ("model__id",)
    list_select_related = ("model",)
    actions = ("run_checks",)

    @admin.display(description="reliability", ordering="reliability")
    def reliability_percent(self, row: ModelReliability) -> str:
        return f"{row.reliability:.0%}"

    @admin.display(description="checks")
    def history(self, row: ModelReliability) -> str:
        url = reverse("admin:health_modelhealthcheck_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?model={}">history</a>', url, row.model_id)

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERMISSION)

    @admin.action(description="Run health checks now for the selected models", permissions=["run"])
    def run_checks(self, request: HttpRequest, queryset) -> None:
        model_ids = list(queryset.values_list("model_id", flat=True))
        task_id = queue_health_checks(model_ids)
        self.message_user(
            request,
            f"Health checks of {len(model_ids)} model{'s' if len(model_ids) != 1 else ''} queued (task {task_id}); "
            "the results appear under Health check runs.",
            messages.SUCCESS,
        )
