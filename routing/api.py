"""The routing API: route, escalate, internal rankings."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from functools import wraps
from time import perf_counter
from typing import Literal

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from ninja import Field, Query, Router, Schema
from ninja.decorators import decorate_view
from pydantic import BaseModel, ConfigDict

from catalog.categories import record_categories
from catalog.models import CAPABILITIES, CategorySource
from core import metrics
from core.auth import any_key, require
from core.errors import ApiError, errors
from core.models import version_watch
from core.money import decimal_str
from routing.decision import EscalateRequest, RouteRequest, RoutingError, check_category, decide, escalate
from routing.scoring import internal_rankings
from routing.snapshot import current_snapshot

logger = logging.getLogger(__name__)

router = Router(tags=["routing"])
ROUTE = require("route")

Capability = Literal[CAPABILITIES]  # type: ignore[valid-type]
AccuracyName = Literal["high", "balanced", "economy"]


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=64, examples=["coder"])
    category: str | None = Field(
        None, max_length=64, description="an active OpenRouter category (else 422); default: the role's"
    )
    accuracy: AccuracyName | None = Field(None, description="default: the role's (balanced unless set)")
    required_capabilities: list[Capability] = Field(default_factory=list)
    min_context_length: int | None = Field(None, ge=0, le=2_147_483_647)
    estimated_input_tokens: int | None = Field(None, ge=0, le=10_000_000)
    estimated_output_tokens: int | None = Field(None, ge=0, le=10_000_000)
    max_cost_usd: Decimal | None = Field(None, ge=0, le=Decimal("1e9"), description="the most this request may cost")
    strategy: str | None = Field(None, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=500)
    fallback_count: int = Field(2, ge=0, le=5)
    optimize: Literal["quality", "cost", "latency"] | None = Field(
        None,
        description=(
            "what to favour: `latency` weighs the expected time to the last token (the latency seen in "
            "the ledger, else OpenRouter's endpoint latency, plus the output at the endpoint's throughput); "
            "`quality` and `cost` default `accuracy` to high and economy"
        ),
    )


class KeyOut(BaseModel):
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime


@router.get(
    "/key",
    response={200: KeyOut, **errors(401)},
    auth=any_key,
    summary="The API key you call with: its name and scopes",
)
def whoami(request):
    """Lets a client check at start-up that its key is live and has the scopes it needs. Answers
    from the per-process key cache: no query (so it answers while the database is away, too)."""
    key = request.auth
    return {"name": key.name, "prefix": key.prefix, "scopes": key.scopes, "created_at": key.created_at}


class RouteBudgetOut(BaseModel):
    """The budget that applies to this decision (the costs API's BudgetOut lists every budget)."""

    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    scope: str
    scope_value: str
    limit_usd: str
    spent_usd: str
    remaining_usd: str
    state: Literal["ok", "soft_limit", "exhausted"]
    action: str


class CandidateOut(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    model: str
    score: float
    preferred: bool
    estimated_cost_usd: str | None
    parts: dict


class StrategyOut(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    strategy: str
    success_rate: float
    samples: int
    cost_per_request_usd: str = Field(description="the mean cost of a request with this strategy, in USD")


class MaxPriceOut(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    prompt: str = Field(description="USD per million prompt tokens")
    completion: str = Field(description="USD per million completion tokens")
    request: str = Field(description="USD per request")


class ProviderOut(BaseModel):
    """OpenRouter's provider preferences (`ProviderPreferences` in its OpenAPI description): only
    the keys the role sets in the admin, plus max_price when the request gives max_cost_usd."""

    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    sort: Literal["price", "throughput", "latency"] | None = None
    order: list[str] | None = Field(None, description="provider slugs, tried in this order")
    only: list[str] | None = Field(None, description="the provider slugs allowed")
    ignore: list[str] | None = Field(None, description="provider slugs never used")
    allow_fallbacks: bool | None = None
    require_parameters: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    zdr: bool | None = None
    quantizations: list[str] | None = None
    preferred_max_latency: float | None = Field(None, description="the role's latency ceiling, in seconds")
    max_price: MaxPriceOut | None = Field(
        None,
        description="from max_cost_usd: the chosen model's prices scaled by max_cost_usd / estimated_cost_usd "
        "(rounded down, never under its own prices), so that any endpoint within them keeps this request, "
        "at its estimated tokens, within the cap (fallbacks priced above them are refused by OpenRouter)",
    )


class RouteOut(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    model: str
    fallbacks: list[str] = Field(description="ready for OpenRouter's models[] after model")
    escalation: list[str] = Field(description="what to try, in order, if the model fails")
    estimated_cost_usd: str | None
    budget: RouteBudgetOut | None
    downgraded: str | None = Field(None, description="why the decision was moved toward cheaper models, if it was")
    source: Literal["catalog", "bootstrap"]
    decision_id: str
    explored: bool = Field(
        description="true when the role's exploration chose another model than the best-scored one (see Role.exploration_rate)"
    )
    candidates: list[CandidateOut]
    catalog_version: str
    category: str | None
    accuracy: str
    recommended_strategy: StrategyOut | None
    provider: ProviderOut | None = Field(
        description="pass unchanged as `provider` in OpenRouter's chat completion; null when there is nothing to say"
    )
    degraded: bool = Field(
        description="true while the database is unreachable: the answer comes from this worker's last snapshot"
    )


def _money(value):
    return decimal_str(value) if isinstance(value, Decimal) else value


def _note_unknown_category(error: RoutingError, category: str | None) -> None:
    """A category the catalog does not route on is proposed to the curators (catalog.categories:
    at most one write a minute per slug and process, none for adopted or retired ones). Only
    refusals get here, so a request for a known category costs no query; and a refusal stays a
    422 when the database is away."""
    if error.code != "unknown_category" or not category:
        return
    try:
        record_categories([category], CategorySource.ROUTE)
    except DatabaseError:
        logger.warning("could not record the unknown category %r", category, exc_info=True)


def _as_api_error(error: RoutingError) -> ApiError:
    extra = dict(error.extra)
    if extra.get("budget"):
        extra["budget"] = {k: _money(v) for k, v in extra["budget"].items()}
    return ApiError(error.status, error.code, error.detail, **extra)


def fast_json(data: dict) -> HttpResponse:
    """The hot endpoints' answer, serialised by orjson.

    The view builds exactly the response schema (declared for the OpenAPI document, and checked
    against the answers in tests/routing); re-validating it and encoding it with the standard
    library would cost about as much as the decision itself.
    """
    return HttpResponse(orjson.dumps(data, default=_json_default), content_type="application/json")


# What changes between two calls given the same kept answer: written per call, before the rest.
PER_CALL = ("decision_id", "catalog_version", "degraded")


def route_json(answer: dict, degraded: bool) -> HttpResponse:
    """/route's answer as JSON. A kept answer (routing.decision.ANSWERS_KEPT) is encoded once:
    each call writes its decision_id, the snapshot's version and `degraded`, then the rest as
    kept. (Decimals are written as decimal strings; the answer itself is not changed.)"""
    kept = getattr(answer, "kept", None)
    if kept is None:
        return fast_json({**answer, "degraded": degraded})
    body = kept.body
    if body is None:
        body = kept.body = orjson.dumps(
            {k: v for k, v in kept.answer.items() if k not in PER_CALL}, default=_json_default
        )
    head = orjson.dumps(
        {"decision_id": answer["decision_id"], "catalog_version": answer["catalog_version"], "degraded": degraded}
    )
    return HttpResponse(head[:-1] + b"," + body[1:], content_type="application/json")


def _json_default(value):
    if isinstance(value, Decimal):
        return decimal_str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def counted(run):
    """Count every /route call by result and time it, whatever answered it: ninja's key check
    and validation run inside the operation this wraps, so a 401 or a 422 for a bad body is
    counted too (as `unauthorized`, `invalid`)."""

    @wraps(run)
    def counted_run(request, *args, **kwargs):
        start = perf_counter()
        status = 500  # an exception ninja did not turn into an answer: Django's 500
        try:
            response = run(request, *args, **kwargs)
            status = response.status_code
            return response
        finally:
            metrics.route_decision_seconds.observe(perf_counter() - start)
            result = getattr(request, "route_result", None)
            if status >= 500:
                result = "error"
            elif result not in metrics.ROUTE_RESULTS:
                result = "unauthorized" if status in (401, 403) else "invalid"
            metrics.route_decisions_by_result[result].inc()

    return counted_run


@router.post(
    "/route",
    response={200: RouteOut, **errors(400, 401, 402, 403, 404, 413, 422, 503)},
    auth=ROUTE,
    summary="Which model, now?",
)
@decorate_view(counted)
def route(request, payload: RouteIn):
    """Choose a model for one call, with fallbacks, the escalation chain and the score of each
    candidate weighed. 404 for an unknown role; 422 `unknown_category` (with the `known` ones) for
    a category that is not active; 422 `no_eligible_model` with the count rejected per reason; 402 `budget_exhausted` when a blocking budget is spent. With the database
    unreachable it still answers, from the last snapshot, with `degraded: true`."""
    try:
        answer = decide(RouteRequest(**payload.model_dump()))
    except RoutingError as error:
        request.route_result = error.code
        _note_unknown_category(error, payload.category)
        raise _as_api_error(error) from None
    degraded = version_watch.degraded
    if degraded:
        request.route_result = "degraded"
    else:
        request.route_result = "bootstrap" if answer["source"] == "bootstrap" else "ok"
    return route_json(answer, degraded)


class EscalateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=64, examples=["coder"])
    # The example is the bootstrap list's first model: no model id is written in routing code.
    failed_model: str = Field(min_length=1, max_length=200, examples=settings.BOOTSTRAP_FALLBACK_MODELS[:1])
    reason: str = Field("", max_length=200)
    category: str | None = Field(None, max_length=64)
    strategy: str | None = Field(None, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=500)
    estimated_input_tokens: int | None = Field(None, ge=0, le=10_000_000)
    estimated_output_tokens: int | None = Field(None, ge=0, le=10_000_000)
    max_cost_usd: Decimal | None = Field(
        None, ge=0, le=Decimal("1e9"), description="the most the next call may cost: dearer models are not offered"
    )


class EscalationStepOut(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    model: str
    source: Literal["override", "dynamic"]


class EscalateOut(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the answer is built by hand: hold it to the schema

    model: str | None = Field(description="null when nothing is left")
    chain: list[str]
    steps: list[EscalationStepOut] = Field(description="the chain, each step with where it came from")
    source: Literal["override", "dynamic"] | None
    catalog_version: str
    degraded: bool = Field(
        description="true while the database is unreachable: the answer comes from this worker's last snapshot"
    )


@router.post(
    "/escalate",
    response={200: EscalateOut, **errors(400, 401, 402, 403, 404, 413, 422, 503)},
    auth=ROUTE,
    summary="The model to try after one failed",
)
def escalate_view(request, payload: EscalateIn):
    """Overrides first (for the model, then its family; role-specific before general), then
    dynamic: eligible models of higher quality, reasoning-capable first, cheaper first among
    equals. Never the failed or an excluded model, a model over `max_cost_usd`, or one the role
    cannot use; no repeats, no cycles. 404 `unknown_model` when the failed model is not in the
    catalog; 422 `unknown_category` for a category that is not active. With the database
    unreachable it still answers, from the last snapshot, with `degraded: true`."""
    try:
        answer = escalate(EscalateRequest(**payload.model_dump()))
    except RoutingError as error:
        _note_unknown_category(error, payload.category)
        raise _as_api_error(error) from None
    answer["degraded"] = version_watch.degraded
    return fast_json(answer)


class RankingFilters(Schema):
    role: str | None = Field(None, max_length=100, description="outcomes for this role only")
    category: str | None = Field(
        None, max_length=100, description="outcomes for this category, beside OpenRouter's ranking of it"
    )
    min_samples: int = Field(1, ge=0, le=1_000_000_000)
    limit: int = Field(50, ge=1, le=500)


class InternalRankingOut(Schema):
    rank: int
    model: str
    requests: int
    successes: int
    success_rate: float | None
    learned_quality: float = Field(description="success rate shrunk toward the prior while samples are few")
    openrouter_rank: int | None = Field(description="the model's rank in OpenRouter's ranking of the category")
    cost_per_success_usd: str | None = Field(description="the cost of the outcomes over their successes, in USD")


class RankingsOut(Schema):
    role: str | None
    category: str | None
    items: list[InternalRankingOut]


@router.get(
    "/rankings",
    response={200: RankingsOut, **errors(401, 403, 404, 422)},
    auth=ROUTE,
    summary="Internal rankings from outcomes, beside OpenRouter's",
)
def rankings(request, filters: Query[RankingFilters]):
    """Models by learned quality from the outcomes reported. 404 for an unknown role; 422
    `unknown_category` (with the `known` ones) for a category that is not active."""
    snap = current_snapshot()
    if filters.role and filters.role not in snap.roles:
        raise ApiError(404, "unknown_role", f"No active role '{filters.role}'.")
    try:
        check_category(snap, filters.category, where="query")
    except RoutingError as error:
        raise _as_api_error(error) from None
    rows = internal_rankings(
        snap, role=filters.role, category=filters.category, min_samples=filters.min_samples, limit=filters.limit
    )
    for row in rows:
        row["cost_per_success_usd"] = decimal_str(row["cost_per_success_usd"])
    return {"role": filters.role, "category": filters.category, "items": rows}
