"""The admin flows people use, in a real browser: what they click is what routing does."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from catalog.models import AlertKind
from tests.browser.conftest import PASSWORD, login, messages
from tests.factories import AlertFactory, CatalogModelFactory, RoleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


def route(api_client, **body) -> dict:
    response = api_client.post_json("/api/v1/route", {"role": "coder", "accuracy": "economy", **body})
    assert response.status_code == 200, response.content
    return response.json()


def test_log_in_and_see_the_dashboard_with_its_figures(page, admin_user):
    for i in range(3):
        CatalogModelFactory(id=f"acme/model-{i}")

    login(page, "admin")

    assert (
        page.locator("#dash-models").inner_text().startswith("Models\n3 active")
        or "3 active" in page.locator("#dash-models").inner_text()
    )
    assert "never synced" in page.locator("#dash-freshness").inner_text()
    page.click("text=Capability matrix")
    assert page.locator("#capability-matrix tbody tr").count() == 3


def test_disable_a_model_and_the_next_route_avoids_it(page, admin_user, api_client):
    CatalogModelFactory(id="acme/cheap", price_prompt="0.0000001", price_completion="0.0000002")
    CatalogModelFactory(id="acme/dear", price_prompt="0.00001", price_completion="0.00002")
    RoleFactory(slug="coder")
    assert route(api_client)["model"] == "acme/cheap"

    login(page, "admin")
    page.goto("/admin/catalog/catalogmodel/?q=acme%2Fcheap")
    page.check("input.action-select")
    page.select_option("select[name=action]", "disable_models")
    page.click("button[name=index]")
    assert "Disabled 1 model" in messages(page)

    answer = route(api_client)
    assert answer["model"] == "acme/dear" and "acme/cheap" not in answer["fallbacks"]


def test_acknowledge_an_alert(page, admin_user):
    alert = AlertFactory(kind=AlertKind.SYNC_FAILED, message="OpenRouter unreachable")

    login(page, "admin")
    page.goto("/admin/core/alert/")
    page.check(f"input.action-select[value='{alert.pk}']")
    page.select_option("select[name=action]", "acknowledge")
    page.click("button[name=index]")

    alert.refresh_from_db()
    assert alert.acknowledged_at is not None and alert.acknowledged_by.username == "admin"
