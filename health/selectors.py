"""What other apps read of health: one query each."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from health.models import ModelReliability

HEALTH_STRATEGY = "health_check"


def reliability_by_model() -> dict[str, float]:
    """Model id -> reliability 0..1, for the routing snapshot."""
    return dict(ModelReliability.objects.values_list("model_id", "reliability"))


def down_models() -> set[str]:
    """Models failing right now: as many checks in a row as raise a model_unhealthy alert.
    Routing does not choose them until a check passes again."""
    threshold = settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT
    return set(ModelReliability.objects.filter(consecutive_failures__gte=threshold).values_list("model_id", flat=True))


def unhealthy_models() -> list[ModelReliability]:
    """For the dashboard: low reliability, or failing again and again. Each row carries
    model_id, reliability, consecutive_failures and last_error."""
    return list(
        ModelReliability.objects.filter(
            Q(reliability__lt=settings.LLMHIVE_UNHEALTHY_RELIABILITY)
            | Q(consecutive_failures__gte=settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT)
        ).order_by("reliability", "model_id")
    )


def most_used_models(days: int = 7, limit: int = 10) -> list[str]:
    """The models the orchestrator used most in the last `days` (health pings not counted)."""
    from costs.models import UsageEvent

    since = timezone.now() - timedelta(days=days)
    rows = (
        UsageEvent.objects.filter(occurred_at__gte=since, model__isnull=False)
        .exclude(strategy=HEALTH_STRATEGY)
        .values("model_id")
        .annotate(n=Count("id"))
        .order_by("-n", "model_id")[:limit]
    )
    return [row["model_id"] for row in rows]
