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
        CategoryRanking.objects.filter(category=OuterRef("category"))
        .order_by("-observed_at")
        .values("observed_at")[:1]
    )
    return CategoryRanking.objects.filter(observed_at=Subquery(newest))


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
        SyncRun.objects.filter(status=SyncStatus.SUCCEEDED).order_by("-finished_at").values_list("finished_at", flat=True).first()
    )
    last_run = SyncRun.objects.exclude(status=SyncStatus.SKIPPED).order_by("-started_at", "-id").first()
    stale_after = timedelta(hours=settings.LLMHIVE_SYNC_INTERVAL_HOURS + settings.LLMHIVE_CATALOG_STALE_GRACE_HOURS)
    return Freshness(last_success=last_success, last_run=last_run, stale_after=stale_after)


def bootstrap_fallback_models() -> list[str]:
    """BOOTSTRAP_FALLBACK_MODELS when the catalog holds no models and the last attempt to fill it
    failed (OpenRouter unreachable); otherwise an empty list: the catalog is the source."""
    if CatalogModel.objects.exists():
        return []
    last = SyncRun.objects.exclude(status__in=[SyncStatus.SKIPPED, SyncStatus.RUNNING]).order_by("-started_at", "-id").first()
    if last is not None and last.status == SyncStatus.SUCCEEDED:
        return []
    return list(settings.BOOTSTRAP_FALLBACK_MODELS)
