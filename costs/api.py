"""Usage ingest, cost reports and budgets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Literal

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationInfo, field_validator

from core import metrics
from core.auth import require
from core.errors import ApiError, errors
from core.money import decimal_str
from costs import reconcile, reports
from costs.budgets import budget_statuses
from costs.ingest import IdempotencyConflict, ingest_events
from costs.models import ErrorClass
from costs.reports import Window

router = Router(tags=["usage and costs"])
USAGE_WRITE = require("usage:write")
COSTS_READ = require("costs:read")

MAX_BATCH = 1_000
# Reports from a clock a little ahead are fine; a day ahead is a bug in the caller.
MAX_CLOCK_SKEW = timedelta(minutes=5)
COST_QUANTUM = Decimal("1e-14")


def _recent_example(schema: dict) -> None:
    # The description's example is an instant inside the accepted window when the description is
    # built (the OpenAPI document is made per request), not a date that ages out of it.
    schema["examples"] = [(timezone.now() - timedelta(hours=1)).replace(microsecond=0).isoformat()]


# Plain pydantic models, not ninja Schemas: a batch holds 1,000 events, and ninja's Schema adds a
# Python-level validator per object that costs more than the whole insert.
class UsageEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1, max_length=200, description="idempotency key: a repeat is counted, not stored"
    )
    occurred_at: AwareDatetime = Field(
        description="ISO 8601 with a timezone; at most LLMHIVE_USAGE_MAX_AGE_DAYS (default 730) days old, "
        "and not more than 5 minutes ahead of the server's clock",
        json_schema_extra=_recent_example,
    )
    model: str = Field(
        min_length=1, max_length=200, description="a catalog id or the canonical slug OpenRouter answered with"
    )
    role: str = Field("", max_length=100)
    strategy: str = Field("", max_length=100)
    category: str = Field("", max_length=100)
    decision_id: str = Field("", max_length=100)
    prompt_tokens: int = Field(0, ge=0, le=2_000_000_000)
    completion_tokens: int = Field(
        0, ge=0, le=2_000_000_000, description="reasoning tokens included, as OpenRouter counts them"
    )
    reasoning_tokens: int = Field(0, ge=0, le=2_000_000_000)
    cached_tokens: int = Field(0, ge=0, le=2_000_000_000, description="prompt tokens read from the cache")
    cache_write_tokens: int = Field(0, ge=0, le=2_000_000_000, description="prompt tokens written to the cache")
    cost_usd: Decimal | None = Field(None, ge=0, lt=Decimal("1e9"), description="OpenRouter's usage.cost, if known")
    success: bool
    error: Literal["", *ErrorClass.values] = Field(  # type: ignore[valid-type]
        "",
        description="why the call failed, empty on success: rate_limited, provider_error and timeout are retryable "
        "and count toward the model's cooldown; context_length, content_filter, invalid_request, quality do not",
    )
    quality_score: float | None = Field(None, ge=0, le=1)
    latency_ms: int | None = Field(
        None,
        ge=0,
        le=2_000_000_000,
        description="the whole call's wall time as the orchestrator observed it, in milliseconds: from sending "
        "the request to receiving the last token (not the time to the first token)",
    )
    escalation_depth: int = Field(0, ge=0, le=100)
    tools: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=100)
    generation_id: str = Field("", max_length=100)

    @field_validator("error")
    @classmethod
    def only_on_failure(cls, value: str, info: ValidationInfo) -> str:
        if value and info.data.get("success"):
            raise ValueError("must be empty when success is true: an error class says why a call failed")
        return value

    @field_validator("occurred_at")
    @classmethod
    def within_the_accepted_window(cls, value: datetime) -> datetime:
        now = datetime.now(UTC)
        if value > now + MAX_CLOCK_SKEW:
            raise ValueError("is in the future")
        max_age = settings.LLMHIVE_USAGE_MAX_AGE_DAYS
        # Compared before any arithmetic on the value: year 1 minus an offset is out of range.
        if value < now - timedelta(days=max_age):
            raise ValueError(f"is more than {max_age} days old (LLMHIVE_USAGE_MAX_AGE_DAYS)")
        return value

    @field_validator("occurred_at")
    @classmethod
    def in_utc(cls, value: datetime) -> datetime:
        # ISO 8601 allows offsets up to ±23:59, PostgreSQL holds ±15:59: the instant is what
        # counts, so it is stored in UTC.
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None

    @field_validator("cost_usd")
    @classmethod
    def fourteen_decimals(cls, value: Decimal | None) -> Decimal | None:
        # usage.cost arrives as a JSON float (1.255e-05): keep what the ledger can hold exactly.
        return None if value is None else value.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)

    @field_validator("reasoning_tokens")
    @classmethod
    def reasoning_within_completion(cls, value: int, info: ValidationInfo) -> int:
        completion = info.data.get("completion_tokens")
        if completion is not None and value > completion:
            raise ValueError(
                f"must not exceed completion_tokens ({completion}): reasoning tokens are counted inside them"
            )
        return value

    @field_validator("cache_write_tokens")
    @classmethod
    def cache_within_prompt(cls, value: int, info: ValidationInfo) -> int:
        prompt, cached = info.data.get("prompt_tokens"), info.data.get("cached_tokens")
        if prompt is not None and cached is not None and cached + value > prompt:
            raise ValueError(f"cached_tokens + cache_write_tokens must not exceed prompt_tokens ({prompt})")
        return value


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[UsageEventIn] = Field(min_length=1, max_length=MAX_BATCH)


class UsageOut(Schema):
    accepted: int = Field(description="events stored now")
    duplicates: int = Field(description="events whose request_id was already stored (or repeated in the batch)")
    unknown_models: list[str] = Field(description="reported models not in the catalog (stored, alerted)")
    unpriced_models: list[str] = Field(description="models with neither a reported cost nor a usable price (alerted)")


@router.post(
    "/usage",
    response={200: UsageOut, **errors(400, 401, 403, 409, 413, 422, 503)},
    auth=USAGE_WRITE,
    summary="Report usage events (batch of up to 1,000)",
)
def report_usage(request, payload: UsageBatchIn):
    """The batch is validated whole: one bad event is a 422 naming its index and field, and
    nothing is stored. A good batch is stored in one transaction; repeated request_ids are
    counted as duplicates, also when two clients send them at the same moment. A request_id
    sent again with a different payload is a 409 `idempotency_conflict` naming the ids, and
    nothing of that batch is stored."""
    try:
        result = ingest_events([event.model_dump() for event in payload.events])
    except IdempotencyConflict as conflict:
        raise ApiError(409, "idempotency_conflict", str(conflict), request_ids=conflict.request_ids) from None
    metrics.usage_api_events.labels(result="stored").inc(result.accepted)
    metrics.usage_api_events.labels(result="duplicate").inc(result.duplicates)
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "unknown_models": result.unknown_models,
        "unpriced_models": result.unpriced_models,
    }


class BudgetOut(Schema):
    id: int
    name: str
    scope: str
    scope_value: str
    period: str
    window_start: date
    window_end: date = Field(description="the first day after the window")
    limit_usd: str
    soft_limit_usd: str
    spent_usd: str
    remaining_usd: str
    state: str
    action: str
    burn_rate_usd_per_day: str = Field(
        description="the scope's mean daily spend over the last LLMHIVE_BUDGET_FORECAST_DAYS complete UTC days "
        "and today so far"
    )
    forecast_exhausted_at: datetime | None = Field(
        description="when the remaining amount runs out at that rate (UTC); null when the window ends first, "
        "nothing is spent, or the budget is already exhausted"
    )


@router.get(
    "/budgets",
    response={200: list[BudgetOut], **errors(401, 403)},
    auth=COSTS_READ,
    summary="Budgets with spend and state in the current window",
)
def list_budgets(request):
    rows = []
    for status in budget_statuses():
        row = status.as_dict()
        for key in ("limit_usd", "soft_limit_usd", "spent_usd", "remaining_usd", "burn_rate_usd_per_day"):
            row[key] = decimal_str(row[key])
        rows.append(row)
    return rows


# --- Reports -------------------------------------------------------------------------------------

MAX_REPORT_DAYS = 366
# Nothing is reported before 2000; the bounds keep the window's arithmetic (a default start 29
# days before the end, the day after the end) inside what a date can hold.
EARLIEST_REPORT_DAY = date(2000, 1, 1)
LATEST_REPORT_DAY = date(2999, 12, 31)
GroupBy = Literal["day", "model", "strategy", "role"]


class ReportFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: date | None = Field(
        None,
        ge=EARLIEST_REPORT_DAY,
        le=LATEST_REPORT_DAY,
        description="first UTC day (default: 29 days before end), from 2000-01-01 to 2999-12-31",
    )
    end: date | None = Field(
        None,
        ge=EARLIEST_REPORT_DAY,
        le=LATEST_REPORT_DAY,
        description="last UTC day, included (default: today), from 2000-01-01 to 2999-12-31",
    )
    model: str | None = Field(None, max_length=200)
    strategy: str | None = Field(None, max_length=100)
    role: str | None = Field(None, max_length=100)

    def window(self) -> Window:
        end = self.end or timezone.now().date()
        start = self.start or end - timedelta(days=29)
        if start > end:
            raise ApiError(
                422,
                "invalid",
                "start: must not be after end",
                errors=[{"in": "query", "field": "start", "message": "must not be after end", "type": "value_error"}],
            )
        if (end - start).days + 1 > MAX_REPORT_DAYS:
            raise ApiError(
                422,
                "invalid",
                f"end: a window holds at most {MAX_REPORT_DAYS} days",
                errors=[
                    {
                        "in": "query",
                        "field": "end",
                        "message": f"a window holds at most {MAX_REPORT_DAYS} days",
                        "type": "value_error",
                    }
                ],
            )
        return Window(start, end)

    def keys(self) -> dict[str, str | None]:
        return {"model": self.model, "strategy": self.strategy, "role": self.role}


class GroupedFilters(ReportFilters):
    group_by: GroupBy | None = Field(
        None, description="one row per day and model, strategy or role; per day when absent or `day`"
    )


class SummaryFilters(ReportFilters):
    group_by: GroupBy = "model"


class ExportFilters(ReportFilters):
    level: Literal["daily", "events"] = Field("daily", description="daily rollup rows, or every ledger event")


class TelemetryFilters(ReportFilters):
    by: Literal["strategy", "model", "tool"] = "strategy"


class Figures(BaseModel):
    requests: int
    successes: int
    success_rate: float | None
    tokens: int
    cost_usd: str
    cost_per_success_usd: str | None
    reported_requests: int = Field(description="events that carried OpenRouter's cost")
    drift_usd: str = Field(description="reported minus computed cost over those events")
    unpriced_requests: int = Field(description="events with no reported cost and no usable price: not counted as free")
    latency_ms_mean: float | None
    errors: dict[str, int] = Field(
        description="failed requests per error class (every class, 0 when none); a failure reported without a class "
        "is in none"
    )


class DailyRow(Figures):
    day: date
    key: str | None


class SummaryRow(Figures):
    key: str


class SummaryOut(BaseModel):
    start: date
    end: date
    group_by: str
    total: Figures
    rows: list[SummaryRow] = Field(description="one row per `group_by` key (a day as YYYY-MM-DD)")
    by_model: list[SummaryRow]
    by_strategy: list[SummaryRow]


class TelemetryRow(BaseModel):
    key: str
    requests: int
    successes: int
    success_rate: float | None
    cost_usd: str
    cost_per_success_usd: str | None
    unpriced_requests: int
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    errors: dict[str, int] = Field(description="failed requests per error class (every class, 0 when none)")


class TelemetryOut(BaseModel):
    start: date
    end: date
    by: str
    rows: list[TelemetryRow]


def _money_fields(row: dict) -> dict:
    """Money as exact strings: sums of the ledger's 14-decimal amounts are exact; a cost per
    success is rounded (half even) to the ledger's 14 decimals."""
    for key in ("cost_usd", "cost_per_success_usd", "drift_usd"):
        if row.get(key) is not None:
            row[key] = decimal_str(row[key].quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN))
    return row


@router.get(
    "/costs/daily",
    response={200: list[DailyRow], **errors(401, 403, 422)},
    auth=COSTS_READ,
    summary="Cost per UTC day, optionally per model, strategy or role",
)
def costs_daily(request, filters: Query[GroupedFilters]):
    """From the DailyCost rollup (kept current on ingest): reported cost where OpenRouter gave
    one, computed from the prices in force otherwise; `drift_usd` shows how far they differ."""
    return [_money_fields(row) for row in reports.daily(filters.window(), filters.group_by, filters.keys())]


@router.get(
    "/costs/summary",
    response={200: SummaryOut, **errors(401, 403, 422)},
    auth=COSTS_READ,
    summary="Totals per model, strategy or role, with success rate and cost per success",
)
def costs_summary(request, filters: Query[SummaryFilters]):
    result = reports.summary(filters.window(), filters.group_by, filters.keys())
    result["total"] = _money_fields(result["total"])
    for breakdown in ("rows", "by_model", "by_strategy"):
        result[breakdown] = [_money_fields(row) for row in result[breakdown]]
    return result


@router.get(
    "/costs/export.csv",
    auth=COSTS_READ,
    summary="The daily cost rows (or every event) as streamed CSV",
    response={200: None, **errors(401, 403, 422)},
)
def costs_export(request, filters: Query[ExportFilters]):
    """Streamed from a server-side cursor: memory does not grow with the window. Cells that a
    spreadsheet would run as a formula (= + - @ tab CR) are escaped with a leading quote."""
    window = filters.window()
    if filters.level == "events":
        lines = reports.csv_lines(reports.EVENT_COLUMNS, reports.event_csv_rows(window, filters.keys()))
    else:
        lines = reports.csv_lines(reports.DAILY_COLUMNS, reports.daily_csv_rows(window, filters.keys()))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    name = f"llmhive-{'events' if filters.level == 'events' else 'daily-costs'}-{window.start}-{window.end}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@router.get(
    "/telemetry/summary",
    response={200: TelemetryOut, **errors(401, 403, 422)},
    auth=COSTS_READ,
    summary="Per strategy, model or tool: requests, success rate, cost, latency p50/p95",
)
def telemetry_summary(request, filters: Query[TelemetryFilters]):
    """From the ledger (percentiles need every latency in the window), with the same window and
    filters as the cost reports; an event counts once for each tool it used."""
    window = filters.window()
    rows = [_money_fields(row) for row in reports.telemetry(window, filters.by, filters.keys())]
    return {"start": window.start, "end": window.end, "by": filters.by, "rows": rows}


# --- Reconciliation with OpenRouter --------------------------------------------------------------


class ReconciliationFilters(ReportFilters):
    largest: int = Field(10, ge=0, le=100, description="how many of the largest drifts to list")


class ReconciliationFigures(BaseModel):
    checked: int = Field(description="events checked against OpenRouter's record of their generation")
    matched: int
    drift: int
    pending: int = Field(description="OpenRouter does not know the generation yet: asked again on the next run")
    not_found: int
    error: int
    ledger_cost_usd: str = Field(
        description="the ledger's cost (reported, else computed) of the events OpenRouter costed"
    )
    openrouter_cost_usd: str = Field(description="OpenRouter's total_cost of those events")
    difference_usd: str = Field(description="OpenRouter's cost minus the ledger's")


class ReconciliationRow(ReconciliationFigures):
    model: str


class ReconciliationDrift(BaseModel):
    request_id: str
    generation_id: str
    model: str
    ledger_cost_usd: str | None
    openrouter_cost_usd: str | None
    difference_usd: str | None


class ReconciliationOut(BaseModel):
    start: date
    end: date
    total: ReconciliationFigures
    models: list[ReconciliationRow]
    largest_drifts: list[ReconciliationDrift]


@router.get(
    "/costs/reconciliation",
    response={200: ReconciliationOut, **errors(401, 403, 422)},
    auth=COSTS_READ,
    summary="The ledger's cost against OpenRouter's record of each generation, per model",
)
def costs_reconciliation(request, filters: Query[ReconciliationFilters]):
    """From the checks of `manage.py reconcile_costs` (hourly), over the events that occurred in
    the window, with the cost reports' filters. Money as exact decimal strings; the largest
    drifts by size, whichever way."""
    window = filters.window()
    report = reconcile.drift_report(window.start, window.end, filters.keys(), filters.largest)
    return {
        "start": report["start"],
        "end": report["end"],
        "total": reconcile.money_strings(report["total"]),
        "models": [reconcile.money_strings(row) for row in report["models"]],
        "largest_drifts": [reconcile.money_strings(row) for row in report["largest_drifts"]],
    }
