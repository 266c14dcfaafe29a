"""Health's answers to the catalog's signals (connected in HealthConfig.ready())."""

from __future__ import annotations

from catalog.models import CatalogModel
from health.selectors import latest_health
from health.selectors import most_used_models as _most_used

MOST_USED_PRIORITY = 20  # after the models admins named (routing's curated models)


def model_health(model: CatalogModel, **kwargs) -> dict:
    """GET /models/{id}'s "health": reliability and the latest check, or null when never checked."""
    found = latest_health(model.id)
    if not found:
        return {"health": None}
    reliability, check = found[0]
    return {
        "health": {
            "reliability": round(reliability.reliability, 4),
            "consecutive_failures": reliability.consecutive_failures,
            "last_checked_at": reliability.last_checked_at,
            "endpoints_up": check.endpoints_up if check else None,
            "endpoints_total": check.endpoints_total if check else None,
            "ok": check.ok if check else None,
        }
    }


def most_used_models(**kwargs) -> tuple[int, list[str]]:
    """The most used models matter too, after the ones admins named."""
    return MOST_USED_PRIORITY, _most_used()
