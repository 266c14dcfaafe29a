"""Costs in the admin: a read-only ledger, daily costs with an escaped CSV export and a chart,
budgets with spend and state — and the Finance and Catalog curators groups."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import CatalogModel
from costs.ingest import ingest_events
from costs.models import Budget, BudgetScope, UsageEvent
from llmhive_site.groups import CURATORS, FINANCE, sync_groups
from tests.factories import CatalogModelFactory

pytestmark = pytest.mark.django_db

EXPORT_FIELDS = ["day", "model", "strategy", "role", "requests", "successes", "tokens", "cost", "cost_per_success"]


def events(n: int, *, start: int = 0, role: str = "coder", day: datetime | None = None) -> None:
    day = day or datetime.now(timezone.utc) - timedelta(hours=1)
    ingest_events([
        {"request_id": f"r{start + i}", "occurred_at": day - timedelta(days=i % 3), "model": "acme/a", "role": role,
         "strategy": f"s{(start + i) % 7}", "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": Decimal("0.01"),
         "success": i % 4 != 0, "latency_ms": 100 + i}
        for i in range(n)
    ])


@pytest.fixture
def model(db):
    return CatalogModelFactory(id="acme/a")


def member(group: str, username: str) -> Client:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def export(client: Client) -> tuple[int, list[list[str]]]:
    response = client.post(
        reverse("admin:costs_dailycost_export"),
        {"format": "0", "resource": "0", **{f"dailycostresource_{f}": "on" for f in EXPORT_FIELDS}},
    )
    if response.status_code != 200 or "text/csv" not in response.get("Content-Type", ""):
        return response.status_code, []
    return 200, list(csv.reader(io.StringIO(response.content.decode())))


def test_the_ledger_is_read_only(admin_client, model):
    events(1)
    event = UsageEvent.objects.get()
    assert admin_client.get(reverse("admin:costs_usageevent_add")).status_code == 403
    page = admin_client.get(reverse("admin:costs_usageevent_change", args=[event.pk]))
    assert page.status_code == 200 and b'name="prompt_tokens"' not in page.content
    assert admin_client.post(reverse("admin:costs_usageevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert UsageEvent.objects.count() == 1


@pytest.mark.parametrize("name", ["usageevent", "dailycost", "budget"])
def test_cost_list_pages_take_a_fixed_number_of_queries(admin_client, model, name):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(reverse(f"admin:costs_{name}_changelist")).status_code == 200
        return len(ctx)

    events(5)
    Budget.objects.create(name="b0", limit_usd=Decimal("1"))
    small = queries()
    events(60, start=100)
    for i in range(1, 15):
        Budget.objects.create(name=f"b{i}", scope=BudgetScope.ROLE, scope_value=f"r{i}", limit_usd=Decimal("1"))
    assert queries() == small


def test_budgets_show_spend_remaining_and_state(admin_client, model):
    Budget.objects.create(name="coder month", scope=BudgetScope.ROLE, scope_value="coder", limit_usd=Decimal("0.05"))
    events(4)  # 0.04 of 0.05: past the default soft limit
    page = admin_client.get(reverse("admin:costs_budget_changelist")).content.decode()
    assert "0.04" in page and "0.01" in page and "soft_limit" in page


def test_the_daily_cost_page_draws_the_chart_inline(admin_client, model):
    events(3)
    page = admin_client.get(reverse("admin:costs_dailycost_changelist")).content.decode()
    start = page.index('<svg xmlns="http://www.w3.org/2000/svg" class="cost-chart"')
    svg = page[start:page.index("</svg>", start)]
    assert "acme/a" in svg and "<rect" in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from a network
    assert "<script" not in svg


def test_the_admin_export_escapes_every_formula_start(admin_client, model):
    nasty = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd"]
    for i, role in enumerate(nasty):
        events(1, start=i * 10, role=role)

    status, rows = export(admin_client)

    assert status == 200
    assert rows[0] == ["day", "model", "strategy", "role", "requests", "successes", "tokens", "cost_usd", "cost_per_success_usd"]
    assert sorted(r[3] for r in rows[1:]) == sorted("'" + v for v in nasty)
    assert all(r[6] == "110" for r in rows[1:])


def test_groups_exist_after_migrate_and_resync_idempotently():
    before = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert {FINANCE, CURATORS} <= set(before)
    assert sync_groups() == {name: len(perms) for name, perms in before.items() if name in (FINANCE, CURATORS)}
    after = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert after == before
    assert "export_dailycost" in before[FINANCE] and not any(p.startswith(("add_", "change_", "delete_")) for p in before[FINANCE])
    assert "export_dailycost" not in before[CURATORS] and "change_budget" in before[CURATORS]


def test_finance_sees_costs_and_exports_but_changes_nothing(model):
    events(3)
    finance = member(FINANCE, "fin")
    catalog_model = CatalogModel.objects.get()
    budget = Budget.objects.create(name="g", limit_usd=Decimal("10"))

    assert finance.get(reverse("admin:costs_dailycost_changelist")).status_code == 200
    status, rows = export(finance)
    assert status == 200 and len(rows) > 1
    assert finance.get(reverse("admin:catalog_catalogmodel_change", args=[catalog_model.pk])).status_code == 403
    assert finance.post(reverse("admin:catalog_catalogmodel_changelist"),
                        {"action": "disable_models", "_selected_action": [catalog_model.pk]}).status_code == 403
    budget_page = finance.get(reverse("admin:costs_budget_change", args=[budget.pk]))
    assert budget_page.status_code == 200 and b'name="limit_usd"' not in budget_page.content  # view only
    finance.post(reverse("admin:costs_budget_change", args=[budget.pk]), {"name": "g", "limit_usd": "1"})
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("10")


def test_curators_change_the_catalog_and_budgets_but_cannot_export(model):
    curator = member(CURATORS, "cur")
    budget = Budget.objects.create(name="g", limit_usd=Decimal("10"))

    response = curator.post(reverse("admin:catalog_catalogmodel_changelist"),
                            {"action": "disable_models", "_selected_action": ["acme/a"]})
    assert response.status_code == 302 and CatalogModel.objects.get().enabled is False
    response = curator.post(reverse("admin:costs_budget_change", args=[budget.pk]), {
        "name": "g", "scope": "global", "scope_value": "", "period": "month", "limit_usd": "20",
        "soft_limit_percent": "80", "action": "downgrade", "active": "on",
    })
    assert response.status_code == 302, response.content[:2000]
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("20")
    assert export(curator)[0] == 403


@pytest.mark.django_db(transaction=True)
def test_the_groups_are_whole_again_after_a_flush():
    """A flush (as between transactional tests, or `manage.py flush`) deletes the groups;
    post_migrate brings them back with every permission, costs' included."""
    from django.core.management import call_command

    call_command("flush", "--noinput", verbosity=0)
    finance = Group.objects.get(name=FINANCE)
    assert {"view_dailycost", "export_dailycost", "view_budget"} <= set(finance.permissions.values_list("codename", flat=True))


def test_the_ledger_page_draws_filters_and_dates_from_the_rollup(admin_client, model):
    events(2, day=datetime(2026, 3, 31, 12, tzinfo=timezone.utc), role="writer")
    events(2, start=10, day=datetime(2026, 4, 2, 12, tzinfo=timezone.utc), role="coder")

    with CaptureQueriesContext(connection) as ctx:
        page = admin_client.get(reverse("admin:costs_usageevent_changelist")).content.decode()
    assert "occurred_at__month=3" in page and "occurred_at__month=4" in page
    assert "?role=writer" in page and "?role=coder" in page
    assert not any("DISTINCT" in q["sql"] and "costs_usageevent" in q["sql"] for q in ctx.captured_queries)

    april = admin_client.get(reverse("admin:costs_usageevent_changelist") + "?occurred_at__year=2026&occurred_at__month=4").content.decode()
    assert "occurred_at__day=2" in april and "occurred_at__day=1&" in april  # March 31's spill: April 1 and 2
    day = admin_client.get(reverse("admin:costs_usageevent_changelist") + "?occurred_at__year=2026&occurred_at__month=3&occurred_at__day=30")
    assert day.context["cl"].result_count == 1  # events() spreads over three days back
