from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom layer every app builds on: API keys and auth, the API's error shape, data
    versions, locks, alerts, money and upsert helpers, shared admin pieces."""

    name = "core"
    verbose_name = "LLMHive core"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from core.auth import api_keys_changed
        from core.models import ApiKey

        post_save.connect(api_keys_changed, sender=ApiKey, dispatch_uid="core.api_keys.save")
        post_delete.connect(api_keys_changed, sender=ApiKey, dispatch_uid="core.api_keys.delete")
