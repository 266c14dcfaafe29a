"""What the admin dashboard shows, read in a fixed handful of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone
from django_q.models import Schedule

from catalog.models import CAPABILITIES, CatalogModel, ModelStatus, SyncKind, SyncRun, SyncStatus
from catalog.selectors import catalog_freshness, models_matching
from core.kinds import alert_kind_label
from core.models import Alert
from costs.budgets import budget_statuses
from costs.charts import cost_chart_svg
from costs.models import DailyCost
from health.selectors import unhealthy_models


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
        # Active and in no family: CatalogModel.objects.active().unclassified(), counted here.
        unclassified=Count("id", filter=Q(family__isnull=True, status=ModelStatus.ACTIVE)),
    )


def open_alerts_by_kind() -> list[dict]:
    rows = Alert.objects.open().values("kind").annotate(n=Count("id")).order_by("-n", "kind")
    return [{"kind": r["kind"], "label": alert_kind_label(r["kind"]), "count": r["n"]} for r in rows]


def spend() -> tuple[Decimal, Decimal]:
    today = timezone.now().date()
    totals = DailyCost.objects.filter(day__gte=today.replace(day=1), day__lte=today).aggregate(
        month=Sum("cost_usd", default=Decimal(0)), today=Sum("cost_usd", filter=Q(day=today), default=Decimal(0))
    )
    return Decimal(totals["today"]), Decimal(totals["month"])


def next_schedules() -> list:
    return list(Schedule.objects.order_by("next_run")[:10])


def build_dashboard() -> Dashboard:
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
        chart_svg=cost_chart_svg(days=30),
        unhealthy=unhealthy_models(),
        schedules=next_schedules(),
    )


def capability_matrix(*, family: str | None = None, category: str | None = None, status: str | None = None):
    """Models × the seven capabilities, with the filters the page offers."""
    models = models_matching(family=family, category=category, status=status).only(
        "id", "name", "status", "enabled", "context_length", "family__slug", "family__name", *CAPABILITIES
    )
    rows = [{"model": m, "flags": [getattr(m, c) for c in CAPABILITIES]} for m in models]
    totals = [sum(1 for r in rows if r["flags"][i]) for i in range(len(CAPABILITIES))]
    return rows, totals
