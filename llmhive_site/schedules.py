"""Every recurring task, in one place. `manage.py setup_schedules` makes the database match it."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

PREFIX = "llmhive: "


def schedules() -> list[dict]:
    return [
        {
            "name": f"{PREFIX}catalog sync",
            "func": "catalog.tasks.sync_catalog_task",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.LLMHIVE_SYNC_INTERVAL_HOURS * 60,
            "first_run_in": timedelta(minutes=1),
        },
        {
            "name": f"{PREFIX}catalog research",
            "func": "catalog.tasks.research_catalog_task",
            "schedule_type": Schedule.WEEKLY,
            "minutes": None,
            "first_run_in": timedelta(minutes=10),
        },
        {
            "name": f"{PREFIX}health checks",
            "func": "health.tasks.run_health_checks_task",
            "schedule_type": Schedule.HOURLY,
            "minutes": None,
            "first_run_in": timedelta(minutes=5),
        },
        {
            # Without a key it skips in a line; OpenRouter records a generation minutes after it.
            "name": f"{PREFIX}cost reconciliation",
            "func": "costs.tasks.reconcile_costs_task",
            "schedule_type": Schedule.HOURLY,
            "minutes": None,
            "first_run_in": timedelta(minutes=20),
        },
    ]


def setup_schedules() -> dict[str, list[str]]:
    """Create or update each schedule by name; remove ours that are no longer listed.

    An existing schedule keeps its next_run, so re-running this does not shift the timetable.
    """
    now = timezone.now()
    result: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "removed": []}
    wanted = schedules()
    with transaction.atomic():
        for spec in wanted:
            spec = dict(spec)
            first_run_in = spec.pop("first_run_in")
            name = spec.pop("name")
            existing = Schedule.objects.filter(name=name).first()
            if existing is None:
                Schedule.objects.create(name=name, next_run=now + first_run_in, repeats=-1, **spec)
                result["created"].append(name)
                continue
            changed = [f for f, v in spec.items() if getattr(existing, f) != v] + (
                ["repeats"] if existing.repeats != -1 else []
            )
            if changed:
                for f, v in spec.items():
                    setattr(existing, f, v)
                existing.repeats = -1
                existing.save()
                result["updated"].append(name)
            else:
                result["unchanged"].append(name)
        stale = Schedule.objects.filter(name__startswith=PREFIX).exclude(name__in=[s["name"] for s in wanted])
        result["removed"] = list(stale.values_list("name", flat=True))
        stale.delete()
    return result
