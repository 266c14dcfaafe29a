"""Health in the admin: runs with their checks, each model's history, reliability, and a
"Run health checks now" button that queues the same task the hourly schedule runs."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path

from llmhive_site.admin_mixins import ReadOnlyMixin
from health.models import HealthCheckRun, ModelHealthCheck, ModelReliability


class CheckInline(ReadOnlyMixin, admin.TabularInline):
    model = ModelHealthCheck
    fields = ("model", "ok", "endpoints_up", "endpoints_total", "best_uptime", "pinged", "ping_ok", "latency_ms",
              "http_status", "error_code", "ping_cost_usd")
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(HealthCheckRun)
class HealthCheckRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("started_at", "trigger", "status", "models_checked", "models_failed", "pinged", "ping_spend_usd", "note")
    list_filter = ("status", "trigger")
    date_hierarchy = "started_at"
    inlines = (CheckInline,)
    change_list_template = "admin/health/healthcheckrun/change_list.html"

    def get_urls(self):
        run_now = path("run-now/", self.admin_site.admin_view(self.run_now_view), name="health_run_now")
        return [run_now, *super().get_urls()]

    def run_now_view(self, request: HttpRequest):
        """POST: queue the health checks (what the hourly schedule runs) and come back."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        queue_health_checks(self, request)
        return redirect("admin:health_healthcheckrun_changelist")


@admin.register(ModelHealthCheck)
class ModelHealthCheckAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Per-model history: filter by model (search), result, and date."""

    list_display = ("checked_at", "model", "ok", "endpoints_up", "endpoints_total", "best_uptime", "pinged",
                    "ping_ok", "latency_ms", "error_code", "ping_cost_usd")
    list_filter = ("ok", "pinged", "error_code")
    search_fields = ("=model__id",)
    date_hierarchy = "checked_at"
    list_select_related = ("model",)
    show_full_result_count = False


@admin.register(ModelReliability)
class ModelReliabilityAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("model", "reliability_percent", "consecutive_failures", "checks_count", "last_checked_at",
                    "last_ok_at", "last_error")
    list_filter = ("consecutive_failures",)
    search_fields = ("model__id",)
    list_select_related = ("model",)

    @admin.display(description="reliability", ordering="reliability")
    def reliability_percent(self, row: ModelReliability) -> str:
        return f"{row.reliability:.0%}"


def queue_health_checks(model_admin, request: HttpRequest) -> str:
    from django_q.tasks import async_task

    task_id = async_task("health.tasks.run_health_checks_task", trigger="admin", task_name="health checks (admin)")
    model_admin.message_user(
        request, f"Health checks queued (task {task_id}); the results appear under Health check runs.", messages.SUCCESS
    )
    return task_id
