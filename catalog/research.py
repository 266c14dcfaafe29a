"""The weekly research job: a sync, then category rankings, endpoints of the models that matter,
family suggestions for unclassified and version-drifted models (catalog.families), and a digest
alert of the week. From a saved file it runs offline: the steps that need OpenRouter are skipped."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from catalog import signals
from catalog.categories import category_name, new_category_alert
from catalog.client import openrouter_client
from catalog.families import refresh_suggestions
from catalog.models import (
    CAPABILITIES,
    CATALOG_VERSION,
    AlertKind,
    CatalogModel,
    Category,
    CategoryRanking,
    CategorySource,
    ModelEndpoint,
    ModelStatus,
    SyncKind,
    SyncRun,
    SyncStatus,
    SyncTrigger,
)
from catalog.selectors import current_rankings_queryset
from catalog.sync import Progress, model_list_source, run_catalog_job
from core.alerts import NewAlert, raise_alerts
from core.models import Alert, DataVersion
from core.money import decimal_str
from openrouter import (
    AsyncOpenRouterClient,
    OpenRouterClient,
    OpenRouterError,
)
from openrouter.types import DOCUMENTED_CATEGORIES

logger = logging.getLogger(__name__)

TOP_RANKED_PER_CATEGORY = 10
ENDPOINT_CONCURRENCY = 8


# What a research run from a saved file leaves out (recorded in the run's details as `skipped`).
OFFLINE_SKIPPED = (
    "rankings: skipped, the run reads a saved file (category rankings need OpenRouter)",
    "endpoints: skipped, the run reads a saved file (endpoints need OpenRouter)",
)


def research_catalog(
    *,
    trigger: str = SyncTrigger.COMMAND,
    progress: Progress | None = None,
    from_file: str | os.PathLike | None = None,
) -> SyncRun:
    """Research from OpenRouter, or offline from a saved `GET /models` response (`from_file`)."""
    offline = from_file is not None

    def steps(run: SyncRun, step_progress: Progress | None) -> None:
        _research_steps(run, step_progress, offline=offline)

    return run_catalog_job(
        kind=SyncKind.RESEARCH, trigger=trigger, progress=progress, after_apply=steps, **model_list_source(from_file)
    )


def _research_steps(run: SyncRun, progress: Progress | None, *, offline: bool = False) -> None:
    errors: list[str] = []
    discovered = discover_categories()
    rankings = endpoints = 0
    if not offline:
        with openrouter_client() as client:
            rankings = record_rankings(client, run=run, errors=errors, progress=progress)
        endpoints = refresh_endpoints(models_that_matter(), errors=errors, progress=progress)
    suggestions = [s.as_dict() for s in refresh_suggestions()]
    matrix = capability_counts()
    run.details.update(
        {
            "discovered_categories": discovered,
            "proposed_categories": list(
                Category.objects.filter(active=False, proposed=True).values_list("slug", flat=True)[:DETAIL_LIMIT]
            ),
            "rankings": rankings,
            "endpoints": endpoints,
            "suggested_families": suggestions,
            "capability_matrix": matrix,
            "errors": errors,
            "skipped": list(OFFLINE_SKIPPED) if offline else [],
        }
    )
    if offline:
        # Nothing was asked of OpenRouter: an earlier run's step errors are neither answered nor repeated.
        raise_alerts([digest_alert(run, suggestions)])
        return
    step_alert = NewAlert(
        AlertKind.SYNC_FAILED,
        f"Research #{run.pk} finished with {len(errors)} error(s): {errors[0] if errors else ''}",
        subject="research-steps",
        details={"errors": errors, "run": run.pk},
    )
    if errors:
        raise_alerts([step_alert])
    else:
        # Every step went through this time: an earlier run's step errors are answered.
        Alert.objects.open().filter(key=step_alert.key).update(acknowledged_at=timezone.now())
    raise_alerts([digest_alert(run, suggestions)])


DETAIL_LIMIT = 200


def discover_categories() -> list[str]:
    """OpenRouter's categories the catalog does not know, added as proposed (a curator adopts or
    retires them in the admin) with a `new_category` alert each. OpenRouter has no endpoint that
    lists them: its API description documents them as the enum of `GET /models?category=`
    (openrouter.types.DOCUMENTED_CATEGORIES). Retired categories are known, never proposed again.
    The categories /route requests and usage reports name are recorded as they arrive
    (catalog.categories)."""
    known = set(Category.objects.values_list("slug", flat=True))
    new = [slug for slug in DOCUMENTED_CATEGORIES if slug not in known]
    if not new:
        return []
    now = timezone.now()
    created = Category.objects.bulk_create(
        [
            Category(
                slug=slug,
                name=category_name(slug),
                active=False,
                proposed=True,
                source=CategorySource.OPENROUTER,
                first_seen_at=now,
                last_seen_at=now,
                seen_count=1,
            )
            for slug in new
        ],
        ignore_conflicts=True,  # a /route call may have proposed one a moment ago
    )
    raise_alerts(new_category_alert(category.slug, CategorySource.OPENROUTER) for category in created)
    return new


def record_rankings(
    client: OpenRouterClient, *, run: SyncRun, errors: list[str], progress: Progress | None = None
) -> int:
    """Rank = position in `GET /models?category=X`, among the models the catalog knows."""
    now = timezone.now()
    categories = list(Category.objects.filter(active=True))
    known = set(CatalogModel.objects.values_list("id", flat=True))
    rows: list[CategoryRanking] = []
    for done, category in enumerate(categories, start=1):
        try:
            listing = client.list_models(category=category.slug)
        except OpenRouterError as exc:
            errors.append(f"category {category.slug}: {exc}")
            continue
        rank = 0
        for entry in listing.entries:
            if entry.id in known:
                rank += 1
                rows.append(CategoryRanking(category=category, model_id=entry.id, rank=rank, observed_at=now, run=run))
        if progress:
            progress("rankings", done, len(categories))
    CategoryRanking.objects.bulk_create(rows, ignore_conflicts=True)
    if rows:
        DataVersion.bump(CATALOG_VERSION)  # rankings feed routing's quality prior
    return len(rows)


def models_that_matter(limit: int | None = None) -> list[str]:
    """Enabled, active models that rank near the top of a category or that another app names."""
    limit = limit or settings.LLMHIVE_RESEARCH_ENDPOINTS_LIMIT
    named: list[str] = []
    # Other apps name the ids they care about (role preferences, escalation overrides, most used)
    # through the signal; catalog imports none of them.
    for _receiver, (_priority, ids) in sorted(
        signals.models_that_matter.send(sender=CatalogModel), key=lambda r: r[1][0]
    ):
        named.extend(ids)
    ranked = (
        current_rankings_queryset()
        .filter(rank__lte=TOP_RANKED_PER_CATEGORY)
        .values("model_id")
        .annotate(best=Min("rank"))
        .order_by("best", "model_id")
    )
    ordered = list(dict.fromkeys(named + [row["model_id"] for row in ranked]))
    usable = set(
        CatalogModel.objects.filter(id__in=ordered, enabled=True, status=ModelStatus.ACTIVE).values_list(
            "id", flat=True
        )
    )
    return [model_id for model_id in ordered if model_id in usable][:limit]


def refresh_endpoints(model_ids: list[str], *, errors: list[str], progress: Progress | None = None) -> int:
    """Fetch each model's endpoints concurrently (bounded), then replace them in one transaction."""
    if not model_ids:
        return 0
    results = asyncio.run(_fetch_endpoints(model_ids))
    now = timezone.now()
    rows: list[ModelEndpoint] = []
    refreshed: list[str] = []
    for model_id, result in zip(model_ids, results, strict=True):
        if isinstance(result, OpenRouterError):
            errors.append(f"endpoints of {model_id}: {result}")
            continue
        refreshed.append(model_id)
        for ep in result.endpoints:
            rows.append(
                ModelEndpoint(
                    model_id=model_id,
                    name=(ep.name or "")[:300],
                    provider_name=(ep.provider_name or "")[:100],
                    tag=(ep.tag or "")[:150],
                    quantization=(ep.quantization or "")[:50],
                    context_length=ep.context_length,
                    max_completion_tokens=ep.max_completion_tokens,
                    pricing={k: decimal_str(v) for k, v in (ep.pricing or {}).items()},
                    status=ep.status,
                    uptime_last_30m=ep.uptime_last_30m,
                    latency_last_30m=getattr(ep, "latency_last_30m", None),
                    throughput_last_30m=getattr(ep, "throughput_last_30m", None),
                    observed_at=now,
                )
            )
    with transaction.atomic():
        # Endpoints are current state, not history: a model's set is replaced as a whole.
        ModelEndpoint.objects.filter(model_id__in=refreshed).delete()
        ModelEndpoint.objects.bulk_create(rows)
    if refreshed:
        DataVersion.bump(CATALOG_VERSION)  # routing reads endpoints (providers, latency)
    if progress:
        progress("endpoints", len(model_ids), len(model_ids))
    return len(rows)


async def _fetch_endpoints(model_ids: list[str]) -> list:
    semaphore = asyncio.Semaphore(ENDPOINT_CONCURRENCY)
    async with openrouter_client(AsyncOpenRouterClient) as client:

        async def one(model_id: str):
            async with semaphore:
                try:
                    return await client.list_endpoints(model_id)
                except OpenRouterError as exc:
                    return exc

        return await asyncio.gather(*(one(model_id) for model_id in model_ids))


def capability_counts() -> dict[str, int]:
    active = CatalogModel.objects.filter(status=ModelStatus.ACTIVE)
    counts = active.aggregate(total=Count("id"), **{c: Count("id", filter=Q(**{c: True})) for c in CAPABILITIES})
    return counts


def digest_alert(run: SyncRun, suggestions: list[dict]) -> NewAlert:
    since = timezone.now() - timedelta(days=7)
    # The run itself is still `running` while its digest is written: add its own counts.
    week = (
        SyncRun.objects.filter(status=SyncStatus.SUCCEEDED, started_at__gte=since)
        .exclude(pk=run.pk)
        .aggregate(
            runs=Count("id"),
            added=Sum("added"),
            missing=Sum("missing"),
            reactivated=Sum("reactivated"),
            price_changes=Sum("price_changes"),
        )
    )
    week = {k: v or 0 for k, v in week.items()}
    week["runs"] += 1
    for key in ("added", "missing", "reactivated", "price_changes"):
        week[key] += getattr(run, key) or 0
    message = (
        f"This week: {week['added']} models added, {week['missing']} went missing, {week['reactivated']} returned, "
        f"{week['price_changes']} price changes over {week['runs']} runs; "
        f"{run.details.get('rankings', 0)} ranking rows, {run.details.get('endpoints', 0)} endpoints; "
        f"{len(suggestions)} suggested families for unclassified or version-drifted models."
    )
    year, weekno, _ = timezone.now().isocalendar()
    return NewAlert(
        AlertKind.RESEARCH_DIGEST,
        message,
        subject=f"{year}-W{weekno:02d}",
        details={"week": week, "suggested_families": suggestions[:20], "run": run.pk},
    )
