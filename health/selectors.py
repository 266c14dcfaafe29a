"""What other apps read of health: one query each."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from health.models import ModelReliability


def reliability_by_model() -> dict[str, float]:
    """Model id -> reliability 0..1, for the routing snapshot."""
    return dict(ModelReliability.objects.values_list("model_id", "reliability"))


def unhealthy_models() -> list[ModelReliability]:
    """For the dashboard: low reliability, or failing again and again."""
    return list(
        ModelReliability.objects.filter(
            Q(reliability__lt=settings.LLMHIVE_UNHEALTHY_RELIABILITY)
            | Q(consecutive_failures__gte=settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT)
        ).order_by("reliability", "model_id")
    )
