"""What the admin shows around the list pages: empty inlines say they are empty, price history
reads per million tokens with the exact price on hover, and "View site" leads to a page that exists."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.models import PriceChange
from health.models import HealthCheckRun
from tests.factories import CatalogModelFactory, RoleFactory

pytestmark = pytest.mark.django_db


def change_page(admin_client, model) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[quote(model.pk)])
    response = admin_client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_a_model_without_history_says_so_instead_of_bare_headers(admin_client):
    page = change_page(admin_client, CatalogModelFactory(id="acme/new"))

    assert '<p class="inline-empty" id="price_changes-empty">No price changes recorded.</p>' in page
    assert "No provider endpoints recorded" in page
    assert "column-old_price" not in page  # no table of nothing


def test_price_history_reads_per_million_tokens_with_the_exact_price_on_hover(admin_client):
    model = CatalogModelFactory(id="acme/priced")
    PriceChange.objects.create(model=model, field="prompt", old=Decimal("0.00002"), new=Decimal("0.000021"))
    PriceChange.objects.create(model=model, field="request", old=None, new=Decimal("0.005"))
    PriceChange.objects.create(model=model, field="discount", old=Decimal("0"), new=Decimal("0.25"))

    page = change_page(admin_client, model)

    assert '<span class="money" title="0.000021 USD per token">$21.00 / M tokens</span>' in page
    assert '<span class="money" title="0.00002 USD per token">$20.00 / M tokens</span>' in page
    assert '<span class="money" title="0.005 USD">$0.005</span>' in page  # per request, not per token
    assert '<span title="0.25">25 %</span>' in page  # a fraction off, not money
    assert "price_changes-empty" not in page
    # the row's str() (the stored prices, 14 decimals) is hidden: the columns say it
    assert '<fieldset class="module without-original"' in page


def test_an_empty_editable_inline_keeps_its_table_and_says_it_is_empty(admin_client):
    page = change_page(admin_client, RoleFactory(slug="writer"))

    assert 'id="overrides-group"' in page or "escalation overrides for this role only" in page.lower()
    assert "No escalation overrides for this role" in page
    assert "No preferences saved" in page


def test_a_health_run_without_checks_says_so(admin_client):
    page = change_page(admin_client, HealthCheckRun.objects.create(status="succeeded"))
    assert "No model was checked in this run." in page


def test_view_site_leads_to_the_api_docs_which_answer(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert '<a href="/api/docs">View site</a>' in page
    assert admin_client.get("/api/docs").status_code == 200


def test_names_the_admin_shows_in_checkboxes_and_delete_pages_carry_no_padded_money(admin_client):
    from tests.factories import BudgetFactory

    budget = BudgetFactory(name="monthly", limit_usd=Decimal("400"))
    model = CatalogModelFactory(id="acme/priced")
    change = PriceChange.objects.create(model=model, field="prompt", old=Decimal("0.00002"), new=Decimal("0.000021"))

    assert str(budget) == "monthly (Global, $400.00 per month)"
    assert str(change) == "acme/priced prompt: 0.00002 -> 0.000021"
    delete_page = admin_client.get(reverse("admin:costs_budget_delete", args=[budget.pk])).content.decode()
    assert "$400.00" in delete_page and "400.000000" not in delete_page
