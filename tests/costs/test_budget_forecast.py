"""Budget forecasts: the burn rate from the rollup, when a budget runs out, and the alert before."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import Alert, AlertDelivery, validate_kinds
from costs.budgets import budget_statuses, check_budget_thresholds
from costs.models import AlertKind as CostAlertKind
from costs.models import BudgetPeriod, BudgetScope, BudgetState
from tests.conftest import ApiClient
from tests.factories import AlertSubscriptionFactory, BudgetFactory, CatalogModelFactory, ingest

pytestmark = pytest.mark.django_db

# Thursday 5 March 2026, noon UTC: a month budget's window started on the 1st.
NOON = datetime(2026, 3, 5, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def model(db):
    return CatalogModelFactory(id="acme/model")


def spend_daily(first: date, days: int, cost: str) -> None:
    """`cost` USD at noon of each day from `first`, in one batch."""
    noon = datetime(first.year, first.month, first.day, 12, tzinfo=UTC)
    ingest(
        *({"request_id": f"{first}+{n}", "occurred_at": noon + timedelta(days=n)} for n in range(days)),
        model="acme/model",
        cost_usd=cost,
    )


@pytest.fixture
def ten_a_day():
    """$10 a day for the seven days before NOON (26 February to 4 March) and $5 this morning: a
    burn rate of $10/day, and $45 spent in March."""
    spend_daily(date(2026, 2, 26), 7, "10")
    ingest(request_id="this-morning", occurred_at=NOON - timedelta(hours=1), model="acme/model", cost_usd="5")


def status_of(budget, now=NOON):
    return budget_statuses([budget], now=now)[0]


def test_a_budget_runs_out_when_its_remaining_amount_is_spent_at_the_burn_rate(ten_a_day):
    budget = BudgetFactory(name="month", period=BudgetPeriod.MONTH, limit_usd=Decimal("100"))

    status = status_of(budget)

    assert status.spent_usd == Decimal("45")
    assert status.recent_spent_usd == Decimal("75")  # 7 days and today so far: 7.5 days
    assert status.forecast.burn_rate_usd_per_day == Decimal("10")
    # $55 left at $10/day: 5.5 days after noon on the 5th.
    assert status.forecast.exhausted_at == datetime(2026, 3, 11, 0, 0, tzinfo=UTC)


def test_the_rate_covers_only_the_days_the_ledger_has_recorded():
    spend_daily(date(2026, 3, 3), 2, "10")  # the ledger starts on the 3rd
    budget = BudgetFactory(name="month", limit_usd=Decimal("100"))

    status = status_of(budget, now=datetime(2026, 3, 5, tzinfo=UTC))

    assert status.forecast.burn_rate_usd_per_day == Decimal("10")  # $20 over two days, not seven
    assert status.forecast.exhausted_at == datetime(2026, 3, 13, tzinfo=UTC)


def test_a_spike_moves_the_rate_by_its_share_of_the_week(ten_a_day):
    ingest(request_id="spike", occurred_at=datetime(2026, 3, 2, 13, tzinfo=UTC), model="acme/model", cost_usd="30")
    budget = BudgetFactory(name="month", limit_usd=Decimal("200"))

    assert status_of(budget).forecast.burn_rate_usd_per_day == Decimal("14")  # (75 + 30) / 7.5


def test_a_budget_created_today_forecasts_from_its_scopes_history(ten_a_day):
    # The week budget's window is Monday 2 March on; its spend history is older than the budget.
    budget = BudgetFactory(name="week", period=BudgetPeriod.WEEK, limit_usd=Decimal("60"))

    status = status_of(budget)

    assert status.spent_usd == Decimal("35")
    assert status.forecast.exhausted_at == datetime(2026, 3, 8, tzinfo=UTC)  # 2.5 days, before Monday the 9th


def test_no_forecast_when_the_window_ends_first(ten_a_day):
    budget = BudgetFactory(name="month", limit_usd=Decimal("1000"))

    forecast = status_of(budget).forecast

    assert forecast.burn_rate_usd_per_day == Decimal("10")
    assert forecast.exhausted_at is None  # 95.5 days away: the budget starts again on 1 April


def test_a_trickle_of_spend_forecasts_nothing_rather_than_failing():
    """A rate of a few 1e-14 USD a day against a large limit: the date would lie past what a
    datetime holds (an OverflowError, a 500 on GET /budgets); the window ends first."""
    ingest(request_id="trickle", occurred_at=NOON - timedelta(hours=1), model="acme/model", cost_usd="0.00000000000001")
    budget = BudgetFactory(name="month", limit_usd=Decimal("999999999"))

    forecast = status_of(budget).forecast

    assert forecast.burn_rate_usd_per_day > 0 and forecast.exhausted_at is None


def test_no_forecast_without_spend_in_the_scope(ten_a_day):
    budget = BudgetFactory(name="writers", scope=BudgetScope.ROLE, scope_value="writer", limit_usd=Decimal("10"))

    forecast = status_of(budget).forecast

    assert forecast.burn_rate_usd_per_day == 0 and forecast.exhausted_at is None


def test_no_forecast_once_exhausted(ten_a_day):
    budget = BudgetFactory(name="month", limit_usd=Decimal("40"))

    status = status_of(budget)

    assert status.state == BudgetState.EXHAUSTED and status.forecast.exhausted_at is None


def test_the_forecast_rides_on_the_same_aggregate_query(ten_a_day):
    budgets = [BudgetFactory(name=f"b{n}", scope=BudgetScope.ROLE, scope_value=f"r{n}") for n in range(5)]
    with CaptureQueriesContext(connection) as queries:
        statuses = budget_statuses(budgets, now=NOON)
        [s.forecast for s in statuses]
        check_budget_thresholds(statuses)  # nothing due: raising nothing costs nothing
    assert len(queries) == 1


# --- Alerts --------------------------------------------------------------------------------------


def forecast_alerts():
    return Alert.objects.filter(kind=CostAlertKind.BUDGET_FORECAST)


def test_the_alert_is_raised_once_within_the_lead_time_and_not_before(ten_a_day, settings):
    settings.LLMHIVE_BUDGET_FORECAST_LEAD_HOURS = 72
    budget = BudgetFactory(name="month", limit_usd=Decimal("100"))  # runs out in 132 h

    check_budget_thresholds(budget_statuses([budget], now=NOON))
    assert not forecast_alerts().exists()

    budget.forecast_lead_hours = 132
    budget.save()
    check_budget_thresholds(budget_statuses([budget], now=NOON))
    check_budget_thresholds(budget_statuses([budget], now=NOON))  # once per window

    alert = forecast_alerts().get()
    assert alert.details == {
        "budget": budget.pk,
        "level": "forecast",
        "window_start": "2026-03-01",
        "spent_usd": "45",
        "limit_usd": "100",
        "forecast_exhausted_at": "2026-03-11T00:00:00+00:00",
        "burn_rate_usd_per_day": "10",
        "lead_hours": 132,
    }
    assert "'month' is forecast to run out at 2026-03-11 00:00 UTC, in 132 h" in alert.message


def test_the_setting_sets_the_lead_time_of_budgets_without_their_own(ten_a_day, settings):
    settings.LLMHIVE_BUDGET_FORECAST_LEAD_HOURS = 132
    budget = BudgetFactory(name="month", limit_usd=Decimal("100"))

    assert check_budget_thresholds(budget_statuses([budget], now=NOON)) == 1


def test_ingest_raises_the_alert_and_subscriptions_can_ask_for_it(not_at_midnight):
    validate_kinds([CostAlertKind.BUDGET_FORECAST])
    subscription = AlertSubscriptionFactory(kinds=[CostAlertKind.BUDGET_FORECAST])
    BudgetFactory(name="today", period=BudgetPeriod.DAY, limit_usd=Decimal("100"), soft_limit_percent=100)

    ingest(model="acme/model", cost_usd="99.99")  # a ledger that started today: $99.99/day, 8.64 s to go
    ingest(model="acme/model", cost_usd="0.001")

    alert = forecast_alerts().get()
    assert AlertDelivery.objects.filter(alert=alert, subscription=subscription).count() == 1


# --- API, dashboard and admin ------------------------------------------------------------------------


def test_the_budgets_api_answers_the_rate_and_the_forecast(make_api_key, not_at_midnight):
    day = BudgetFactory(name="today", period=BudgetPeriod.DAY, limit_usd=Decimal("100"))
    BudgetFactory(name="writers", scope=BudgetScope.ROLE, scope_value="writer", limit_usd=Decimal("5"))
    before = datetime.now(UTC)
    ingest(model="acme/model", cost_usd="99.99", occurred_at=before)

    response = ApiClient(make_api_key("costs:read")).get("/api/v1/budgets")
    after = datetime.now(UTC)

    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()}
    today = rows["today"]
    assert today["id"] == day.pk
    # A ledger that started today counts a whole day: $99.99/day, so the last cent goes in 8.64 s.
    assert today["burn_rate_usd_per_day"] == "99.99"
    exhausted_at = datetime.fromisoformat(today["forecast_exhausted_at"])
    assert before + timedelta(seconds=7) <= exhausted_at <= after + timedelta(seconds=9)
    assert rows["writers"]["burn_rate_usd_per_day"] == "0" and rows["writers"]["forecast_exhausted_at"] is None


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw-long-enough-1"))
    return client


def test_the_admin_shows_each_budgets_forecast(admin_client, not_at_midnight):
    BudgetFactory(name="today", period=BudgetPeriod.DAY, limit_usd=Decimal("100"))
    BudgetFactory(name="writers", scope=BudgetScope.ROLE, scope_value="writer", limit_usd=Decimal("5"))
    ingest(model="acme/model", cost_usd="99.99")

    page = admin_client.get("/admin/costs/budget/").content.decode()

    assert "Forecast to run out" in page and 'title="at 99.99 USD/day"' in page
    assert "not this month" in page  # the writers' budget: nothing spent
