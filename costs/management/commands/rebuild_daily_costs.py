"""manage.py rebuild_daily_costs [--start YYYY-MM-DD] [--end YYYY-MM-DD]"""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from costs.rollups import rebuild_daily_costs


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a day (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = "Recompute the daily cost rollup from the usage ledger (all days, or a range of UTC days)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--start", type=_day, help="first UTC day (default: the first in the ledger)")
        parser.add_argument("--end", type=_day, help="last UTC day, included (default: the last)")

    def handle(self, *args, start: date | None, end: date | None, **options) -> str:
        if start and end and start > end:
            raise CommandError(f"--start {start} is after --end {end}")
        counts = rebuild_daily_costs(start, end)
        span = f"{start or 'the first day'} to {end or 'the last day'}"
        return f"daily costs rebuilt from {span}: {counts['written']} rows written, {counts['removed']} replaced"
