from django.core.management.base import BaseCommand, CommandError

from catalog.management.commands._progress import ProgressBars
from catalog.models import SyncStatus, SyncTrigger
from catalog.research import research_catalog


class Command(BaseCommand):
    help = (
        "Sync, then record category rankings, endpoints of the models that matter and family suggestions. "
        "With --from-file it runs offline: it syncs from the saved file and skips what needs OpenRouter."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--from-file", metavar="PATH", help='a saved GET /models response ({"data": [...]})')
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, from_file=None, no_progress=False, **options) -> str:
        progress = ProgressBars(enabled=not no_progress)
        try:
            run = research_catalog(trigger=SyncTrigger.COMMAND, progress=progress, from_file=from_file)
        finally:
            progress.close()
        if run.status != SyncStatus.SUCCEEDED:
            raise CommandError(f"{run.summary()} (run #{run.pk})")
        for skipped in run.details.get("skipped", []):
            self.stderr.write(skipped)
        for error in run.details.get("errors", []):
            self.stderr.write(f"warning: {error}")
        return f"{run.summary()} (run #{run.pk})"
