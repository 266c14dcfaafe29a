from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from catalog.signals import models_that_matter
        from costs.signals import usage_ingested, usage_stored
        from health.signals import model_cooldowns
        from routing import cooldowns, memory, receivers, snapshot
        from routing.models import EscalationOverride, QualityPrior, Role, RolePreference, Strategy

        for model in (Role, RolePreference, EscalationOverride, Strategy, QualityPrior):
            post_save.connect(
                receivers.routing_changed, sender=model, dispatch_uid=f"routing.version.save.{model.__name__}"
            )
            post_delete.connect(
                receivers.routing_changed, sender=model, dispatch_uid=f"routing.version.delete.{model.__name__}"
            )
        usage_stored.connect(memory.remember_outcomes, dispatch_uid="routing.memory.remember_outcomes")
        usage_stored.connect(cooldowns.react_to_usage, dispatch_uid="routing.cooldowns.react_to_usage")
        model_cooldowns.connect(cooldowns.cooldowns_by_model, dispatch_uid="routing.cooldowns.by_model")
        usage_ingested.connect(snapshot.refresh_after_own_batch, dispatch_uid="routing.snapshot.after_own_batch")
        models_that_matter.connect(receivers.curated_models, dispatch_uid="routing.models_that_matter")
