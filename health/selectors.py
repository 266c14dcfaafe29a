"""What other apps read of health: one query each."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from costs.models import UsageEvent
from health.models import ModelHealthCheck, ModelReliability

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
    since = timezone.now() - timedelta(days=days)
    rows = (
        UsageEvent.objects.filter(occurred_at__gte=since, model__isnull=False)
        .exclude(strategy=HEALTH_STRATEGY)
        .values("model_id")
        .annotate(n=Count("id"))
        .order_by("-n", "model_id")[:limit]
    )
    return [row["model_id"] for row in rows]


def latest_health(model_id: str | None = None) -> list[tuple[ModelReliability, ModelHealthCheck | None]]:
    """Each checked model's reliability with its latest check (of one model when `model_id` is
    given), by model id: two queries however many models. GET /health/models and a model's
    detail read this."""
    newest = ModelHealthCheck.objects.filter(model=OuterRef("model")).order_by("-checked_at", "-id").values("id")[:1]
    rows = ModelReliability.objects.annotate(latest_id=Subquery(newest)).order_by("model_id")
    if model_id is not None:
        rows = rows.filter(model_id=model_id)
    rows = list(rows)
    latest = ModelHealthCheck.objects.in_bulk([r.latest_id for r in rows if r.latest_id])
    return [(r, latest.get(r.latest_id)) for r in rows]


def oldest_queued_task_age() -> float | None:
    """Seconds the oldest task waiting for a django-q2 worker has waited. None when none waits,
    or when the broker cannot tell (Redis keeps no enqueue time). For GET /health and
    GET /metrics."""
    from django_q.conf import Conf

    if not Conf.ORM:
        return None
    from django_q.models import OrmQ

    # The ORM broker stamps `lock` with the enqueue time and moves it into the future when a
    # worker takes the task: the waiting ones are those whose lock is not in the future.
    now = timezone.now()
    first = (
        OrmQ.objects.filter(key=Conf.CLUSTER_NAME, lock__lte=now)
        .order_by("lock")
        .values_list("lock", flat=True)
        .first()
    )
    return None if first is None else max(0.0, (now - first).total_seconds())
