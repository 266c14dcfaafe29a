"""What the admin dashboard shows, read in a fixed handful of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from catalog.models import CAPABILITIES, AlertKind, CatalogAlert, CatalogModel, ModelStatus, SyncKind, SyncRun, SyncStatus
from catalog.selectors import catalog_freshness, current_rankings_queryset


@dataclass
class Dashboard:
    freshness: object
    last_sync: SyncRun | None
    last_research: SyncRun | None
    models: dict
    alerts: list[dict]
    open_alerts: int
    spend_today: Decimal
    spend_month: Decimal
    budgets: list
    chart_svg: str
    unhealthy: list
    schedules: list


def _last(kind: str) -> SyncRun | None:
    return SyncRun.objects.filter(kind=kind).exclude(status=SyncStatus.SKIPPED).order_by("-started_at", "-id").first()


def model_counts() -> dict:
    week_ago = timezone.now() - timedelta(days=7)
    return CatalogModel.objects.aggregate(
        total=Count("id"),
        active=Count("id", filter=Q(status=ModelStatus.ACTIVE)),
        missing=Count("id", filter=Q(status=ModelStatus.MISSING)),
        new_this_week=Count("id", filter=Q(first_seen_at__gte=week_ago)),
        disabled=Count("id", filter=Q(enabled=False)),
        unclassified=Count("id", filter=Q(family__isnull=True, status=ModelStatus.ACTIVE)),
    )


def open_alerts_by_kind() -> list[dict]:
    labels = dict(AlertKind.choices)
    rows = CatalogAlert.objects.open().values("kind").annotate(n=Count("id")).order_by("-n", "kind")
    return [{"kind": r["kind"], "label": labels.get(r["kind"], r["kind"]), "count": r["n"]} for r in rows]


def spend() -> tuple[Decimal, Decimal]:
    from costs.models import DailyCost

    today = timezone.now().date()
    totals = DailyCost.objects.filter(day__gte=today.replace(day=1), day__lte=today).aggregate(
        month=Sum("cost_usd", default=Decimal(0)), today=Sum("cost_usd", filter=Q(day=today), default=Decimal(0))
    )
    return Decimal(totals["today"]), Decimal(totals["month"])


def unhealthy_models() -> list:
    try:
        from health.selectors import unhealthy_models as unhealthy
    except ImportError:
        return []
    return list(unhealthy())


def chart_svg() -> str:
    try:
        from costs.charts import cost_chart_svg
    except ImportError:
        return ""
    return cost_chart_svg(days=30)


def next_schedules() -> list:
    from django_q.models import Schedule

    return list(Schedule.objects.order_by("next_run")[:10])


def build_dashboard() -> Dashboard:
    from costs.budgets import budget_statuses

    today, month = spend()
    alerts = open_alerts_by_kind()
    return Dashboard(
        freshness=catalog_freshness(),
        last_sync=_last(SyncKind.SYNC),
        last_research=_last(SyncKind.RESEARCH),
        models=model_counts(),
        alerts=alerts,
        open_alerts=sum(a["count"] for a in alerts),
        spend_today=today,
        spend_month=month,
        budgets=budget_statuses(),
        chart_svg=chart_svg(),
        unhealthy=unhealthy_models(),
        schedules=next_schedules(),
    )


def capability_matrix(*, family: str | None = None, category: str | None = None, status: str | None = None):
    """Models × the seven capabilities, with the filters the page offers."""
    models = CatalogModel.objects.select_related("family").only(
        "id", "name", "status", "enabled", "context_length", "family__slug", "family__name", *CAPABILITIES
    )
    if family == "none":
        models = models.filter(family__isnull=True)
    elif family:
        models = models.filter(family__slug=family)
    if status:
        models = models.filter(status=status)
    if category:
        ranked = current_rankings_queryset().filter(category__slug=category).values("model_id")
        models = models.filter(id__in=ranked)
    rows = [{"model": m, "flags": [getattr(m, c) for c in CAPABILITIES]} for m in models.order_by("id")]
    totals = [sum(1 for r in rows if r["flags"][i]) for i in range(len(CAPABILITIES))]
    return rows, totals
