from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "costs"
    verbose_name = "Costs and budgets"

    def ready(self) -> None:
        from costs import budgets, ingest

        # Budgets move with the ledger (and the budget book listens to Budget saves).
        if budgets.after_ingest not in ingest.AFTER_INGEST_HOOKS:
            ingest.AFTER_INGEST_HOOKS.append(budgets.after_ingest)
