"""manage.py load_demo: a living dashboard for a newcomer, loaded twice without doubling."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from costs.models import Budget, DailyCost, UsageEvent
from routing.decision import RouteRequest, decide
from routing.models import Role, RolePreference
from tests.factories import CatalogModelFactory

pytestmark = pytest.mark.django_db


def test_it_refuses_an_empty_catalog_with_one_line():
    with pytest.raises(CommandError, match="sync it first"):
        call_command("load_demo")


def test_it_loads_roles_budgets_and_usage_idempotently():
    for i in range(12):
        CatalogModelFactory(
            id=f"demo/m{i}",
            supports_tools=i % 2 == 0,
            supports_reasoning=i % 3 == 0,
            supports_structured_outputs=True,
            supports_multimodal_image=i % 4 == 0,
        )

    summary = call_command("load_demo", days=2, events_per_day=300)
    events = UsageEvent.objects.count()
    again = call_command("load_demo", days=2, events_per_day=300)

    assert "12 roles" in summary and Role.objects.exclude(slug="general").count() == 12  # and the installed one
    assert Budget.objects.count() == 3 and RolePreference.objects.exists()
    assert events > 300 and UsageEvent.objects.count() == events and "0 new usage events" in again
    assert DailyCost.objects.filter(day__isnull=False).exists()
    for role in Role.objects.exclude(slug__in=["vision"]):
        assert decide(RouteRequest(role=role.slug))["model"]
