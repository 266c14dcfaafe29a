"""Costs in the admin, for finance and admins: the ledger (read-only), daily costs with a CSV
export and a chart, budgets with their spend and state, and the checks of each event against
OpenRouter's record of its generation (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property
from django.utils.html import format_html
from import_export import fields, resources
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV

from core.admin_mixins import ReadOnlyMixin
from core.money import decimal_str, usd_html
from costs.budgets import budget_statuses
from costs.charts import cost_chart_svg
from costs.csvsafe import escape_cell
from costs.models import ERROR_COUNTERS, Budget, BudgetState, DailyCost, GenerationCheck, UsageEvent, error_summary


class EstimatedCountPaginator(Paginator):
    """COUNT(*) over a million-row ledger costs more than the page: on PostgreSQL an unfiltered
    list uses the planner's estimate (pg_class.reltuples) once the table is large."""

    EXACT_BELOW = 100_000

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [self.object_list.model._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] >= self.EXACT_BELOW:
                return int(row[0])
        return super().count


class RollupValuesFilter(admin.SimpleListFilter):
    """A filter whose choices come from the daily rollup (a few thousand rows), not from a
    DISTINCT over every event."""

    def lookups(self, request, model_admin):
        values = DailyCost.objects.order_by(self.parameter_name).values_list(self.parameter_name, flat=True).distinct()
        return [(value, value or "(none)") for value in values]

    def queryset(self, request, queryset):
        if self.value() is not None:
            return queryset.filter(**{self.parameter_name: self.value()})
        return queryset


class StrategyFilter(RollupValuesFilter):
    title = parameter_name = "strategy"


class RoleFilter(RollupValuesFilter):
    title = parameter_name = "role"


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The ledger is append-only: it is read here, never edited. At a million events the page
    stays quick: no COUNT(*) when unfiltered, filter choices and the date hierarchy from the
    daily rollup."""

    list_display = (
        "occurred_at",
        "model_ref",
        "role",
        "strategy",
        "success",
        "cost",
        "computed_cost",
        "error",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
    )
    list_filter = ("success", "error", StrategyFilter, RoleFilter)
    change_list_template = "admin/costs/usageevent/change_list.html"
    search_fields = ("=request_id", "=model_ref", "=decision_id")
    date_hierarchy = "occurred_at"
    ordering = ("-occurred_at",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="cost (reported)", ordering="cost_usd")
    def cost(self, event: UsageEvent) -> str:
        return usd_html(event.cost_usd)

    @admin.display(description="cost (computed)", ordering="computed_cost_usd")
    def computed_cost(self, event: UsageEvent) -> str:
        return usd_html(event.computed_cost_usd)


class DailyCostResource(resources.ModelResource):
    """Finance's CSV: day, model, strategy, role, requests, successes, tokens, cost, cost per
    success (empty when nothing was priced), unpriced requests, then failures per error class. Every string cell is escaped against formula injection (the library's own
    setting escapes only '=')."""

    tokens = fields.Field(column_name="tokens")
    cost = fields.Field(column_name="cost_usd")
    cost_per_success = fields.Field(column_name="cost_per_success_usd")

    class Meta:
        model = DailyCost
        fields = (
            "day",
            "model",
            "strategy",
            "role",
            "requests",
            "successes",
            "tokens",
            "cost",
            "cost_per_success",
            "unpriced_requests",
            *ERROR_COUNTERS,
        )
        export_order = fields

    def dehydrate_tokens(self, row: DailyCost) -> int:
        return row.tokens

    def dehydrate_cost(self, row: DailyCost) -> str:
        return decimal_str(row.cost_usd)

    def dehydrate_cost_per_success(self, row: DailyCost) -> str:
        return decimal_str(row.cost_per_success_usd)

    def export_field(self, field, instance, **kwargs):
        return escape_cell(super().export_field(field, instance, **kwargs))


@admin.register(DailyCost)
class DailyCostAdmin(ReadOnlyMixin, ExportMixin, admin.ModelAdmin):
    resource_classes = [DailyCostResource]
    formats = [CSV]
    list_display = (
        "day",
        "model",
        "strategy",
        "role",
        "requests",
        "successes",
        "cost",
        "per_success",
        "errors",
        "drift",
        "tokens",
    )
    list_filter = ("strategy", "role")
    search_fields = ("model",)
    date_hierarchy = "day"
    show_full_result_count = False
    list_per_page = 100
    change_list_template = "admin/costs/dailycost/change_list.html"

    @admin.display(description="tokens")
    def tokens(self, row: DailyCost) -> int:
        return row.tokens

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, row: DailyCost) -> str:
        return usd_html(row.cost_usd)

    @admin.display(description="per success")
    def per_success(self, row: DailyCost) -> str:
        return usd_html(row.cost_per_success_usd)

    @admin.display(description="failures by class")
    def errors(self, row: DailyCost) -> str:
        return error_summary(row)

    @admin.display(description="drift (reported − computed)")
    def drift(self, row: DailyCost) -> str:
        return usd_html(row.drift_usd) if row.reported_requests else "—"

    def changelist_view(self, request, extra_context=None):
        extra_context = {"cost_chart": cost_chart_svg(days=30), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "scope",
        "scope_value",
        "period",
        "limit",
        "spent",
        "remaining",
        "state",
        "forecast",
        "action",
        "active",
    )
    list_filter = ("scope", "period", "action", "active")
    search_fields = ("name", "scope_value")
    fields = (
        "name",
        "scope",
        "scope_value",
        "period",
        "limit_usd",
        "soft_limit_percent",
        "action",
        "forecast_lead_hours",
        "active",
    )

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # The page's active budgets with their spend in one aggregate query, not one per row. The
        # statuses ride on the rows: this ModelAdmin is shared by every request a worker serves.
        budgets = list(changelist.result_list)  # evaluated once; the template reuses these rows
        statuses = {status.budget.pk: status for status in budget_statuses([b for b in budgets if b.active])}
        for budget in budgets:
            budget.window_status = statuses.get(budget.pk)
        return changelist

    def _status(self, budget: Budget):
        return getattr(budget, "window_status", None)

    @admin.display(description="limit", ordering="limit_usd")
    def limit(self, budget: Budget) -> str:
        return usd_html(budget.limit_usd)

    @admin.display(description="spent this window")
    def spent(self, budget: Budget) -> str:
        status = self._status(budget)
        return usd_html(status.spent_usd) if status else "—"

    @admin.display(description="remaining")
    def remaining(self, budget: Budget) -> str:
        status = self._status(budget)
        return usd_html(status.remaining_usd) if status else "—"

    @admin.display(description="state")
    def state(self, budget: Budget) -> str:
        status = self._status(budget)
        return status.state if status else "inactive"

    @admin.display(description="forecast to run out")
    def forecast(self, budget: Budget) -> str:
        """When the budget runs out at its burn rate (costs.forecast), or why it is not forecast to."""
        status = self._status(budget)
        if status is None:
            return "—"
        forecast = status.forecast
        if forecast.exhausted_at is None:
            return "exhausted" if status.state == BudgetState.EXHAUSTED else f"not this {budget.period}"
        return format_html(
            '<span title="at {} USD/day">{} UTC</span>',
            decimal_str(forecast.burn_rate_usd_per_day),
            forecast.exhausted_at.strftime("%Y-%m-%d %H:%M"),
        )


class CheckedModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        values = GenerationCheck.objects.order_by("model").values_list("model", flat=True).distinct()
        return [(value, value) for value in values]

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value()) if self.value() is not None else queryset


@admin.register(GenerationCheck)
class GenerationCheckAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Written by `manage.py reconcile_costs` (hourly): read here, never edited."""

    list_display = (
        "checked_at",
        "model",
        "status",
        "ledger_cost",
        "openrouter_cost",
        "difference",
        "tokens",
        "attempts",
        "generation_id",
    )
    list_filter = ("status", CheckedModelFilter)
    search_fields = ("=generation_id", "=event__request_id")
    list_select_related = ("event",)
    date_hierarchy = "checked_at"
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="ledger cost", ordering="ledger_cost_usd")
    def ledger_cost(self, check: GenerationCheck) -> str:
        return usd_html(check.ledger_cost_usd)

    @admin.display(description="OpenRouter cost", ordering="openrouter_cost_usd")
    def openrouter_cost(self, check: GenerationCheck) -> str:
        return usd_html(check.openrouter_cost_usd)

    @admin.display(description="difference", ordering="difference_usd")
    def difference(self, check: GenerationCheck) -> str:
        return usd_html(check.difference_usd)

    @admin.display(description="tokens in / out (native vs ledger)")
    def tokens(self, check: GenerationCheck) -> str:
        if check.tokens_differ is None:
            return "—"
        native = f"{_count(check.native_prompt_tokens)} / {_count(check.native_completion_tokens)}"
        ledger = f"{check.event.prompt_tokens} / {check.event.completion_tokens}"
        return native if not check.tokens_differ else f"{native} vs {ledger}"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)
