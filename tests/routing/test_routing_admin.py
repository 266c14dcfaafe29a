"""The routing admin: roles with capability checkboxes and ordered preferences, overrides,
strategies and strategy memory — validation with clear messages, no query per row."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from core.models import DataVersion
from routing.models import ROUTING_VERSION, EscalationOverride, Role, Strategy, StrategyStat
from tests.factories import (
    CatalogModelFactory,
    EscalationOverrideFactory,
    FamilyFactory,
    RoleFactory,
    RolePreferenceFactory,
    StrategyFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def models(db):
    return {
        "tools": CatalogModelFactory(id="acme/tools", supports_tools=True),
        "tools2": CatalogModelFactory(id="acme/tools-2", supports_tools=True),
        "plain": CatalogModelFactory(id="acme/plain"),
    }


def role_form(**overrides) -> dict:
    data = {
        "slug": "coder",
        "name": "Coder",
        "description": "",
        "active": "on",
        "required_capabilities": ["supports_tools"],
        "min_context_length": "",
        "output_modalities": ["text"],
        "default_category": "",
        "default_accuracy": "balanced",
        "exploration_rate": "0",
        "preferences-TOTAL_FORMS": "0",
        "preferences-INITIAL_FORMS": "0",
        "preferences-MIN_NUM_FORMS": "0",
        "preferences-MAX_NUM_FORMS": "1000",
        "escalation_overrides-TOTAL_FORMS": "0",
        "escalation_overrides-INITIAL_FORMS": "0",
        "escalation_overrides-MIN_NUM_FORMS": "0",
        "escalation_overrides-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def preference_rows(*rows: tuple[str, int]) -> dict:
    data = {"preferences-TOTAL_FORMS": str(len(rows))}
    for index, (model_id, position) in enumerate(rows):
        data[f"preferences-{index}-model"] = model_id
        data[f"preferences-{index}-family"] = ""
        data[f"preferences-{index}-position"] = str(position)
    return data


def test_a_role_is_made_with_capability_checkboxes_and_ordered_preferences(admin_client, models):
    page = admin_client.get(reverse("admin:routing_role_add"))
    assert page.status_code == 200
    assert b'type="checkbox" name="required_capabilities" value="supports_tools"' in page.content
    assert b"routing/preference_order.js" in page.content

    response = admin_client.post(
        reverse("admin:routing_role_add"),
        role_form(**preference_rows(("acme/tools-2", 5), ("acme/tools", 7))),
    )

    assert response.status_code == 302, response.context["errors"] if response.context else response
    role = Role.objects.get(slug="coder")
    assert role.required_capabilities == ["supports_tools"]
    prefs = list(role.preferences.values_list("model_id", "position"))
    assert prefs == [("acme/tools-2", 10), ("acme/tools", 20)]  # renumbered, order kept


def test_a_preference_for_a_model_lacking_a_required_capability_is_refused(admin_client, models):
    response = admin_client.post(
        reverse("admin:routing_role_add"),
        role_form(**preference_rows(("acme/tools", 1), ("acme/plain", 2))),
    )

    assert response.status_code == 200
    assert not Role.objects.filter(slug="coder").exists()  # nothing half-saved
    assert "acme/plain cannot serve this role: lacks supports_tools." in response.content.decode()


def test_ticking_a_capability_checks_the_existing_preferences_in_the_same_submit(admin_client, models):
    role = RoleFactory(slug="coder", required_capabilities=[])
    pref = RolePreferenceFactory(role=role, model_id="acme/plain", position=10)
    data = role_form(
        **{
            "preferences-TOTAL_FORMS": "1",
            "preferences-INITIAL_FORMS": "1",
            "preferences-0-id": str(pref.pk),
            "preferences-0-role": str(role.pk),
            "preferences-0-model": "acme/plain",
            "preferences-0-family": "",
            "preferences-0-position": "10",
        }
    )

    response = admin_client.post(reverse("admin:routing_role_change", args=[role.pk]), data)

    assert response.status_code == 200
    assert "lacks supports_tools" in response.content.decode()
    role.refresh_from_db()
    assert role.required_capabilities == []


def test_reordering_preferences_moves_the_routing_version(admin_client, models):
    role = RoleFactory(slug="coder", required_capabilities=["supports_tools"])
    first = RolePreferenceFactory(role=role, model_id="acme/tools", position=10)
    second = RolePreferenceFactory(role=role, model_id="acme/tools-2", position=20)
    before = DataVersion.current().get(ROUTING_VERSION)
    data = role_form(
        **{
            "preferences-TOTAL_FORMS": "2",
            "preferences-INITIAL_FORMS": "2",
            "preferences-0-id": str(first.pk),
            "preferences-0-role": str(role.pk),
            "preferences-0-model": "acme/tools",
            "preferences-0-family": "",
            "preferences-0-position": "20",
            "preferences-1-id": str(second.pk),
            "preferences-1-role": str(role.pk),
            "preferences-1-model": "acme/tools-2",
            "preferences-1-family": "",
            "preferences-1-position": "10",
        }
    )

    response = admin_client.post(reverse("admin:routing_role_change", args=[role.pk]), data)

    assert response.status_code == 302
    assert list(role.preferences.order_by("position").values_list("model_id", flat=True)) == [
        "acme/tools-2",
        "acme/tools",
    ]
    assert DataVersion.current().get(ROUTING_VERSION) != before


def test_an_override_that_would_make_a_cycle_is_refused_with_the_path(admin_client, models):
    EscalationOverrideFactory(from_model_id="acme/tools", to_model_id="acme/tools-2")

    response = admin_client.post(
        reverse("admin:routing_escalationoverride_add"),
        {"from_model": "acme/tools-2", "from_family": "", "to_model": "acme/tools", "role": "", "position": "0"},
    )

    assert response.status_code == 200
    assert "This override would make a cycle: acme/tools-2 → acme/tools → acme/tools-2." in response.content.decode()
    assert EscalationOverride.objects.count() == 1


def test_an_override_needs_a_model_or_a_family_not_both(admin_client, models):
    family = FamilyFactory(slug="acme", pattern="acme/*")

    both = admin_client.post(
        reverse("admin:routing_escalationoverride_add"),
        {
            "from_model": "acme/tools",
            "from_family": str(family.pk),
            "to_model": "acme/plain",
            "role": "",
            "position": "0",
        },
    )

    assert both.status_code == 200
    assert "Escalate from a model or from a family (one of them)." in both.content.decode()


def test_model_pickers_are_autocompletes(admin_client, models):
    page = admin_client.get(reverse("admin:routing_escalationoverride_add")).content.decode()
    assert "data-autocomplete-light-url" not in page  # django's own select2, not a third party
    assert page.count("admin-autocomplete") >= 3

    found = admin_client.get(
        reverse("admin:autocomplete"),
        {"term": "tools", "app_label": "routing", "model_name": "escalationoverride", "field_name": "to_model"},
    ).json()
    assert {r["id"] for r in found["results"]} == {"acme/tools", "acme/tools-2"}


def test_list_pages_take_a_fixed_number_of_queries(admin_client, models, django_assert_max_num_queries):
    def fill(n: int, start: int) -> None:
        for i in range(start, start + n):
            role = RoleFactory(slug=f"role-{i}", required_capabilities=["supports_tools"])
            RolePreferenceFactory(role=role, model_id="acme/tools")
            EscalationOverrideFactory(from_model_id="acme/tools", to_model_id="acme/tools-2", role=role, position=i)
            StrategyFactory(slug=f"strategy-{i}")
            StrategyStat.objects.create(
                model="acme/tools", strategy=f"strategy-{i}", requests=4, successes=3, cost_usd=Decimal("0.25")
            )

    counts = {}
    for size in (3, 30):
        fill(size if size == 3 else 27, 0 if size == 3 else 3)
        for name in ("role", "escalationoverride", "strategy", "strategystat"):
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as ctx:
                assert admin_client.get(reverse(f"admin:routing_{name}_changelist")).status_code == 200
            counts.setdefault(name, []).append(len(ctx))
    for name, (small, large) in counts.items():
        assert small == large, f"{name}: {small} queries for 3 rows, {large} for 30"


def test_strategies_show_what_the_memory_learned_and_rebuild_from_the_ledger(admin_client, models):
    StrategyFactory(slug="single")
    StrategyStat.objects.create(
        model="acme/tools", strategy="single", requests=10, successes=7, cost_usd=Decimal("1.5")
    )
    StrategyStat.objects.create(
        model="acme/tools-2", strategy="single", requests=10, successes=9, cost_usd=Decimal("0.5")
    )

    page = admin_client.get(reverse("admin:routing_strategy_changelist")).content.decode()
    assert "80.0%" in page and 'title="2 USD">$2.00</span>' in page

    response = admin_client.post(
        reverse("admin:routing_strategy_changelist"),
        {"action": "rebuild_memory", "_selected_action": [Strategy.objects.get().pk]},
        follow=True,
    )
    assert "Strategy memory rebuilt from the ledger: 0 rows." in response.content.decode()
    assert not StrategyStat.objects.exists()  # the ledger is empty: memory follows it


def test_strategy_memory_is_read_only(admin_client, models):
    stat = StrategyStat.objects.create(model="acme/tools", strategy="single", requests=1, successes=1)
    assert admin_client.get(reverse("admin:routing_strategystat_add")).status_code == 403
    change = admin_client.get(reverse("admin:routing_strategystat_change", args=[stat.pk]))
    assert change.status_code == 200 and b'name="requests"' not in change.content
