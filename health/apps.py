from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
    verbose_name = "Health"

    def ready(self) -> None:
        from catalog.signals import model_detail, models_that_matter
        from core.kinds import register_kinds
        from health import receivers
        from health.models import AlertKind

        register_kinds(AlertKind)
        model_detail.connect(receivers.model_health, dispatch_uid="health.model_detail")
        models_that_matter.connect(receivers.most_used_models, dispatch_uid="health.models_that_matter")
