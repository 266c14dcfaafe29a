"""Costs in the admin: a read-only ledger that stays quick at volume, daily costs with an escaped
CSV export and a chart, budgets with spend and state."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.money import usd_html
from costs.admin import EstimatedCountPaginator
from costs.charts import cost_chart_svg
from costs.models import BudgetScope, UsageEvent
from tests.factories import BudgetFactory, CatalogModelFactory, ingest

pytestmark = pytest.mark.django_db

EXPORT_FIELDS = [
    "day",
    "model",
    "strategy",
    "role",
    "requests",
    "successes",
    "tokens",
    "cost",
    "cost_per_success",
    "unpriced_requests",
]
EXPORT_HEADER = [
    "day",
    "model",
    "strategy",
    "role",
    "requests",
    "successes",
    "tokens",
    "cost_usd",
    "cost_per_success_usd",
    "unpriced_requests",
]
FORMULA_STARTS = [
    '=HYPERLINK("http://x")',
    "+1",
    "-2",
    "@SUM(A1)",
    "\tcmd",
    "\rcmd",
    "\ncmd",
    "\uff1dHYPERLINK(1)",
    "\uff0b1",
    "\uff0d2",
    "\uff20SUM(A1)",
]


def events(
    n: int,
    *,
    start: int = 0,
    role: str = "coder",
    day: datetime | None = None,
    model: str = "acme/a",
    cost: str = "0.01",
    spread_days: int = 3,
) -> None:
    """`n` usage events an hour ago (or on `day`), spread over `spread_days` days back."""
    day = day or datetime.now(UTC) - timedelta(hours=1)
    ingest(
        *[
            {
                "request_id": f"r{start + i}",
                "occurred_at": day - timedelta(days=i % spread_days),
                "strategy": f"s{(start + i) % 7}",
                "success": i % 4 != 0,
                "latency_ms": 100 + i,
            }
            for i in range(n)
        ],
        model=model,
        role=role,
        prompt_tokens=100,
        completion_tokens=10,
        cost_usd=cost,
    )


@pytest.fixture
def model(db):
    return CatalogModelFactory(id="acme/a")


def export(client: Client) -> tuple[int, list[list[str]]]:
    """The admin's CSV export of daily costs, as a person asks for it: format, resource, fields."""
    response = client.post(
        reverse("admin:costs_dailycost_export"),
        {"format": "0", "resource": "0", **{f"dailycostresource_{f}": "on" for f in EXPORT_FIELDS}},
    )
    if response.status_code != 200 or "text/csv" not in response.get("Content-Type", ""):
        return response.status_code, []
    return 200, list(csv.reader(io.StringIO(response.content.decode())))


# --- The ledger ----------------------------------------------------------------------------------


def test_the_ledger_is_read_only(admin_client, model):
    events(1)
    event = UsageEvent.objects.get()
    assert admin_client.get(reverse("admin:costs_usageevent_add")).status_code == 403
    page = admin_client.get(reverse("admin:costs_usageevent_change", args=[event.pk]))
    assert page.status_code == 200 and b'name="prompt_tokens"' not in page.content
    assert (
        admin_client.post(reverse("admin:costs_usageevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    )
    assert (
        admin_client.post(reverse("admin:costs_usageevent_change", args=[event.pk]), {"prompt_tokens": "9"}).status_code
        == 403
    )
    assert UsageEvent.objects.get().prompt_tokens == 100


def test_the_ledger_page_lists_filters_and_searches(admin_client, model):
    events(3, role="writer")
    events(2, start=10, role="coder")

    page = admin_client.get(reverse("admin:costs_usageevent_changelist"))
    assert page.status_code == 200
    content = page.content.decode()
    for column in ("model_ref", "role", "strategy", "prompt_tokens", "cost", "success", "occurred_at"):
        assert f"column-{column}" in content
    assert len(page.context["cl"].result_list) == 5

    writers = admin_client.get(reverse("admin:costs_usageevent_changelist"), {"role": "writer"})
    assert {e.role for e in writers.context["cl"].result_list} == {"writer"}
    failed = admin_client.get(reverse("admin:costs_usageevent_changelist"), {"success__exact": "0"})
    assert [e.success for e in failed.context["cl"].result_list] == [False, False]
    found = admin_client.get(reverse("admin:costs_usageevent_changelist"), {"q": "r11"})
    assert [e.request_id for e in found.context["cl"].result_list] == ["r11"]


@pytest.mark.parametrize("name", ["usageevent", "dailycost", "budget"])
def test_cost_list_pages_take_a_fixed_number_of_queries(admin_client, model, name):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(reverse(f"admin:costs_{name}_changelist")).status_code == 200
        return len(ctx)

    events(5)
    BudgetFactory(name="b0", limit_usd=Decimal("1"))
    small = queries()
    events(50, start=100)
    for i in range(1, 50):
        BudgetFactory(name=f"b{i}", scope=BudgetScope.ROLE, scope_value=f"r{i}", limit_usd=Decimal("1"))
    assert queries() == small


def test_the_ledger_page_draws_filters_and_dates_from_the_rollup(admin_client, model):
    events(2, day=datetime(2026, 3, 31, 12, tzinfo=UTC), role="writer")
    events(2, start=10, day=datetime(2026, 4, 2, 12, tzinfo=UTC), role="coder")

    with CaptureQueriesContext(connection) as ctx:
        page = admin_client.get(reverse("admin:costs_usageevent_changelist")).content.decode()
    assert "occurred_at__month=3" in page and "occurred_at__month=4" in page
    assert "?role=writer" in page and "?role=coder" in page
    assert not any("DISTINCT" in q["sql"] and "costs_usageevent" in q["sql"] for q in ctx.captured_queries)

    april = admin_client.get(
        reverse("admin:costs_usageevent_changelist") + "?occurred_at__year=2026&occurred_at__month=4"
    ).content.decode()
    assert "occurred_at__day=2" in april and "occurred_at__day=1&" in april  # March 31's spill: April 1 and 2
    day = admin_client.get(
        reverse("admin:costs_usageevent_changelist")
        + "?occurred_at__year=2026&occurred_at__month=3&occurred_at__day=30"
    )
    assert day.context["cl"].result_count == 1  # events() spreads over three days back


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's estimate is PostgreSQL's")
def test_an_unfiltered_ledger_is_counted_from_the_planners_estimate_not_count(model):
    events(40)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {UsageEvent._meta.db_table}")  # reltuples: 40

    class SmallTablePaginator(EstimatedCountPaginator):
        EXACT_BELOW = 10  # the production threshold (100,000) scaled down to a test's ledger

    with CaptureQueriesContext(connection) as ctx:
        assert SmallTablePaginator(UsageEvent.objects.all(), 100).count == 40
    assert not any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)
    assert any("reltuples" in q["sql"] for q in ctx.captured_queries)

    with CaptureQueriesContext(connection) as ctx:  # a filtered list is counted exactly
        assert SmallTablePaginator(UsageEvent.objects.filter(role="nobody"), 100).count == 0
    assert any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)


def test_a_small_ledger_is_counted_exactly(model):
    events(3)
    assert EstimatedCountPaginator(UsageEvent.objects.all(), 100).count == 3


# --- Budgets -------------------------------------------------------------------------------------


def test_budgets_show_spend_remaining_and_state(admin_client, model, not_at_midnight):
    BudgetFactory(name="coder month", scope=BudgetScope.ROLE, scope_value="coder", limit_usd=Decimal("0.05"))
    BudgetFactory(name="writer month", scope=BudgetScope.ROLE, scope_value="writer", limit_usd=Decimal("0.02"))
    BudgetFactory(name="old", scope=BudgetScope.ROLE, scope_value="old", limit_usd=Decimal("1"), active=False)
    # Today, between midnight and now: inside this month's window on any day of it.
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date(), datetime.min.time(), UTC)
    today = midnight + (now - midnight) / 2
    events(4, day=today, spread_days=1)  # 0.04 of 0.05: past the default soft limit
    events(3, start=10, role="writer", day=today, spread_days=1)  # 0.03 of 0.02: exhausted

    response = admin_client.get(reverse("admin:costs_budget_changelist"))

    rows = {b.name: b for b in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin
    assert (
        admin.spent(rows["coder month"]),
        admin.remaining(rows["coder month"]),
        admin.state(rows["coder month"]),
    ) == (usd_html(Decimal("0.04")), usd_html(Decimal("0.01")), "soft_limit")
    assert (admin.spent(rows["writer month"]), admin.state(rows["writer month"])) == (
        '<span class="money" title="0.03 USD">$0.03</span>',
        "exhausted",
    )
    assert admin.state(rows["old"]) == "inactive"
    content = response.content.decode()
    assert "soft_limit" in content and "exhausted" in content
    # limits without the stored padding ('0.05000000000000'), the exact value on hover
    assert '<td class="field-limit"><span class="money" title="0.05 USD">$0.05</span></td>' in content
    assert 'class="field-limit">0.05' not in content


# --- Daily costs: chart and export ---------------------------------------------------------------


def test_the_daily_cost_page_draws_the_chart_inline(admin_client, model):
    events(3)
    page = admin_client.get(reverse("admin:costs_dailycost_changelist")).content.decode()
    start = page.index('<svg xmlns="http://www.w3.org/2000/svg" class="cost-chart"')
    svg = page[start : page.index("</svg>", start)]
    assert "acme/a" in svg and "<rect" in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from a network
    assert "<script" not in svg


def test_the_chart_stacks_the_top_six_models_and_other_in_one_query(db):
    # Eight models today, each dearer than the next; the dearest has a name that is markup.
    today = datetime.now(UTC).replace(hour=0, minute=30)
    names = ["<b>x&y</b>"] + [f"acme/m{i}" for i in range(7)]
    for i, name in enumerate(names):
        events(1, start=100 * i, model=name, day=today, cost=str(8 - i))

    with CaptureQueriesContext(connection) as ctx:
        svg = cost_chart_svg(days=30)

    assert len(ctx) == 1
    legend = re.findall(r'<text x="\d+" y="[\d.]+" font-size="10" fill="currentColor">([^<]*) \$', svg)
    assert legend == ["&lt;b&gt;x&amp;y&lt;/b&gt;", "acme/m0", "acme/m1", "acme/m2", "acme/m3", "acme/m4", "other"]
    assert "other $3.00" in svg  # acme/m5 (2) + acme/m6 (1)
    assert "<b>" not in svg and "&lt;b&gt;x&amp;y&lt;/b&gt;: $8" in svg  # escaped in the bar's title too
    assert svg.count("<rect") == 7 + 7  # one bar segment and one legend swatch per series
    assert all(f">${v}</text>" in svg for v in ("0.00", "25.00", "50.00"))  # the axis: 36 of spend, up to a round 50
    assert today.strftime("%m-%d") in svg  # today's label on the day axis


def test_the_chart_says_so_when_nothing_was_spent(db):
    svg = cost_chart_svg(days=7)
    assert "No usage in the last 7 days" in svg and "<rect" not in svg


def test_the_admin_export_escapes_every_formula_start(admin_client, model):
    for i, role in enumerate(FORMULA_STARTS):
        events(1, start=i * 10, role=role)

    status, rows = export(admin_client)

    assert status == 200
    assert rows[0] == EXPORT_HEADER
    assert sorted(r[3] for r in rows[1:]) == sorted("'" + v for v in FORMULA_STARTS)
    assert all(r[4] == "1" and r[6] == "110" and r[7] == "0.01" and r[9] == "0" for r in rows[1:])


def test_a_staff_user_without_the_export_permission_cannot_export(model):
    from django.contrib.auth.models import Permission

    events(2)
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_dailycost"))
    client = Client()
    client.force_login(user)

    page = client.get(reverse("admin:costs_dailycost_changelist"))
    assert page.status_code == 200 and b"export_link" not in page.content
    assert export(client)[0] == 403

    user.user_permissions.add(Permission.objects.get(codename="export_dailycost"))
    user = User.objects.get(pk=user.pk)  # a fresh permission cache
    client.force_login(user)
    status, rows = export(client)
    assert status == 200 and len(rows) > 1
