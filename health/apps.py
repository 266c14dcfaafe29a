from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
    verbose_name = "Health"

    def ready(self) -> None:
        from catalog.api import MODEL_DETAIL_EXTRAS
        from catalog.research import MODELS_THAT_MATTER_HOOKS
        from health.selectors import most_used_models

        MODEL_DETAIL_EXTRAS["health"] = model_health
        # The most used models matter too (routing adds its preferences and overrides, first).
        if most_used_models not in MODELS_THAT_MATTER_HOOKS:
            MODELS_THAT_MATTER_HOOKS.append(most_used_models)


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
