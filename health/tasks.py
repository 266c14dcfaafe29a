"""django-q2 entry point for the hourly health checks (and the admin's "Run health checks now")."""

from health.checks import HealthCheckError, run_health_checks


def run_health_checks_task(trigger: str = "schedule") -> str:
    try:
        run = run_health_checks(trigger=trigger)
    except HealthCheckError as exc:
        return f"health checks could not run: {exc}"
    return f"health run #{run.pk}: {run.models_checked} checked, {run.models_failed} failed, {run.pinged} pinged"
