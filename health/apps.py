from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
    verbose_name = "Health"

    def ready(self) -> None:
        from catalog.api import MODEL_DETAIL_EXTRAS

        MODEL_DETAIL_EXTRAS["health"] = model_health


def model_health(model) -> dict | None:
    """GET /models/{id}'s "health": reliability and the latest check, or null when never checked."""
    from health.models import ModelHealthCheck, ModelReliability

    reliability = ModelReliability.objects.filter(model=model).first()
    if reliability is None:
        return None
    check = ModelHealthCheck.objects.filter(model=model).order_by("-checked_at", "-id").first()
    return {
        "reliability": round(reliability.reliability, 4),
        "consecutive_failures": reliability.consecutive_failures,
        "last_checked_at": reliability.last_checked_at,
        "endpoints_up": check.endpoints_up if check else None,
        "endpoints_total": check.endpoints_total if check else None,
        "ok": check.ok if check else None,
    }
