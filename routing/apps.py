from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from costs.ingest import AFTER_INGEST_HOOKS, IN_TRANSACTION_HOOKS
        from llmhive_site.auth import api_keys_changed
        from llmhive_site.models import DataVersion
        from routing import memory
        from routing.models import ApiKey, EscalationOverride, Role, RolePreference, Strategy

        def routing_changed(**kwargs) -> None:
            DataVersion.bump(DataVersion.ROUTING)

        for model in (Role, RolePreference, EscalationOverride, Strategy):
            post_save.connect(routing_changed, sender=model, dispatch_uid=f"routing.version.save.{model.__name__}")
            post_delete.connect(routing_changed, sender=model, dispatch_uid=f"routing.version.delete.{model.__name__}")
        post_save.connect(api_keys_changed, sender=ApiKey, dispatch_uid="routing.api_keys.save")
        post_delete.connect(api_keys_changed, sender=ApiKey, dispatch_uid="routing.api_keys.delete")
        if memory.remember_outcomes not in IN_TRANSACTION_HOOKS:
            IN_TRANSACTION_HOOKS.append(memory.remember_outcomes)
        if memory.stats_changed not in AFTER_INGEST_HOOKS:
            AFTER_INGEST_HOOKS.append(memory.stats_changed)

        from catalog.research import MODELS_THAT_MATTER_HOOKS

        if curated_models not in MODELS_THAT_MATTER_HOOKS:
            MODELS_THAT_MATTER_HOOKS.insert(0, curated_models)


def curated_models() -> list[str]:
    """The models admins named for routing: role preferences (models, and the members of preferred
    families), then escalation targets and sources. Research and health checks look at these first."""
    from catalog.models import CatalogModel
    from routing.models import EscalationOverride, RolePreference

    named = list(RolePreference.objects.filter(model__isnull=False, role__active=True)
                 .order_by("role__slug", "position").values_list("model_id", flat=True))
    families = RolePreference.objects.filter(family__isnull=False, role__active=True).values_list("family_id", flat=True)
    named += list(CatalogModel.objects.filter(family_id__in=families).order_by("id").values_list("id", flat=True))
    for override in EscalationOverride.objects.order_by("position", "id").values_list("to_model_id", "from_model_id"):
        named += [m for m in override if m]
    return list(dict.fromkeys(named))
