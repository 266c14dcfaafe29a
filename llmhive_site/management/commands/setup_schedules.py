from django.core.management.base import BaseCommand

from llmhive_site.schedules import setup_schedules


class Command(BaseCommand):
    help = "Create or update every LLMHive schedule by name (idempotent)."

    def handle(self, *args, **options) -> str:
        result = setup_schedules()
        broker = "Redis" if self._redis() else "the database (ORM broker)"
        return (
            f"schedules: {len(result['created'])} created, {len(result['updated'])} updated, "
            f"{len(result['unchanged'])} unchanged, {len(result['removed'])} removed; broker: {broker}"
        )

    @staticmethod
    def _redis() -> bool:
        from django.conf import settings

        return "redis" in settings.Q_CLUSTER
