"""Budget state: spend in the current window, read from the ledger's rollups.

`budget_statuses()` reads every active budget's spend in one aggregate query, with the recent
spend of its scope its forecast rests on (costs.forecast).
`BudgetBook` keeps that answer in the process for routing, which asks on every decision: it is
rebuilt when the spend or budgets data version moves (an ingest, a budget saved anywhere; seen
within LLMHIVE_SNAPSHOT_CHECK_SECONDS), or at the latest after LLMHIVE_BUDGET_STATE_TTL_SECONDS
(default 60 s, a safety net), so a decision costs no query in steady state. With the database
unreachable it keeps the state it last read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from core.alerts import NewAlert, raise_alerts
from core.models import DataVersion, version_watch
from core.money import decimal_str
from core.versions import BackgroundRefresh
from costs.forecast import Forecast, forecast_for, lead_time
from costs.ingest import rollup_deltas
from costs.models import BUDGETS_VERSION, SPEND_VERSION, Budget, BudgetScope, BudgetState, DailyCost, utc_midnight
from costs.models import AlertKind as CostAlertKind

SEVERITY = {BudgetState.OK: 0, BudgetState.SOFT_LIMIT: 1, BudgetState.EXHAUSTED: 2}
SPEND_QUANTUM = Decimal("1e-14")  # the ledger's precision


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    window_start: date
    window_end: date  # exclusive
    spent_usd: Decimal
    # What the forecast rests on: the moment the spend was read, and the scope's spend from
    # `recent_since` (the burn-rate range's first day, or the ledger's if later; None: an empty
    # ledger) to then.
    as_of: datetime | None = None
    recent_since: date | None = None
    recent_spent_usd: Decimal = Decimal(0)

    @property
    def remaining_usd(self) -> Decimal:
        return max(self.budget.limit_usd - self.spent_usd, Decimal(0))

    @property
    def state(self) -> str:
        return self.budget.state_for(self.spent_usd)

    @cached_property
    def forecast(self) -> Forecast:
        return forecast_for(self)

    def plus(self, spend: list[tuple[str, str, str, Decimal]], as_of: datetime) -> BudgetStatus:
        """This status with today's new spend added, given as (role, strategy, model, cost)
        rows: in the window and in the burn-rate range, as a read of the rollup would find it."""
        added = sum(
            (cost for role, strategy, model, cost in spend if self.applies_to(role, strategy, model)), Decimal(0)
        )
        return BudgetStatus(
            self.budget,
            self.window_start,
            self.window_end,
            spent_usd=self.spent_usd + added,
            as_of=as_of,
            recent_since=self.recent_since,
            recent_spent_usd=self.recent_spent_usd + added,
        )

    def applies_to(self, role: str | None, strategy: str | None, model: str | None) -> bool:
        scope, value = self.budget.scope, self.budget.scope_value
        return (
            scope == BudgetScope.GLOBAL
            or (scope == BudgetScope.ROLE and value == role)
            or (scope == BudgetScope.STRATEGY and value == strategy)
            or (scope == BudgetScope.MODEL and value == model)
        )

    def as_dict(self) -> dict:
        b = self.budget
        return {
            "id": b.pk,
            "name": b.name,
            "scope": b.scope,
            "scope_value": b.scope_value,
            "period": b.period,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "limit_usd": b.limit_usd,
            "soft_limit_usd": b.soft_limit_usd,
            "spent_usd": self.spent_usd,
            "remaining_usd": self.remaining_usd,
            "state": self.state,
            "action": b.action,
            "burn_rate_usd_per_day": self.forecast.burn_rate_usd_per_day,
            "forecast_exhausted_at": self.forecast.exhausted_at,
        }


SCOPE_COLUMNS = {BudgetScope.ROLE: "role", BudgetScope.STRATEGY: "strategy", BudgetScope.MODEL: "model"}


def _spend_query(
    budgets: list[Budget], windows: dict[int, tuple[date, date]], recent: tuple[date, date]
) -> tuple[str, list]:
    """One aggregate over the daily rollup: each budget's spend in its window and scope, then its
    scope's spend in the `recent` days [start, end] (the burn rate), then the rollup's first day
    (when the ledger started recording).

    Written out rather than built with the ORM: routing reads it again on every change of the
    spend (each usage batch), and compiling a FILTER per budget cost more than running it."""
    ops = connection.ops
    table, day, cost = ops.quote_name(DailyCost._meta.db_table), ops.quote_name("day"), ops.quote_name("cost_usd")
    recent_start, recent_end = (ops.adapt_datefield_value(d) for d in recent)
    sums, params = [], []
    for b in budgets:
        start, end = windows[b.pk]
        scope, scope_params = "", []
        if b.scope != BudgetScope.GLOBAL:
            scope, scope_params = f" AND {ops.quote_name(SCOPE_COLUMNS[b.scope])} = %s", [b.scope_value]
        sums.append(f"SUM(CASE WHEN {day} >= %s AND {day} < %s{scope} THEN {cost} END)")
        params += [ops.adapt_datefield_value(start), ops.adapt_datefield_value(end), *scope_params]
        sums.append(f"SUM(CASE WHEN {day} >= %s AND {day} <= %s{scope} THEN {cost} END)")
        params += [recent_start, recent_end, *scope_params]
    # The rollup's first day, read from the head of its unique key's index.
    sums.append(f"(SELECT MIN({day}) FROM {table})")
    params.append(ops.adapt_datefield_value(min([recent[0], *(start for start, _ in windows.values())])))
    return f"SELECT {', '.join(sums)} FROM {table} WHERE {day} >= %s", params


def _decimal(value) -> Decimal:
    # PostgreSQL sums numerics exactly; SQLite answers a float, read at its 15 digits.
    return Decimal(str(value) if isinstance(value, float) else value or 0).quantize(SPEND_QUANTUM)


def budget_statuses(
    budgets: list[Budget] | None = None, today: date | None = None, *, now: datetime | None = None
) -> list[BudgetStatus]:
    """Every active budget with its spend in its current window: two queries at most.

    As of `now` (default: the present); `today` alone reads a day as at its end (or now, for today)."""
    if budgets is None:
        budgets = list(Budget.objects.filter(active=True))
    if not budgets:
        return []
    if now is None:
        now = timezone.now()
        if today is not None:
            now = min(now, utc_midnight(today + timedelta(days=1)))
    now = now.astimezone(UTC)
    today = today or now.date()
    windows = {b.pk: b.window(today) for b in budgets}
    recent = (today - timedelta(days=settings.LLMHIVE_BUDGET_FORECAST_DAYS), today)
    with connection.cursor() as cursor:
        cursor.execute(*_spend_query(budgets, windows, recent))
        *sums, first_day = cursor.fetchone()
    if isinstance(first_day, str):  # SQLite answers the text it stores
        first_day = date.fromisoformat(first_day)
    recent_since = None if first_day is None else max(recent[0], first_day)
    return [
        BudgetStatus(
            b,
            *windows[b.pk],
            spent_usd=_decimal(sums[2 * i]),
            as_of=now,
            recent_since=recent_since,
            recent_spent_usd=_decimal(sums[2 * i + 1]),
        )
        for i, b in enumerate(budgets)
    ]


def check_budget_thresholds(statuses: list[BudgetStatus] | None = None) -> int:
    """Raise `budget_threshold` once per window when the soft limit is passed and once when exhausted,
    and `budget_forecast` once per window when the budget is forecast to run out within its lead
    time. Reads nothing beyond the statuses given: raising alerts costs queries only when one is due."""
    statuses = budget_statuses() if statuses is None else statuses
    alerts = []
    for status in statuses:
        b = status.budget
        levels = []
        if status.state in (BudgetState.SOFT_LIMIT, BudgetState.EXHAUSTED):
            levels.append(("soft_limit", f"passed its soft limit ({b.soft_limit_percent}%)"))
        if status.state == BudgetState.EXHAUSTED:
            levels.append(("exhausted", f"is exhausted; routing will {b.action}"))
        for level, what in levels:
            alerts.append(
                NewAlert(
                    kind=CostAlertKind.BUDGET_THRESHOLD,
                    subject=f"budget:{b.pk}:{status.window_start.isoformat()}:{level}",
                    once=True,
                    message=(
                        f"Budget '{b.name}' {what}: {decimal_str(status.spent_usd)} of {decimal_str(b.limit_usd)} USD "
                        f"spent in the {b.period} from {status.window_start.isoformat()}."
                    ),
                    details=_alert_details(status, level),
                )
            )
        forecast, lead = status.forecast, lead_time(status)
        if status.as_of is not None and forecast.within(lead, status.as_of):
            alerts.append(
                NewAlert(
                    kind=CostAlertKind.BUDGET_FORECAST,
                    subject=f"budget:{b.pk}:{status.window_start.isoformat()}:forecast",
                    once=True,
                    message=(
                        f"Budget '{b.name}' is forecast to run out at {forecast.exhausted_at:%Y-%m-%d %H:%M} UTC, "
                        f"in {_hours(forecast.exhausted_at - status.as_of)} (alert lead time {_hours(lead)}), at "
                        f"{decimal_str(forecast.burn_rate_usd_per_day)} USD/day: {decimal_str(status.spent_usd)} of "
                        f"{decimal_str(b.limit_usd)} USD spent in the {b.period} from {status.window_start.isoformat()}."
                    ),
                    details={
                        **_alert_details(status, "forecast"),
                        "forecast_exhausted_at": forecast.exhausted_at.isoformat(),
                        "burn_rate_usd_per_day": decimal_str(forecast.burn_rate_usd_per_day),
                        "lead_hours": int(lead.total_seconds() // 3600),
                    },
                )
            )
    return raise_alerts(alerts)["created"] if alerts else 0


def _alert_details(status: BudgetStatus, level: str) -> dict:
    return {
        "budget": status.budget.pk,
        "level": level,
        "window_start": status.window_start.isoformat(),
        "spent_usd": decimal_str(status.spent_usd),
        "limit_usd": decimal_str(status.budget.limit_usd),
    }


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{span.total_seconds() / 60:.0f} min"


class BudgetBook:
    """The budget state routing reads on every decision, kept in the process.

    It is reloaded (one aggregate query) when the spend or the budgets change anywhere — the
    SPEND and BUDGETS data versions, which every worker polls at most every
    LLMHIVE_SNAPSHOT_CHECK_SECONDS with the routing snapshot; another process's spend at most
    every LLMHIVE_OUTCOMES_CHECK_SECONDS, as it moves with every usage batch — and when the UTC
    day turns (every window starts at midnight). In between, a decision reads it without a query. The TTL
    (LLMHIVE_BUDGET_STATE_TTL_SECONDS) is only a safety net.
    """

    WATCHED = (SPEND_VERSION, BUDGETS_VERSION)

    def __init__(self, ttl: float | None = None) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._statuses: list[BudgetStatus] | None = None
        self._loaded_at = 0.0
        self._day: date | None = None
        self._versions: tuple | None = None
        self._stale = False
        self._budgets_stale = True  # the budgets themselves are read again with the spend
        self._batches_added = False  # this process's batches added since the last read (add_batch)
        self._background = BackgroundRefresh("llmhive-budgets")
        # (versions read, state, end of its day as a POSIX time): the state found current for
        # those versions, given again without comparing them while they stand (see statuses()).
        self._current: tuple[dict, list[BudgetStatus], float] | None = None

    def invalidate(self, *, budgets: bool = True) -> None:
        """Read the state again on the next call (the budgets too, unless only the spend moved).
        The state is kept for when the database cannot be read."""
        self._stale, self._current = True, None
        self._budgets_stale = self._budgets_stale or budgets

    def statuses(self) -> list[BudgetStatus]:
        ttl = self.ttl if self.ttl is not None else settings.LLMHIVE_BUDGET_STATE_TTL_SECONDS
        current = self._current
        if current is not None:
            # The same versions (the watch's very dict) and state as when last found current, on
            # the same day, neither past its TTL nor due for the outcomes check: still current.
            seen, statuses, day_ends = current
            if seen is version_watch.versions() and statuses is self._statuses and time.time() < day_ends:
                if not self._aged(time.monotonic() - self._loaded_at, ttl):
                    return statuses
        statuses = self._statuses
        age = time.monotonic() - self._loaded_at
        seen = version_watch.versions()
        versions = tuple(seen.get(name, 0) for name in self.WATCHED)
        if statuses is not None and version_watch.degraded:
            return statuses  # the database is away: the last state read, until it returns
        if statuses is None or self._stale or self._day != timezone.now().date():
            return self._reload(versions)
        due = self._due(age, ttl)
        if versions != self._versions or self._aged(age, ttl):
            held, current = (
                dict(zip(self.WATCHED, self._versions, strict=True)),
                dict(zip(self.WATCHED, versions, strict=True)),
            )
            if version_watch.changed_here(held, current):
                return self._reload(versions)  # this process's own change: seen at once
            only_spend = self._versions is not None and versions[1] == self._versions[1]
            if only_spend and not due:
                return statuses  # other processes' spend: taken in at most this often
            # Another process's spend or budgets: reloaded in the background while decisions
            # go on reading the state in hand (no request waits for the aggregate).
            self._background.start(self._reload, versions)
        elif not version_watch.degraded:
            self._current = (seen, statuses, utc_midnight(self._day + timedelta(days=1)).timestamp())
        return statuses

    @staticmethod
    def _due(age: float, ttl: float) -> bool:
        """Whether other processes' spend is due to be taken in, `age` seconds after a read."""
        return age >= min(ttl, settings.LLMHIVE_OUTCOMES_CHECK_SECONDS)

    def _aged(self, age: float, ttl: float) -> bool:
        """Whether the state read `age` seconds ago must be read again whatever the versions say:
        past its TTL, or holding this process's batches with the aggregate due."""
        return age > ttl or (self._batches_added and self._due(age, ttl))

    def _reload(self, versions: tuple) -> list[BudgetStatus]:
        with self._lock:
            # The budgets as read last time, while their data version stands and no save in
            # this process has touched them: only the spend is read again.
            same_budgets = (
                self._statuses is not None
                and not self._budgets_stale
                and self._versions is not None
                and self._versions[1] == versions[1]
            )
            try:
                statuses = budget_statuses([s.budget for s in self._statuses] if same_budgets else None)
            except DatabaseError:
                version_watch.database_failed()
                if self._statuses is None:
                    raise
                return self._statuses  # the last state read, until the database returns
            self._statuses, self._loaded_at, self._day = statuses, time.monotonic(), timezone.now().date()
            self._versions, self._stale, self._budgets_stale = versions, False, False
            self._batches_added = False
            return statuses

    def add_batch(self, rows: list[dict], spend_version: int) -> list[BudgetStatus] | None:
        """This process's batch, committed: its cost added to the state in hand, exactly as the
        rollup took it in (each rollup row's share rounded as the database stores it), without
        reading the aggregate again. The spend other processes reported meanwhile is taken in
        by the next read, due LLMHIVE_OUTCOMES_CHECK_SECONDS after the last one.

        None, leaving the state alone, when a full read is due instead: none yet, the state
        marked stale, the day turned, the read older than that interval, or an event of
        another day in the batch."""
        today = timezone.now().date()
        with self._lock:
            statuses, held = self._statuses, self._versions
            if (
                statuses is None
                or held is None
                or self._stale
                or self._day != today
                or time.monotonic() - self._loaded_at >= settings.LLMHIVE_OUTCOMES_CHECK_SECONDS
                or any(s.recent_since is None for s in statuses)
            ):
                return None
            spend = []
            for (day, model, strategy, role), sums in rollup_deltas(rows).items():
                if day != today:
                    return None
                spend.append((role, strategy, model, sums["cost_usd"].quantize(SPEND_QUANTUM, rounding=ROUND_HALF_UP)))
            as_of = timezone.now()
            self._statuses = [status.plus(spend, as_of) for status in statuses]
            self._versions, self._batches_added = (spend_version, held[1]), True
            return self._statuses

    def state_for(
        self,
        *,
        role: str | None = None,
        strategy: str | None = None,
        model: str | None = None,
        statuses: list[BudgetStatus] | None = None,
    ) -> BudgetStatus | None:
        """The tightest budget that applies (the most severe state, then the least remaining),
        among `statuses` if given (a decision reads the state once), else the state now."""
        applicable = [
            s for s in (self.statuses() if statuses is None else statuses) if s.applies_to(role, strategy, model)
        ]
        if not applicable:
            return None
        return max(applicable, key=lambda s: (SEVERITY[s.state], -s.remaining_usd))

    def applicable(
        self, *, role: str | None = None, strategy: str | None = None, statuses: list[BudgetStatus] | None = None
    ) -> list[BudgetStatus]:
        """Budgets for a role and strategy, with model budgets, for routing to test each candidate."""
        return [
            s
            for s in (self.statuses() if statuses is None else statuses)
            if s.budget.scope == BudgetScope.MODEL or s.applies_to(role, strategy, None)
        ]


budget_book = BudgetBook()


def _invalidate(**kwargs) -> None:
    budget_book.invalidate()
    DataVersion.bump(BUDGETS_VERSION)  # the other workers' books


post_save.connect(_invalidate, sender=Budget, dispatch_uid="costs.budget_book.save")
post_delete.connect(_invalidate, sender=Budget, dispatch_uid="costs.budget_book.delete")


def after_ingest(rows: list[dict], versions: dict[str, int], **kwargs) -> None:
    """Budgets move with the ledger: every worker sees the new spend through the spend version,
    and a threshold passed raises its alert.

    This process's book takes the batch in without a query (add_batch) and the threshold check
    uses that state; once a read is due (LLMHIVE_OUTCOMES_CHECK_SECONDS) the book is read again
    here, so the next decision in this process finds it current. Inside an outer transaction (a
    health check's ping costs), which may still roll back, the book is only marked stale."""
    if connection.in_atomic_block:
        budget_book.invalidate(budgets=False)
        check_budget_thresholds()
        return
    statuses = budget_book.add_batch(rows, versions[SPEND_VERSION])
    if statuses is None:
        budget_book.invalidate(budgets=False)
        statuses = budget_book.statuses()
    check_budget_thresholds(statuses)
