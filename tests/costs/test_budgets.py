"""Budgets: windows in UTC, spend from the rollups, alerts once per window, a cached state."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import Alert
from costs.budgets import BudgetBook, budget_statuses, check_budget_thresholds
from costs.models import AlertKind as CostAlertKind
from costs.models import Budget, BudgetPeriod, BudgetScope, BudgetState, window_end, window_start
from tests.factories import BudgetFactory, CatalogModelFactory, ingest

pytestmark = pytest.mark.django_db


def spend(request_id: str, at: datetime, cost: str, *, role="coder", strategy="single", model="acme/model") -> None:
    ingest(request_id=request_id, occurred_at=at, model=model, role=role, strategy=strategy, cost_usd=cost)


@pytest.fixture(autouse=True)
def model(db):
    return CatalogModelFactory(id="acme/model")


@pytest.mark.parametrize(
    ("period", "day", "start", "end"),
    [
        (BudgetPeriod.DAY, date(2026, 3, 31), date(2026, 3, 31), date(2026, 4, 1)),
        (BudgetPeriod.WEEK, date(2026, 3, 1), date(2026, 2, 23), date(2026, 3, 2)),  # a Sunday
        (BudgetPeriod.WEEK, date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 9)),  # a Monday
        (BudgetPeriod.MONTH, date(2026, 2, 28), date(2026, 2, 1), date(2026, 3, 1)),
        (BudgetPeriod.MONTH, date(2028, 2, 29), date(2028, 2, 1), date(2028, 3, 1)),
        (BudgetPeriod.MONTH, date(2026, 12, 31), date(2026, 12, 1), date(2027, 1, 1)),
    ],
)
def test_windows_are_utc_days_iso_weeks_and_calendar_months(period, day, start, end):
    assert window_start(period, day) == start
    assert window_end(period, start) == end


def test_spend_counts_the_events_of_the_window_only_at_the_month_edge():
    budget = BudgetFactory(name="all", period=BudgetPeriod.MONTH, limit_usd=Decimal("10"))
    spend("jan-last", datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC), "1.25")
    spend("feb-first", datetime(2026, 2, 1, 0, 0, tzinfo=UTC), "2.5")
    spend("feb-late", datetime(2026, 2, 28, 23, 0, tzinfo=UTC), "0.00000001")

    january = budget_statuses([budget], today=date(2026, 1, 31))[0]
    february = budget_statuses([budget], today=date(2026, 2, 15))[0]

    assert january.spent_usd == Decimal("1.25")
    assert february.spent_usd == Decimal("2.50000001")
    assert february.remaining_usd == Decimal("7.49999999")
    assert february.state == BudgetState.OK


def test_a_day_budget_starts_again_at_utc_midnight_without_forgetting_history():
    budget = BudgetFactory(name="daily", period=BudgetPeriod.DAY, limit_usd=Decimal("1"))
    spend("late", datetime(2026, 3, 9, 23, 30, tzinfo=UTC), "1")

    assert budget_statuses([budget], today=date(2026, 3, 9))[0].state == BudgetState.EXHAUSTED
    assert budget_statuses([budget], today=date(2026, 3, 10))[0].spent_usd == 0
    # Nothing was reset: the ledger still answers for the day before.
    assert budget_statuses([budget], today=date(2026, 3, 9))[0].spent_usd == Decimal("1")


def test_scoped_budgets_count_only_their_role_strategy_or_model():
    CatalogModelFactory(id="acme/other")
    at = datetime.now(UTC)
    spend("a", at, "1", role="coder", strategy="single")
    spend("b", at, "2", role="writer", strategy="ensemble")
    spend("c", at, "4", role="writer", strategy="single", model="acme/other")
    budgets = [
        BudgetFactory(name="g", limit_usd=100),
        BudgetFactory(name="r", scope=BudgetScope.ROLE, scope_value="writer", limit_usd=100),
        BudgetFactory(name="s", scope=BudgetScope.STRATEGY, scope_value="single", limit_usd=100),
        BudgetFactory(name="m", scope=BudgetScope.MODEL, scope_value="acme/other", limit_usd=100),
    ]

    spent = {s.budget.name: s.spent_usd for s in budget_statuses(budgets)}

    assert spent == {"g": 7, "r": 6, "s": 5, "m": 4}


def test_states_follow_the_soft_and_hard_limits():
    budget = BudgetFactory(name="b", limit_usd=Decimal("10"), soft_limit_percent=80)
    assert budget.state_for(Decimal("7.99")) == BudgetState.OK
    assert budget.state_for(Decimal("8")) == BudgetState.SOFT_LIMIT
    assert budget.state_for(Decimal("10")) == BudgetState.EXHAUSTED


def test_threshold_alerts_are_raised_once_per_window_and_level():
    BudgetFactory(name="daily", period=BudgetPeriod.DAY, limit_usd=Decimal("10"), soft_limit_percent=50)
    now = datetime.now(UTC)

    spend("1", now, "4")
    assert Alert.objects.filter(kind=CostAlertKind.BUDGET_THRESHOLD).count() == 0
    spend("2", now, "2")  # 6 of 10: past the soft limit
    spend("3", now, "1")  # still soft: no second alert
    soft = Alert.objects.get(kind=CostAlertKind.BUDGET_THRESHOLD)
    assert soft.details["level"] == "soft_limit" and "daily" in soft.message
    soft.acknowledged_at = now  # acknowledged alerts are not raised again in the same window
    soft.save()
    spend("4", now, "3")  # 10 of 10: exhausted
    spend("5", now, "1")
    check_budget_thresholds()

    levels = sorted(Alert.objects.filter(kind=CostAlertKind.BUDGET_THRESHOLD).values_list("details__level", flat=True))
    assert levels == ["exhausted", "soft_limit"]


def test_a_new_window_raises_its_own_alerts():
    budget = BudgetFactory(name="daily", period=BudgetPeriod.DAY, limit_usd=Decimal("1"))
    spend("mon", datetime(2026, 3, 9, 12, tzinfo=UTC), "1")
    spend("tue", datetime(2026, 3, 10, 12, tzinfo=UTC), "1")

    check_budget_thresholds(budget_statuses([budget], today=date(2026, 3, 9)))
    check_budget_thresholds(budget_statuses([budget], today=date(2026, 3, 10)))
    check_budget_thresholds(budget_statuses([budget], today=date(2026, 3, 10)))

    windows = sorted(Alert.objects.filter(details__level="exhausted").values_list("details__window_start", flat=True))
    assert windows == ["2026-03-09", "2026-03-10"]


def test_the_budget_book_answers_without_queries_in_steady_state():
    BudgetFactory(name="g", limit_usd=Decimal("5"))
    BudgetFactory(name="r", scope=BudgetScope.ROLE, scope_value="coder", limit_usd=Decimal("1"))
    spend("1", datetime.now(UTC), "1")
    book = BudgetBook(ttl=3600)
    book.statuses()

    with CaptureQueriesContext(connection) as queries:
        for _ in range(1000):
            state = book.state_for(role="coder", strategy="single", model="acme/model")

    assert len(queries) == 0
    assert state.budget.name == "r" and state.state == BudgetState.EXHAUSTED
    assert book.state_for(role="writer").budget.name == "g"


def test_the_budget_book_sees_a_changed_budget_at_once_and_new_spend_after_its_ttl():
    budget = BudgetFactory(name="g", limit_usd=Decimal("5"))
    book = BudgetBook(ttl=0.0)
    assert book.state_for().state == BudgetState.OK
    spend("1", datetime.now(UTC), "5")
    assert book.state_for().state == BudgetState.EXHAUSTED

    cached = BudgetBook(ttl=3600)
    cached.statuses()
    budget.limit_usd = Decimal("50")
    budget.save()
    from costs.budgets import budget_book

    budget_book.statuses()
    budget.limit_usd = Decimal("4")
    budget.save()  # the process-wide book drops its state on save
    assert budget_book.state_for().state == BudgetState.EXHAUSTED


def test_budget_api_lists_spend_remaining_and_state(api_client):
    BudgetFactory(name="monthly", limit_usd=Decimal("10.5"), soft_limit_percent=50)
    spend("1", datetime.now(UTC), "6.25")

    rows = api_client.get("/api/v1/budgets").json()

    assert len(rows) == 1
    row = rows[0]
    assert (row["limit_usd"], row["spent_usd"], row["remaining_usd"], row["state"]) == (
        "10.5",
        "6.25",
        "4.25",
        "soft_limit",
    )
    assert (
        row["soft_limit_usd"] == "5.25" and row["window_start"] == datetime.now(UTC).date().replace(day=1).isoformat()
    )


def test_a_global_budget_with_a_scope_value_is_refused():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        Budget(name="x", scope=BudgetScope.GLOBAL, scope_value="coder", limit_usd=1).full_clean()
    assert "scope_value" in error.value.message_dict
    with pytest.raises(ValidationError):
        Budget(name="y", scope=BudgetScope.ROLE, scope_value="", limit_usd=1).full_clean()


def test_every_budget_book_sees_new_spend_and_edited_budgets_through_the_data_versions():
    """A book in another worker has no signal from this one: it learns from the versions."""
    budget = BudgetFactory(name="g", limit_usd=Decimal("5"))
    other_worker = BudgetBook(ttl=3600)
    assert other_worker.state_for().state == BudgetState.OK

    spend("1", datetime.now(UTC), "5")
    assert other_worker.state_for().state == BudgetState.EXHAUSTED

    Budget.objects.filter(pk=budget.pk).update(limit_usd=Decimal("50"))  # no signal: still exhausted
    assert other_worker.state_for().state == BudgetState.EXHAUSTED
    budget.refresh_from_db()
    budget.save()
    assert other_worker.state_for().state == BudgetState.OK


@pytest.mark.django_db(transaction=True)
def test_a_batch_brings_this_process_book_up_to_date_so_the_next_decision_reads_nothing():
    """After a committed batch, the ingest reads this process's budget state once, shares that
    read with the threshold check, and routing's next decision finds it current; the budgets
    themselves are not read again while their version stands."""
    from costs.budgets import budget_book

    BudgetFactory(name="g", limit_usd=Decimal("1"))
    BudgetFactory(name="r", scope=BudgetScope.ROLE, scope_value="writer", limit_usd=Decimal("1"))
    assert budget_book.state_for().state == BudgetState.OK

    with CaptureQueriesContext(connection) as during:
        spend("1", datetime.now(UTC), "1.5")
    with CaptureQueriesContext(connection) as after:
        state = budget_book.state_for(role="coder")

    assert state.budget.name == "g" and state.state == BudgetState.EXHAUSTED
    assert len(after) == 0
    reads = [q["sql"] for q in during if "costs_dailycost" in q["sql"] and q["sql"].startswith("SELECT")]
    assert len(reads) == 1
    assert not [q for q in during if 'FROM "costs_budget"' in q["sql"]]
    assert Alert.objects.filter(kind=CostAlertKind.BUDGET_THRESHOLD, details__level="exhausted").count() == 1
    assert budget_book.state_for(role="writer").budget.name == "g"


@pytest.mark.django_db(transaction=True)
def test_a_worker_adds_its_own_batches_to_its_budget_state_exactly_without_the_aggregate(
    settings, model, not_at_midnight
):
    """After a full read, each batch this process stores is added to its budget state as the
    rollup takes it in (each rollup row's share rounded as the database stores it): equal, digit
    for digit, to a fresh read, with no aggregate query per batch. Once a read is due
    (LLMHIVE_OUTCOMES_CHECK_SECONDS) the book reads the aggregate again."""
    from costs.budgets import budget_book

    settings.LLMHIVE_OUTCOMES_CHECK_SECONDS = 60  # no read falls due inside the test
    CatalogModelFactory(id="acme/other")
    BudgetFactory(name="all", limit_usd=Decimal("5"))
    BudgetFactory(name="coder-day", scope=BudgetScope.ROLE, scope_value="coder", period=BudgetPeriod.DAY)
    BudgetFactory(name="other", scope=BudgetScope.MODEL, scope_value="acme/other", limit_usd=Decimal("1"))
    BudgetFactory(name="ensemble", scope=BudgetScope.STRATEGY, scope_value="ensemble", period=BudgetPeriod.WEEK)
    now = datetime.now(UTC)
    ingest(2, cost_usd="0.1", occurred_at=now)  # the first batch: a full read
    costs = [
        "0.000000000000004",
        "0.000000000000005",
        "1.23456789012345",
        "0.3333333333333333333",
        "0.00000000000000049",
    ]
    with CaptureQueriesContext(connection) as queries:
        for n, cost in enumerate(costs):
            ingest(
                {"cost_usd": cost, "role": "writer", "request_id": f"w-{n}"},
                {"cost_usd": cost, "model": "acme/other", "strategy": "ensemble", "request_id": f"o-{n}"},
                {"cost_usd": cost, "request_id": f"c-{n}"},
                occurred_at=now,
            )
    assert not [q for q in queries.captured_queries if "SUM(CASE" in q["sql"]]
    held = {s.budget.name: (s.spent_usd, s.recent_spent_usd) for s in budget_book.statuses()}
    fresh = {s.budget.name: (s.spent_usd, s.recent_spent_usd) for s in budget_statuses()}
    if connection.vendor == "postgresql":
        assert held == fresh
    else:  # SQLite sums the rollup in floating point: the fresh read is the approximate one
        assert all(
            abs(a - b) <= Decimal("1e-13") for name in held for a, b in zip(held[name], fresh[name], strict=True)
        )
    # Rounded half up, as the database stores numerics (5e-15 is 1e-14, not 0).
    assert held["other"][0] == sum(Decimal(c).quantize(Decimal("1e-14"), rounding=ROUND_HALF_UP) for c in costs)

    # Due: the next batch reads the aggregate again (and takes in what others stored meanwhile).
    settings.LLMHIVE_OUTCOMES_CHECK_SECONDS = 0
    with CaptureQueriesContext(connection) as queries:
        ingest(cost_usd="0.5", occurred_at=now)
    assert [q for q in queries.captured_queries if "SUM(CASE" in q["sql"]]
