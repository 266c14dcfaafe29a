from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class LLMHiveSiteConfig(AppConfig):
    """The project package as an app, for the commands that span every app."""

    name = "llmhive_site"
    verbose_name = "LLMHive"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from llmhive_site.groups import on_post_migrate

        post_migrate.connect(on_post_migrate, dispatch_uid="llmhive_site.groups")


class LLMHiveAdminConfig(AdminConfig):
    """The admin, on LLMHive's site (its index is the dashboard). The site module is named as a
    string so that it is imported once the apps are ready and may import their models at the top."""

    default_site = "llmhive_site.admin_site.LLMHiveAdminSite"
