"""The admin index is a dashboard; the capability matrix and ranking pages are reachable from it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import AlertKind, Category, CategoryRanking
from tests.factories import AlertFactory, BudgetFactory, CatalogModelFactory, SyncRunFactory, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("boss", "boss@example.com", "pw-long-enough-1")
    client.force_login(user)
    return client


def test_the_dashboard_shows_freshness_models_alerts_spend_and_schedules(admin_client):
    SyncRunFactory(kind="sync", status="succeeded", finished_at=datetime.now(UTC) - timedelta(hours=2))
    CatalogModelFactory(id="acme/a", supports_tools=True)
    CatalogModelFactory(id="acme/b", status="missing")
    AlertFactory(kind=AlertKind.PRICE_CHANGE, model_id="acme/a", message="moved")
    BudgetFactory(name="Monthly", limit_usd=Decimal("100"))
    ingest(model="acme/a", cost_usd=Decimal("12.5"))

    response = admin_client.get("/admin/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Catalog freshness" in page and "2\xa0hours ago" in page
    assert "1 active" in page
    assert "Price change" in page
    assert "$12.50" in page and "Monthly" in page
    assert "Capability matrix" in page and "Next scheduled runs" in page


def test_the_dashboard_shows_when_each_budget_runs_out(admin_client):
    CatalogModelFactory(id="acme/a")
    BudgetFactory(name="Daily", period="day", limit_usd=Decimal("100"))
    BudgetFactory(name="Writers", scope="role", scope_value="writer", limit_usd=Decimal("5"))
    ingest(model="acme/a", cost_usd=Decimal("99.99"))  # $99.99/day: the last cent goes in seconds

    page = admin_client.get("/admin/").content.decode()

    spend_card = page[page.index('id="dash-spend"') : page.index('id="dash-health"')]
    assert re.search(r"runs out \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\s+at \$99\.99/day", spend_card)
    assert "not forecast to run out this month" in spend_card  # the writers: nothing spent


def test_the_dashboard_reads_in_a_fixed_number_of_queries(admin_client):
    for i in range(5):
        CatalogModelFactory(id=f"acme/m{i}")
    admin_client.get("/admin/")
    with CaptureQueriesContext(connection) as few:
        admin_client.get("/admin/")
    for i in range(5, 60):
        CatalogModelFactory(id=f"acme/m{i}")
        AlertFactory(kind=AlertKind.NEW_MODEL, model_id=f"acme/m{i}")
    with CaptureQueriesContext(connection) as many:
        admin_client.get("/admin/")
    assert len(many) == len(few)


def test_the_capability_matrix_filters_by_family_category_and_status(admin_client):
    CatalogModelFactory(id="acme/tools", supports_tools=True, supports_video=True)
    CatalogModelFactory(id="acme/plain")
    CatalogModelFactory(id="acme/gone", status="missing", supports_tools=True)

    page = admin_client.get("/admin/capabilities/").content.decode()
    active = admin_client.get("/admin/capabilities/?status=active").content.decode()

    assert "acme/tools" in page and "acme/gone" in page and "3 models" in page
    assert "acme/gone" not in active and "2 models" in active


def test_the_ranking_page_shows_a_categorys_current_ranking(admin_client):
    run = SyncRunFactory(kind="research", status="succeeded")
    category = Category.objects.get(slug="programming")
    for rank, model_id in enumerate(["acme/first", "acme/second"], start=1):
        CategoryRanking.objects.create(
            category=category, model=CatalogModelFactory(id=model_id), rank=rank, run=run, observed_at=run.started_at
        )

    page = admin_client.get("/admin/rankings/?category=programming").content.decode()

    assert page.index("acme/first") < page.index("acme/second")


def test_the_pages_need_a_staff_login(client):
    assert client.get("/admin/capabilities/").status_code == 302
    assert client.get("/admin/rankings/").status_code == 302


def test_each_alert_kind_on_the_dashboard_links_to_its_open_alerts(admin_client):
    # The links used a filter parameter the alert list does not have (it redirected to ?e=1).
    AlertFactory(kind=AlertKind.PRICE_CHANGE, model_id="acme/a")
    AlertFactory(kind=AlertKind.PRICE_CHANGE, key="price_change:acme/b", acknowledged_at=datetime.now(UTC))
    AlertFactory(kind=AlertKind.NEW_MODEL, model_id="acme/c")
    page = admin_client.get("/admin/").content.decode()
    link = re.search(r'<a href="([^"]+)">Price change</a>', page).group(1).replace("&amp;", "&")

    response = admin_client.get(link)

    assert response.status_code == 200
    assert [a.key for a in response.context["cl"].result_list] == ["price_change:acme/a"]


@pytest.mark.parametrize(
    ("age", "stale"), [(timedelta(hours=6, minutes=50), False), (timedelta(hours=7, minutes=10), True)]
)
def test_the_dashboard_and_health_judge_a_stale_catalog_alike(admin_client, anon_client, settings, age, stale):
    # They used two settings (6 h of grace on the dashboard, 60 minutes on /health).
    settings.LLMHIVE_SYNC_INTERVAL_HOURS = 6
    settings.LLMHIVE_CATALOG_GRACE_MINUTES = 60
    SyncRunFactory(kind="sync", status="succeeded", finished_at=datetime.now(UTC) - age)

    dashboard = admin_client.get("/admin/").context["dashboard"]
    health = anon_client.get("/api/v1/health").json()["checks"]["catalog"]

    assert dashboard.freshness.is_stale is stale
    assert (health["status"] == "stale") is stale
