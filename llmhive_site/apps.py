from django.apps import AppConfig


class LLMHiveSiteConfig(AppConfig):
    """The project package as an app, for the commands that span every app."""

    name = "llmhive_site"
    verbose_name = "LLMHive"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from llmhive_site.groups import on_post_migrate

        post_migrate.connect(on_post_migrate, dispatch_uid="llmhive_site.groups")
