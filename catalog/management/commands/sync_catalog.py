from django.core.management.base import BaseCommand, CommandError

from catalog.management.commands._progress import ProgressBars
from catalog.models import SyncStatus, SyncTrigger
from catalog.sync import sync_catalog


class Command(BaseCommand):
    help = "Sync the model catalog from OpenRouter's GET /models, or from a saved response."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--from-file", metavar="PATH", help='a saved GET /models response ({"data": [...]})')
        parser.add_argument(
            "--force",
            action="store_true",
            help="apply a list that is empty or would mark many models missing (after you have looked at it)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, from_file=None, force=False, no_progress=False, **options) -> str:
        progress = ProgressBars(enabled=not no_progress)
        try:
            run = sync_catalog(trigger=SyncTrigger.COMMAND, from_file=from_file, force=force, progress=progress)
        finally:
            progress.close()
        if run.status != SyncStatus.SUCCEEDED:
            raise CommandError(f"{run.summary()} (run #{run.pk})")
        return f"{run.summary()} in {run.duration.total_seconds():.2f}s (run #{run.pk})"
