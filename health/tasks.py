"""django-q2 entry point for the hourly health checks (and the admin's "Run health checks now")."""

from __future__ import annotations

from core.money import decimal_str
from health.checks import run_health_checks
from health.models import Trigger
from health.probing import HealthCheckError


def run_health_checks_task(trigger: str = Trigger.SCHEDULE, model_ids: list[str] | None = None) -> str:
    """One line for the task's result. OpenRouter being unreachable is an outcome (the run says
    so), not a task failure to retry."""
    try:
        run = run_health_checks(trigger=trigger, model_ids=model_ids or None)
    except HealthCheckError as exc:
        return f"health checks could not run: {exc}"
    return (
        f"health run #{run.pk} {run.status}: {run.models_checked} checked, {run.models_failed} failed, "
        f"{run.pinged} pinged for {decimal_str(run.ping_spend_usd)} USD"
    )
