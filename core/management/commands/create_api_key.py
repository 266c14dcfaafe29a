from django.core.management.base import BaseCommand, CommandError

from core.models import ApiKey, Scope


class Command(BaseCommand):
    help = "Create an API key and print its secret (shown once; only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True, help="who or what uses the key, e.g. orchestrator-prod")
        parser.add_argument(
            "--scopes", nargs="+", required=True, metavar="SCOPE", help=f"one or more of: {', '.join(Scope.values)}"
        )

    def handle(self, *args, name: str, scopes: list[str], **options) -> str:
        # "--scopes route,usage:write" works as well as "--scopes route usage:write".
        scopes = [s.strip() for part in scopes for s in part.split(",") if s.strip()]
        try:
            key, secret = ApiKey.issue(name=name, scopes=scopes)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"API key '{key.name}' (prefix {key.prefix}) with scopes {', '.join(key.scopes)}; the secret follows and is not shown again:"
        )
        return secret
