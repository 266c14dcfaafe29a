from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.models import AlertFormat, AlertSubscription


class Command(BaseCommand):
    help = "Add, list or remove the webhooks and e-mail addresses that new alerts are sent to."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,remove}")
        add = actions.add_parser("add", help="subscribe a webhook URL or an e-mail address")
        add.add_argument("url", nargs="?", help="the webhook URL (http or https)")
        add.add_argument("--email", help="an e-mail address, instead of a URL")
        add.add_argument("--kinds", default="", help="alert kinds, comma-separated (default: every kind)")
        add.add_argument("--secret", default="", help="the signature key (webhooks; generated when not given)")
        add.add_argument("--format", choices=AlertFormat.values, default=AlertFormat.JSON, help="the webhook body")
        actions.add_parser("list", help="list the subscriptions")
        remove = actions.add_parser("remove", help="delete a subscription and its delivery log")
        remove.add_argument("id", type=int)

    def handle(self, *args, action: str, **options) -> str:
        return getattr(self, f"_{action}")(**options)

    def _add(self, *, url: str | None, email: str | None, kinds: str, secret: str, format: str, **options) -> str:
        if bool(url) == bool(email):
            raise CommandError("give either a webhook URL or --email ADDRESS")
        subscription = AlertSubscription(
            target=url or email,
            kinds=sorted({k.strip() for k in kinds.split(",") if k.strip()}),
            secret="" if email else secret,
            format=format,
        )
        try:
            subscription.full_clean()
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            ) from None
        subscription.save()
        summary = f"Added alert subscription #{subscription.pk}: {subscription}"
        if not subscription.is_email and not secret:
            summary += f"; its generated secret is {subscription.secret}"
        return summary

    def _list(self, **options) -> str:
        lines = [
            f"#{s.pk}\t{'active' if s.active else 'inactive'}\t{'email' if s.is_email else s.format}\t"
            f"{s.target}\t{','.join(s.kinds) or 'every kind'}"
            for s in AlertSubscription.objects.all()
        ]
        return "\n".join(lines) if lines else "No alert subscriptions."

    def _remove(self, *, id: int, **options) -> str:
        deleted, _ = AlertSubscription.objects.filter(pk=id).delete()
        if not deleted:
            raise CommandError(f"no alert subscription #{id}")
        return f"Removed alert subscription #{id}."
