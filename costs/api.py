"""Usage ingest, cost reports and budgets."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import ROUND_HALF_EVEN, Decimal

from ninja import Field, Router, Schema
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationInfo, field_validator

from costs.budgets import budget_statuses
from costs.ingest import ingest_events
from llmhive_site.auth import require

router = Router(tags=["usage and costs"])
USAGE_WRITE = require("usage:write")
COSTS_READ = require("costs:read")

MAX_BATCH = 1_000
# Reports from a clock a little ahead are fine; a day ahead is a bug in the caller.
MAX_CLOCK_SKEW = timedelta(minutes=5)
COST_QUANTUM = Decimal("1e-14")


# Plain pydantic models, not ninja Schemas: a batch holds 1,000 events, and ninja's Schema adds a
# Python-level validator per object that costs more than the whole insert.
class UsageEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200, description="idempotency key: a repeat is counted, not stored")
    occurred_at: AwareDatetime = Field(description="ISO 8601 with a timezone")
    model: str = Field(min_length=1, max_length=200, description="a catalog id or the canonical slug OpenRouter answered with")
    role: str = Field("", max_length=100)
    strategy: str = Field("", max_length=100)
    category: str = Field("", max_length=100)
    decision_id: str = Field("", max_length=100)
    prompt_tokens: int = Field(0, ge=0, le=2_000_000_000)
    completion_tokens: int = Field(0, ge=0, le=2_000_000_000, description="reasoning tokens included, as OpenRouter counts them")
    reasoning_tokens: int = Field(0, ge=0, le=2_000_000_000)
    cached_tokens: int = Field(0, ge=0, le=2_000_000_000, description="prompt tokens read from the cache")
    cache_write_tokens: int = Field(0, ge=0, le=2_000_000_000, description="prompt tokens written to the cache")
    cost_usd: Decimal | None = Field(None, ge=0, lt=Decimal("1e9"), description="OpenRouter's usage.cost, if known")
    success: bool
    quality_score: float | None = Field(None, ge=0, le=1)
    latency_ms: int | None = Field(None, ge=0, le=2_000_000_000)
    escalation_depth: int = Field(0, ge=0, le=100)
    tools: list[str] = Field(default_factory=list, max_length=100)
    generation_id: str = Field("", max_length=100)

    @field_validator("occurred_at")
    @classmethod
    def not_in_the_future(cls, value: datetime) -> datetime:
        if value > datetime.now(dt_timezone.utc) + MAX_CLOCK_SKEW:
            raise ValueError("is in the future")
        return value

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
            raise ValueError(f"must not exceed completion_tokens ({completion}): reasoning tokens are counted inside them")
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


@router.post("/usage", response=UsageOut, auth=USAGE_WRITE, summary="Report usage events (batch of up to 1,000)")
def report_usage(request, payload: UsageBatchIn):
    """The batch is validated whole: one bad event is a 422 naming its index and field, and
    nothing is stored. A good batch is stored in one transaction; repeated request_ids are
    counted as duplicates, also when two clients send them at the same moment."""
    result = ingest_events([event.model_dump() for event in payload.events])
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


def money_str(value: Decimal) -> str:
    """Exact decimal string without exponent: '12.5', '0.00074375', '0'."""
    return format(value.normalize(), "f")


@router.get("/budgets", response=list[BudgetOut], auth=COSTS_READ, summary="Budgets with spend and state in the current window")
def list_budgets(request):
    rows = []
    for status in budget_statuses():
        row = status.as_dict()
        for key in ("limit_usd", "soft_limit_usd", "spent_usd", "remaining_usd"):
            row[key] = money_str(row[key])
        rows.append(row)
    return rows
