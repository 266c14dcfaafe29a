"""Reads of the catalog that several callers share (API, admin, health, routing)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from catalog.models import CatalogModel, CategoryRanking, Family, ModelStatus, SyncRun, SyncStatus


def current_rankings_queryset() -> QuerySet[CategoryRanking]:
    """The newest ranking set of every category."""
    newest = (
        CategoryRanking.objects.filter(category=OuterRef("category")).order_by("-observed_at").values("observed_at")[:1]
    )
    return CategoryRanking.objects.filter(observed_at=Subquery(newest))


def models_matching(
    *,
    capabilities: list[str] | tuple[str, ...] = (),
    family: str | None = None,
    category: str | None = None,
    author: str | None = None,
    status: str | None = None,
    enabled: bool | None = None,
    min_context: int | None = None,
    q: str | None = None,
) -> QuerySet[CatalogModel]:
    """The catalog filtered as GET /models and the capability matrix filter it, ordered by id;
    with `category`, only the models of its current ranking, each annotated with `rank`."""
    models = CatalogModel.objects.select_related("family")
    for capability in capabilities:
        models = models.filter(**{capability: True})
    if family:
        models = models.in_family(family)
    if author:
        models = models.filter(author=author)
    if status:
        models = models.filter(status=status)
    if enabled is not None:
        models = models.filter(enabled=enabled)
    if min_context is not None:
        models = models.filter(context_length__gte=min_context)
    if q:
        models = models.filter(Q(id__icontains=q) | Q(name__icontains=q))
    if category:
        rank = current_rankings_queryset().filter(category__slug=category, model=OuterRef("pk")).values("rank")[:1]
        models = models.annotate(rank=Subquery(rank)).filter(rank__isnull=False)
    return models.order_by("id")


def families_with_counts() -> QuerySet[Family]:
    return Family.objects.annotate(
        model_count=Count("models"),
        active_count=Count("models", filter=Q(models__status=ModelStatus.ACTIVE)),
    )


@dataclass(frozen=True)
class Freshness:
    last_success: datetime | None
    last_run: SyncRun | None
    stale_after: timedelta

    @property
    def age(self) -> timedelta | None:
        return None if self.last_success is None else timezone.now() - self.last_success

    @property
    def is_stale(self) -> bool:
        return self.age is None or self.age > self.stale_after


def catalog_freshness() -> Freshness:
    last_success = (
        SyncRun.objects.filter(status=SyncStatus.SUCCEEDED)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    last_run = SyncRun.objects.exclude(status=SyncStatus.SKIPPED).order_by("-started_at", "-id").first()
    stale_after = timedelta(hours=settings.LLMHIVE_SYNC_INTERVAL_HOURS, minutes=settings.LLMHIVE_CATALOG_GRACE_MINUTES)
    return Freshness(last_success=last_success, last_run=last_run, stale_after=stale_after)


def bootstrap_fallback_models() -> list[str]:
    """BOOTSTRAP_FALLBACK_MODELS when the catalog holds no model a decision may choose and the
    last attempt to fill it failed (or none was made yet: OpenRouter unreachable on a first
    start); otherwise an empty list: the catalog is the source, and a catalog whose models are
    all disabled answers "no eligible model" rather than models nobody chose. Routing's snapshot
    reads this whenever the catalog's data version moves (a failed sync bumps it too)."""
    if CatalogModel.objects.routable().exists():
        return []
    last = (
        SyncRun.objects.exclude(status__in=[SyncStatus.SKIPPED, SyncStatus.RUNNING])
        .order_by("-started_at", "-id")
        .first()
    )
    if last is not None and last.status == SyncStatus.SUCCEEDED:
        return []
    return list(settings.BOOTSTRAP_FALLBACK_MODELS)


def known_output_modalities() -> set[str]:
    """The output modalities the catalog's models name (text always), for what a role may accept."""
    known = {"text"}
    for modalities in CatalogModel.objects.values_list("output_modalities", flat=True).distinct():
        known.update(m for m in modalities or () if isinstance(m, str))
    return known
