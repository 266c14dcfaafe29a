from django.apps import AppConfig


class LLMHiveSiteConfig(AppConfig):
    """The project package as an app, for the commands that span every app."""

    name = "llmhive_site"
    verbose_name = "LLMHive"
