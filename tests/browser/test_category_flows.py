"""Discovered categories in a real browser: a curator adopts one /route asked for, and /route
takes it at once."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from catalog.categories import sightings
from catalog.models import Category, CategoryState
from tests.browser.conftest import PASSWORD, login, messages
from tests.factories import CatalogModelFactory, RoleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


@pytest.fixture(autouse=True)
def fresh_sightings():
    sightings.clear()
    yield
    sightings.clear()


def test_adopt_a_category_route_asked_for_and_route_takes_it(page, admin_user, api_client):
    CatalogModelFactory(id="acme/model", price_prompt="0.000001", price_completion="0.000002")
    RoleFactory(slug="coder")
    body = {"role": "coder", "category": "poetry"}
    assert api_client.post_json("/api/v1/route", body).status_code == 422
    assert api_client.post_json("/api/v1/route", {**body, "category": "knitting"}).status_code == 422

    login(page, "admin")
    page.goto("/admin/catalog/category/?state=proposed")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    page.locator("#result_list tbody tr", has_text="poetry").locator("input.action-select").check()
    page.select_option("select[name=action]", "adopt_categories")
    page.click("button[name=index]")
    assert "Adopted 1 category" in messages(page)

    page.goto("/admin/catalog/category/?state=proposed")
    assert page.locator("#result_list tbody tr").count() == 1
    assert Category.objects.get(slug="poetry").state == CategoryState.ACTIVE
    assert api_client.post_json("/api/v1/route", body).status_code == 200
