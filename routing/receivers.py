"""Routing's answers to other apps' signals (connected in RoutingConfig.ready())."""

from __future__ import annotations

from catalog.models import CatalogModel
from core.models import DataVersion
from routing.models import ROUTING_VERSION, EscalationOverride, RolePreference

CURATED_PRIORITY = 10  # before health's most used models


def routing_changed(**kwargs) -> None:
    """A role, preference, override, strategy or quality prior was saved or deleted: every worker's snapshot rebuilds."""
    DataVersion.bump(ROUTING_VERSION)


def curated_models(**kwargs) -> tuple[int, list[str]]:
    """The models admins named for routing: role preferences (models, and the members of preferred
    families), then escalation targets and sources. Research and health checks look at these first."""
    named = list(
        RolePreference.objects.filter(model__isnull=False, role__active=True)
        .order_by("role__slug", "position")
        .values_list("model_id", flat=True)
    )
    families = RolePreference.objects.filter(family__isnull=False, role__active=True).values_list(
        "family_id", flat=True
    )
    named += list(CatalogModel.objects.filter(family_id__in=families).order_by("id").values_list("id", flat=True))
    for override in EscalationOverride.objects.order_by("position", "id").values_list("to_model_id", "from_model_id"):
        named += [m for m in override if m]
    return CURATED_PRIORITY, list(dict.fromkeys(named))
