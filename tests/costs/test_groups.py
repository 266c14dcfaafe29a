"""The Finance and Catalog curators groups: made by migration, kept whole by post_migrate, and
what each lets a person do in the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from catalog.models import CatalogModel
from llmhive_site.groups import CURATORS, FINANCE, GROUPS, codenames, sync_groups
from routing.models import Role
from tests.costs.test_admin import events, export
from tests.factories import BudgetFactory, CatalogModelFactory

pytestmark = pytest.mark.django_db


def member(group: str, username: str) -> Client:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def permissions_of(name: str) -> set[tuple[str, str]]:
    return set(Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename"))


def inline_management_data(response) -> dict:
    data = {}
    for inline in response.context["inline_admin_formsets"]:
        form = inline.formset.management_form
        for name in form.fields:
            data[form.add_prefix(name)] = form[name].value()
    return data


@pytest.fixture
def catalog_model(db) -> CatalogModel:
    return CatalogModelFactory(id="acme/a")


def test_the_groups_exist_after_migrate_with_every_permission_they_name():
    for name, spec in GROUPS.items():
        assert permissions_of(name) == codenames(spec), name


def test_syncing_again_changes_nothing():
    before = {name: permissions_of(name) for name in GROUPS}
    assert sync_groups() == {name: len(perms) for name, perms in before.items()}
    assert sync_groups() == {name: len(perms) for name, perms in before.items()}
    assert {name: permissions_of(name) for name in GROUPS} == before
    assert Group.objects.filter(name__in=list(GROUPS)).count() == 2


def test_a_sync_puts_back_what_someone_removed_and_takes_away_what_was_added():
    finance = Group.objects.get(name=FINANCE)
    finance.permissions.remove(Permission.objects.get(codename="export_dailycost"))
    finance.permissions.add(Permission.objects.get(codename="change_budget"))

    sync_groups()

    codes = {code for _, code in permissions_of(FINANCE)}
    assert "export_dailycost" in codes and "change_budget" not in codes


def test_finance_views_and_exports_but_may_add_change_or_delete_nothing():
    codes = {code for _, code in permissions_of(FINANCE)}
    assert {"view_usageevent", "view_dailycost", "view_budget", "export_dailycost", "export_usageevent"} <= codes
    assert {"view_role", "view_strategy", "view_family", "view_pricechange"} <= codes
    assert not any(code.startswith(("add_", "change_", "delete_")) for code in codes)
    assert "view_catalogmodel" not in codes and "view_apikey" not in codes


def test_curators_edit_catalog_routing_and_budgets_but_export_nothing():
    perms = permissions_of(CURATORS)
    codes = {code for _, code in perms}
    for model in ("family", "category", "role", "rolepreference", "escalationoverride", "strategy", "budget"):
        assert {f"view_{model}", f"add_{model}", f"change_{model}", f"delete_{model}"} <= codes, model
    assert {"view_catalogmodel", "change_catalogmodel", "view_dailycost", "view_usageevent"} <= codes
    # What jobs write stays theirs.
    assert not (
        {"change_syncrun", "delete_syncrun", "change_pricechange", "add_catalogmodel", "delete_catalogmodel"} & codes
    )
    assert not any(code.startswith("export_") for code in codes)
    assert not any(
        app == "costs" and code.startswith(("add_", "change_", "delete_")) and not code.endswith("_budget")
        for app, code in perms
    )


def test_finance_sees_costs_and_exports_but_changes_nothing(catalog_model):
    events(3)
    finance = member(FINANCE, "fin")
    budget = BudgetFactory(name="g", limit_usd=Decimal("10"))

    assert finance.get(reverse("admin:costs_dailycost_changelist")).status_code == 200
    assert finance.get(reverse("admin:costs_usageevent_changelist")).status_code == 200
    assert finance.get(reverse("admin:routing_role_changelist")).status_code == 200
    status, rows = export(finance)
    assert status == 200 and len(rows) > 1
    assert finance.get(reverse("admin:catalog_catalogmodel_change", args=[catalog_model.pk])).status_code == 403
    assert finance.get(reverse("admin:catalog_catalogmodel_changelist")).status_code == 403
    assert (
        finance.post(
            reverse("admin:catalog_catalogmodel_changelist"),
            {"action": "disable_models", "_selected_action": [catalog_model.pk]},
        ).status_code
        == 403
    )
    assert CatalogModel.objects.get().enabled is True
    budget_page = finance.get(reverse("admin:costs_budget_change", args=[budget.pk]))
    assert budget_page.status_code == 200 and b'name="limit_usd"' not in budget_page.content  # view only
    assert (
        finance.post(
            reverse("admin:costs_budget_change", args=[budget.pk]), {"name": "g", "limit_usd": "1"}
        ).status_code
        == 403
    )
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("10")
    assert finance.get(reverse("admin:costs_budget_add")).status_code == 403


def test_curators_change_a_model_and_a_budget_but_cannot_export(catalog_model):
    curator = member(CURATORS, "cur")
    budget = BudgetFactory(name="g", limit_usd=Decimal("10"))

    url = reverse("admin:catalog_catalogmodel_change", args=[catalog_model.pk])
    page = curator.get(url)
    assert page.status_code == 200
    response = curator.post(
        url, {**inline_management_data(page), "notes": "Slow on long prompts."}
    )  # `enabled` unticked
    assert response.status_code == 302
    catalog_model.refresh_from_db()
    assert (catalog_model.enabled, catalog_model.notes) == (False, "Slow on long prompts.")

    response = curator.post(
        reverse("admin:costs_budget_change", args=[budget.pk]),
        {
            "name": "g",
            "scope": "global",
            "scope_value": "",
            "period": "month",
            "limit_usd": "20",
            "soft_limit_percent": "80",
            "action": "downgrade",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("20")

    response = curator.post(
        reverse("admin:routing_role_add"),
        {
            "slug": "summarizer",
            "name": "Summarizer",
            "description": "",
            "active": "on",
            "min_context_length": "",
            "output_modalities": ["text"],
            "default_category": "",
            "default_accuracy": "balanced",
            "exploration_rate": "0",
            "preferences-TOTAL_FORMS": "0",
            "preferences-INITIAL_FORMS": "0",
            "escalation_overrides-TOTAL_FORMS": "0",
            "escalation_overrides-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert Role.objects.filter(slug="summarizer").exists()
    assert curator.get(reverse("admin:catalog_catalogmodel_add")).status_code == 403
    assert export(curator)[0] == 403


@pytest.mark.django_db(transaction=True)
def test_the_groups_are_whole_again_after_a_flush():
    """A flush (as between transactional tests, or `manage.py flush`) deletes the groups;
    post_migrate brings them back with every permission, costs' included."""
    from django.core.management import call_command

    call_command("flush", "--noinput", verbosity=0)
    for name, spec in GROUPS.items():
        assert permissions_of(name) == codenames(spec), name
