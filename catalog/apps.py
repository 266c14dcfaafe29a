from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Model catalog"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from catalog.models import (
            CATALOG_VERSION,
            AlertKind,
            CatalogModel,
            Category,
            CategoryRanking,
            Family,
            PriceChange,
        )
        from core.kinds import register_kinds
        from core.models import DataVersion

        register_kinds(AlertKind)

        def catalog_changed(**kwargs) -> None:
            DataVersion.bump(CATALOG_VERSION)

        # Saves one at a time (the admin, a curator's edit, a price change recorded by hand: the
        # cost of usage depends on it); bulk writes in sync and research bump the version
        # themselves, once.
        for model in (CatalogModel, Family, Category, CategoryRanking, PriceChange):
            post_save.connect(catalog_changed, sender=model, dispatch_uid=f"catalog.version.save.{model.__name__}")
            post_delete.connect(catalog_changed, sender=model, dispatch_uid=f"catalog.version.delete.{model.__name__}")
