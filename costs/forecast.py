"""When a budget runs out at its current burn rate.

The burn rate of a budget is the spend of its scope (everything, a role, a strategy or a model)
over the last LLMHIVE_BUDGET_FORECAST_DAYS complete UTC days (default 7) plus today so far,
divided by the time that covers: those days plus the elapsed part of today. It is read from the
daily rollup in the same aggregate query as the budgets' spend (`costs.budgets.budget_statuses`),
so a forecast costs no query of its own. Why this rate:

- It is the scope's spend, not the budget's: a budget created today, or a window that started
  this morning, has the history of its traffic behind it, and the forecast is sound at once.
- A week of days smooths a spike (one expensive batch moves the rate by a seventh of itself) and
  spans the weekly rhythm of traffic; today's spend so far keeps it current when traffic grows.
- The time covered starts no earlier than the ledger's first rollup day in the range, so a
  deployment that began recording two days ago is not diluted over seven; and it is at least one
  day, so the first minutes of a fresh ledger do not extrapolate a few requests into a huge rate.
- No spend in the range: a rate of zero, and no forecast.

`forecast_exhausted_at` is the moment the remaining amount (limit minus the spend in the current
window) is spent at that rate, as an aware UTC datetime. It is null when the budget is not on
course to run out before its window ends (it resets then: BudgetPeriod), when the rate is zero,
and when the budget is already exhausted: its state says so, and a moment in the past would only
repeat it. Money stays Decimal: the rate is rounded (half even) to the ledger's 14 decimals.

A `budget_forecast` alert is raised once per budget and window when the forecast falls within the
lead time (the budget's `forecast_lead_hours`, else LLMHIVE_BUDGET_FORECAST_LEAD_HOURS), by the
same check as the threshold alerts after each ingest (`costs.budgets.check_budget_thresholds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from django.conf import settings

from costs.models import BudgetState, utc_midnight

if TYPE_CHECKING:
    from costs.budgets import BudgetStatus

RATE_QUANTUM = Decimal("1e-14")  # the ledger's precision
SECONDS_PER_DAY = Decimal(86_400)


@dataclass(frozen=True)
class Forecast:
    burn_rate_usd_per_day: Decimal
    exhausted_at: datetime | None  # aware, UTC; None when not on course to run out in the window

    def within(self, lead: timedelta, now: datetime) -> bool:
        return self.exhausted_at is not None and self.exhausted_at - now <= lead


def burn_rate(status: BudgetStatus) -> Decimal:
    """USD per day: the scope's recent spend over the days it covers (at least one)."""
    if status.as_of is None or status.recent_since is None or not status.recent_spent_usd:
        return Decimal(0)
    seconds = Decimal(str((status.as_of - utc_midnight(status.recent_since)).total_seconds()))
    days = max(seconds / SECONDS_PER_DAY, Decimal(1))
    return (status.recent_spent_usd / days).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def forecast_for(status: BudgetStatus) -> Forecast:
    rate = burn_rate(status)
    if rate <= 0 or status.state == BudgetState.EXHAUSTED:
        return Forecast(rate, None)
    seconds = status.remaining_usd / rate * SECONDS_PER_DAY
    window_left = Decimal(str((utc_midnight(status.window_end) - status.as_of).total_seconds()))
    if seconds >= window_left:
        # The window ends first, and the budget starts again. (Compared as numbers: a rate of
        # a few 1e-14 USD a day puts the date past what a datetime can hold.)
        return Forecast(rate, None)
    return Forecast(rate, status.as_of + timedelta(seconds=int(seconds)))  # to the second


def lead_time(status: BudgetStatus) -> timedelta:
    hours = status.budget.forecast_lead_hours
    return timedelta(hours=settings.LLMHIVE_BUDGET_FORECAST_LEAD_HOURS if hours is None else hours)
