"""manage.py reconcile_costs [--limit N] [--since YYYY-MM-DD] | --report [--since ...] [--until ...] [--csv PATH]"""

from __future__ import annotations

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.locks import LockBusy
from core.money import decimal_str
from costs.models import utc_midnight
from costs.reconcile import ReconcileError, drift_report, reconcile, write_report_csv

# A progress line every this many events.
PROGRESS_EVERY = 50


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a day (YYYY-MM-DD): {value!r}") from None


def _usd(value) -> str:
    return "none" if value is None else decimal_str(value)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"--limit takes a whole number, not {value!r}") from None
    if number < 1:
        raise CommandError(f"--limit must be at least 1, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Ask OpenRouter's generation endpoint for the cost of the usage events with a generation id and record the "
        "difference from the ledger; with --report, print (or write as CSV) the drift report instead."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=_positive, help="events to ask about (default LLMHIVE_RECONCILE_LIMIT)")
        parser.add_argument(
            "--since",
            type=_day,
            help="first UTC day of the events (default: LLMHIVE_RECONCILE_MAX_AGE_DAYS ago; for --report 29 days ago)",
        )
        parser.add_argument("--report", action="store_true", help="the drift report, asking OpenRouter nothing")
        parser.add_argument("--until", type=_day, help="with --report: last UTC day, included (default today)")
        parser.add_argument("--csv", metavar="PATH", help="with --report: write the per-model rows as CSV to PATH")

    def handle(self, *args, limit, since, report, until, csv, **options) -> None:
        if report:
            self.report(since, until, csv)
            return
        if until or csv:
            raise CommandError("--until and --csv go with --report")
        try:
            result = reconcile(limit, utc_midnight(since) if since else None, progress=self.progress)
        except (ReconcileError, LockBusy) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(result.summary())

    def progress(self, done: int, total: int) -> None:
        if done % PROGRESS_EVERY == 0 or done == total:
            self.stderr.write(f"{done}/{total} events checked")

    def report(self, since: date | None, until: date | None, path: str | None) -> None:
        end = until or timezone.now().date()
        start = since or end - timedelta(days=29)
        if start > end:
            raise CommandError(f"--since {start} is after --until {end}")
        figures = drift_report(start, end)
        if path:
            try:
                with open(path, "w", newline="", encoding="utf-8") as out:
                    rows = write_report_csv(figures, out)
            except OSError as exc:
                raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
            self.stdout.write(f"{rows} rows written to {path} ({start} to {end})")
            return
        self.stdout.write(f"reconciliation {start} to {end}")
        for row in [*figures["models"], {"model": "(total)", **figures["total"]}]:
            self.stdout.write(
                f"{row['model']}: {row['checked']} checked, {row['matched']} matched, {row['drift']} drift, "
                f"{row['pending']} pending, {row['not_found']} not found, {row['error']} errors; "
                f"ledger {decimal_str(row['ledger_cost_usd'])} USD, OpenRouter {decimal_str(row['openrouter_cost_usd'])} "
                f"USD, difference {decimal_str(row['difference_usd'])} USD"
            )
        for drift in figures["largest_drifts"]:
            self.stdout.write(
                f"drift {drift['request_id']} ({drift['generation_id']}, {drift['model']}): ledger "
                f"{_usd(drift['ledger_cost_usd'])}, OpenRouter {_usd(drift['openrouter_cost_usd'])}, "
                f"difference {_usd(drift['difference_usd'])} USD"
            )
