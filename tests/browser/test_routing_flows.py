"""Routing curation in a real browser: reorder a role's preferences with the ▲ ▼ buttons, add an
escalation override with the model autocompletes, and see both in the API's next answers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from routing.models import EscalationOverride, RolePreference
from tests.browser.conftest import PASSWORD, login, messages
from tests.factories import CatalogModelFactory, RoleFactory, RolePreferenceFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


@pytest.fixture
def models(db):
    return [
        CatalogModelFactory(id=f"acme/{name}", supports_tools=True, price_prompt=price, price_completion=price)
        for name, price in (("alpha", "0.000001"), ("beta", "0.000002"), ("gamma", "0.000003"), ("delta", "0.0000001"))
    ]


def pick(page, field_id: str, text: str) -> None:
    """Choose `text` in one of the admin's autocomplete (select2) fields."""
    page.click(f"#{field_id} + .select2 .select2-selection")
    page.fill(".select2-container--open .select2-search__field", text)
    page.click(f".select2-results__option:text-is('{text}')")


def test_reorder_a_roles_preferences_and_the_next_route_follows(page, admin_user, models, api_client):
    role = RoleFactory(slug="coder", required_capabilities=["supports_tools"])
    for position, model in enumerate(models[:3], start=1):
        RolePreferenceFactory(role=role, model=model, position=position * 10)
    assert api_client.post_json("/api/v1/route", {"role": "coder"}).json()["model"] == "acme/alpha"

    login(page, "admin")
    page.goto(f"/admin/routing/role/{role.pk}/change/")
    rows = page.locator(".preference-order tbody tr.has_original")
    assert rows.count() == 3
    # gamma to the top: two clicks on its ▲.
    gamma = rows.filter(has=page.locator("option[selected][value='acme/gamma']"))
    gamma.locator(".order-up").click()
    gamma.locator(".order-up").click()
    page.click("input[name=_save]")
    assert "was changed successfully" in messages(page)

    order = list(RolePreference.objects.filter(role=role).order_by("position").values_list("model_id", flat=True))
    assert order == ["acme/gamma", "acme/alpha", "acme/beta"]
    assert api_client.post_json("/api/v1/route", {"role": "coder"}).json()["model"] == "acme/gamma"


def test_add_an_escalation_override_and_escalate_follows_it(page, admin_user, models, api_client):
    RoleFactory(slug="coder", required_capabilities=["supports_tools"])

    login(page, "admin")
    page.goto("/admin/routing/escalationoverride/add/")
    pick(page, "id_from_model", "acme/delta")
    pick(page, "id_to_model", "acme/beta")
    page.click("input[name=_save]")
    assert "was added successfully" in messages(page)
    assert EscalationOverride.objects.get().to_model_id == "acme/beta"

    body = api_client.post_json("/api/v1/escalate", {"role": "coder", "failed_model": "acme/delta"}).json()
    assert body["model"] == "acme/beta" and body["source"] == "override"

    # The reverse override would close a cycle: the admin says so and saves nothing.
    page.goto("/admin/routing/escalationoverride/add/")
    pick(page, "id_from_model", "acme/beta")
    pick(page, "id_to_model", "acme/delta")
    page.click("input[name=_save]")
    assert "would make a cycle" in page.locator(".errorlist").first.inner_text()
    assert EscalationOverride.objects.count() == 1
