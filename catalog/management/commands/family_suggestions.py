import json

from django.core.management.base import BaseCommand, CommandError

from catalog.families import AcceptError, accept, refresh_suggestions
from catalog.models import FamilySuggestion, SuggestionState


class Command(BaseCommand):
    help = (
        "Refresh and list the pending family suggestions (for unclassified and version-drifted models); "
        "--accept-all adopts every one of them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the suggestions as JSON")
        parser.add_argument("--accept-all", action="store_true", help="create a family for every pending suggestion")

    def handle(self, *args, accept_all=False, **options) -> None:
        suggestions = [s.as_dict() for s in refresh_suggestions()]
        result = {"suggestions": suggestions}
        if accept_all:
            pending = FamilySuggestion.objects.filter(state=SuggestionState.PENDING).order_by("priority", "slug")
            try:
                families, moved = accept(list(pending))
            except AcceptError as exc:
                raise CommandError(str(exc)) from None
            result.update({"accepted": [f.slug for f in families], "moved": moved})
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        for s in suggestions:
            notes = " (version drift)" if s["drift"] else ""
            notes += f" (adds to {s['extends']})" if s["extends"] else ""
            self.stdout.write(
                f"{s['slug']}: {s['pattern']} priority {s['priority']}, {s['count']} model(s){notes}: "
                + ", ".join(s["models"])
            )
        self.stdout.write(f"{len(suggestions)} pending suggestion(s)")
        if accept_all:
            self.stdout.write(f"accepted {len(result['accepted'])} suggestion(s); {result['moved']} model(s) moved")
