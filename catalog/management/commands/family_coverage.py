import json

from django.core.management.base import BaseCommand

from catalog.families import coverage


class Command(BaseCommand):
    help = "How much of the catalog the families cover: active models, how many are in a family, the fraction."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the figures as JSON")

    def handle(self, *args, **options) -> None:
        figures = coverage()
        if options["json"]:
            self.stdout.write(json.dumps(figures))
            return
        self.stdout.write(
            f"{figures['in_family']} of {figures['active']} active models are in a family "
            f"({figures['fraction']:.1%}); {figures['unclassified']} unclassified"
        )
