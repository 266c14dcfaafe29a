from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "costs"
    verbose_name = "Costs and budgets"

    def ready(self) -> None:
        from catalog.signals import prices_changed
        from core.kinds import register_kinds
        from costs import budgets
        from costs.impact import price_change_impact
        from costs.models import AlertKind
        from costs.signals import usage_ingested

        register_kinds(AlertKind)
        # Budgets move with the ledger (and the budget book listens to Budget saves).
        usage_ingested.connect(budgets.after_ingest, dispatch_uid="costs.budgets.after_ingest")
        # A price-change alert says what last week's traffic would cost at the new prices.
        prices_changed.connect(price_change_impact, dispatch_uid="costs.impact.price_change_impact")
