"""Catalog endpoints: browse models, families, categories and rankings; start and watch syncs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status

from catalog.models import (
    CAPABILITIES,
    PRICE_KEYS,
    CatalogModel,
    Category,
    SyncRun,
    SyncTrigger,
)
from catalog.queueing import request_catalog_job
from catalog.selectors import current_rankings_queryset, families_with_counts, models_matching
from catalog.signals import model_detail
from core.auth import require
from core.errors import errors
from core.money import decimal_str

router = Router(tags=["catalog"])
ROUTE = require("route")
CATALOG_SYNC = require("catalog:sync")

Capability = Literal[CAPABILITIES]  # type: ignore[valid-type]


class ModelOut(Schema):
    id: str
    name: str
    canonical_slug: str
    author: str
    family: str | None
    context_length: int | None
    max_completion_tokens: int | None
    pricing: dict[str, str | None] = Field(
        description=(
            "every price key OpenRouter documents, as decimal strings: USD per token (per request for `request`, "
            "per image for `image` and `image_output`, per search for `web_search`; `discount` is a fraction); "
            "null when absent or zero (optional keys)"
        )
    )
    extra_prices: dict[str, str] = Field(
        description="pricing keys OpenRouter sent that the catalog does not know yet, as decimal strings"
    )
    variable_pricing: bool
    capabilities: dict[str, bool]
    input_modalities: list[str]
    output_modalities: list[str]
    supported_parameters: list[str]
    status: str
    enabled: bool
    first_seen_at: datetime
    last_seen_at: datetime
    missing_since: datetime | None
    expiration_date: date | None


class EndpointOut(Schema):
    provider_name: str
    tag: str
    quantization: str
    context_length: int | None
    max_completion_tokens: int | None
    pricing: dict
    status: int | None
    uptime_last_30m: float | None
    observed_at: datetime


class PriceChangeOut(Schema):
    field: str
    old: str | None
    new: str | None
    observed_at: datetime


class RankingOut(Schema):
    category: str
    rank: int
    observed_at: datetime


class ModelDetailOut(ModelOut):
    description: str
    endpoints: list[EndpointOut]
    price_history: list[PriceChangeOut]
    rankings: list[RankingOut]
    health: dict | None = None


class ModelPage(Schema):
    count: int
    items: list[ModelOut]


class ModelFilters(Schema):
    capability: list[Capability] = Field(default_factory=list, description="repeatable; all must hold")
    family: str | None = Field(None, max_length=100, description="family slug, or 'none' for unclassified models")
    category: str | None = Field(
        None, max_length=100, description="models in the category's current ranking, best first"
    )
    author: str | None = Field(None, max_length=100)
    status: Literal["active", "missing"] | None = None
    enabled: bool | None = None
    min_context: int | None = Field(None, ge=0, le=2_147_483_647)
    q: str | None = Field(None, max_length=200, description="search in id and name")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)


def model_out(model: CatalogModel) -> dict:
    return {
        "id": model.id,
        "name": model.name,
        "canonical_slug": model.canonical_slug,
        "author": model.author,
        "family": model.family.slug if model.family_id else None,
        "context_length": model.context_length,
        "max_completion_tokens": model.max_completion_tokens,
        "pricing": {key: decimal_str(model.price(key)) for key in PRICE_KEYS},
        "extra_prices": dict(model.extra_prices or {}),
        "variable_pricing": model.variable_pricing,
        "capabilities": model.capabilities,
        "input_modalities": model.input_modalities,
        "output_modalities": model.output_modalities,
        "supported_parameters": model.supported_parameters,
        "status": model.status,
        "enabled": model.enabled,
        "first_seen_at": model.first_seen_at,
        "last_seen_at": model.last_seen_at,
        "missing_since": model.missing_since,
        "expiration_date": model.expiration_date,
    }


@router.get("/models", response={200: ModelPage, **errors(401, 403, 422)}, auth=ROUTE, summary="List the catalog")
def list_models(request, filters: Query[ModelFilters]):
    models = models_matching(
        capabilities=filters.capability,
        family=filters.family,
        category=filters.category,
        author=filters.author,
        status=filters.status,
        enabled=filters.enabled,
        min_context=filters.min_context,
        q=filters.q,
    ).defer("raw", "description")
    if filters.category:
        models = models.order_by("rank", "id")  # in the category's ranking order
    page = models[filters.offset : filters.offset + filters.limit]
    return {"count": models.count(), "items": [model_out(m) for m in page]}


@router.get(
    "/models/{path:model_id}",
    response={200: ModelDetailOut, **errors(401, 403, 404, 422)},
    auth=ROUTE,
    summary="One model (ids hold '/' and ':')",
)
def get_model(request, model_id: str = Path(..., max_length=200, example="openai/gpt-4o")):
    model = get_object_or_404(CatalogModel.objects.select_related("family"), id=model_id)
    rankings = current_rankings_queryset().filter(model=model).select_related("category").order_by("rank")
    detail = model_out(model) | {
        "description": model.description,
        "endpoints": list(model.endpoints.all()),
        "price_history": [
            {"field": c.field, "old": decimal_str(c.old), "new": decimal_str(c.new), "observed_at": c.observed_at}
            for c in model.price_changes.order_by("-observed_at")[:100]
        ],
        "rankings": [{"category": r.category.slug, "rank": r.rank, "observed_at": r.observed_at} for r in rankings],
        "health": None,
    }
    # Other apps add to a model's detail (health adds "health") without catalog importing them.
    for _receiver, extra in model_detail.send(sender=CatalogModel, model=model):
        detail.update(extra or {})
    return detail


class FamilyOut(Schema):
    slug: str
    name: str
    pattern: str
    priority: int
    vendor: str
    model_count: int
    active_count: int


@router.get(
    "/families",
    response={200: list[FamilyOut], **errors(401, 403)},
    auth=ROUTE,
    summary="Families with patterns and model counts",
)
def list_families(request):
    return families_with_counts()


class CategoryOut(Schema):
    slug: str
    name: str
    active: bool
    state: Literal["active", "proposed", "retired"] = Field(
        description="`proposed`: discovered (by research, /route or usage) and waiting for a curator"
    )
    source: str = Field(description="where the category was first seen: seed, openrouter, route, usage or admin")
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    seen_count: int


@router.get("/categories", response={200: list[CategoryOut], **errors(401, 403)}, auth=ROUTE, summary="Categories")
def list_categories(request):
    """Every category, active, proposed or retired; only active ones may be routed on."""
    return Category.objects.all()


class RankedModelOut(Schema):
    rank: int
    model: str
    name: str
    family: str | None


class CategoryRankingOut(Schema):
    category: str
    observed_at: datetime | None
    items: list[RankedModelOut]


@router.get(
    "/categories/{path:slug}/rankings",
    response={200: CategoryRankingOut, **errors(401, 403, 404, 422)},
    auth=ROUTE,
    summary="A category's current ranking",
)
def category_rankings(request, slug: str = Path(..., max_length=100, example="programming")):
    category = get_object_or_404(Category, slug=slug)
    rows = list(current_rankings_queryset().filter(category=category).select_related("model__family").order_by("rank"))
    return {
        "category": category.slug,
        "observed_at": rows[0].observed_at if rows else None,
        "items": [
            {
                "rank": r.rank,
                "model": r.model_id,
                "name": r.model.name,
                "family": r.model.family.slug if r.model.family_id else None,
            }
            for r in rows
        ],
    }


class SyncIn(Schema):
    kind: Literal["sync", "research"] = "sync"
    force: bool = Field(False, description="apply an empty or much shorter list (sync only)")


class QueuedOut(Schema):
    task_id: str = Field(description="the django-q task; empty when a run started elsewhere (the schedule) answers")
    kind: str
    status: Literal["queued", "running"]
    already_queued: bool = Field(description="true: a run of this kind was already queued or running, none was added")
    run_id: int | None = Field(description="the SyncRun, once a worker has started it (GET /catalog/runs)")


@router.post(
    "/catalog/sync",
    response={202: QueuedOut, **errors(400, 401, 403, 413, 422)},
    auth=CATALOG_SYNC,
    summary="Queue a sync or research run",
)
def start_sync(request, payload: SyncIn):
    """At most one run of each kind is queued: while one is queued or running, the answer names it."""
    job = request_catalog_job(payload.kind, trigger=SyncTrigger.API, force=payload.force)
    return Status(
        202,
        {
            "task_id": job.task_id,
            "kind": job.kind,
            "status": job.status,
            "already_queued": job.already_queued,
            "run_id": job.run.pk if job.run else None,
        },
    )


class RunOut(Schema):
    id: int
    kind: str
    trigger: str
    source: str
    status: str
    forced: bool
    started_at: datetime
    finished_at: datetime | None
    seen: int
    added: int
    updated: int
    reactivated: int
    missing: int
    price_changes: int
    skipped_entries: int
    error: str
    summary: str


class RunFilters(Schema):
    kind: Literal["sync", "research"] | None = None
    limit: int = Field(20, ge=1, le=200)


@router.get(
    "/catalog/runs",
    response={200: list[RunOut], **errors(401, 403, 422)},
    auth=CATALOG_SYNC,
    summary="Recent sync and research runs",
)
def list_runs(request, filters: Query[RunFilters]):
    runs = SyncRun.objects.all()
    if filters.kind:
        runs = runs.filter(kind=filters.kind)
    return [
        {**{f: getattr(run, f) for f in RunOut.model_fields if f != "summary"}, "summary": run.summary()}
        for run in runs[: filters.limit]
    ]
