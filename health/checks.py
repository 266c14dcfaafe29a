"""Health checks of the models that matter: OpenRouter's free per-endpoint status first, then a
ping completion, only with a key and only under the daily spend cap.

The network part runs concurrently (an httpx AsyncClient and a semaphore, one deadline per
check: twenty checks take about as long as the slowest few); everything is written in one go at
the end, in sync code: the checks, the ping costs into the usage ledger (strategy
`health_check`), reliability, alerts, and the HEALTH data version routing watches.

This module picks the models and runs a check: health.probing, then health.recording.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack

from django.conf import settings
from django.utils import timezone

from catalog.models import CatalogModel
from catalog.research import models_that_matter
from core.money import decimal_str
from health.models import HealthCheckRun, RunStatus, Trigger
from health.pings import plan_ping
from health.probing import (
    SKIP_CAP,
    SKIP_NO_PRICE,
    HealthCheckError,
    _one_line,
    _ping_allowance,
    check_models,
    check_openrouter,
    run_async,
)
from health.recording import record

logger = logging.getLogger(__name__)


def models_to_check(*, top: int | None = None, explicit: list[str] | None = None) -> list[str]:
    """The ones named, or the ones that matter (role preferences and escalation overrides, the
    top of each category ranking, the most used in the last 7 days — enabled and active ones
    only: catalog.research.models_that_matter with the hooks routing and health register)."""
    if explicit:
        wanted = list(dict.fromkeys(explicit))
        known = set(CatalogModel.objects.filter(id__in=wanted).values_list("id", flat=True))
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise HealthCheckError(f"not in the catalog: {', '.join(unknown)}")
        return wanted
    return models_that_matter(limit=top or settings.LLMHIVE_HEALTH_TOP)


def run_health_checks(
    *, model_ids: list[str] | None = None, top: int | None = None, ping: bool = True, trigger: str = Trigger.COMMAND
) -> HealthCheckRun:
    """Check, record, and return the run. Raises HealthCheckError (after recording the run as
    an error) when nothing could be checked."""
    run = HealthCheckRun.objects.create(trigger=trigger)
    try:
        targets = models_to_check(top=top, explicit=model_ids)
        key, key_note = check_openrouter()
        notes = [key_note] if key_note else []
        if not targets:
            notes.append("no models to check: none enabled and active that matter")
        with ExitStack() as stack:
            allowance, spent = _ping_allowance(
                stack, run, ping=ping, key_note=key_note, checks=len(targets), notes=notes
            )
            plans = (
                {m.id: plan_ping(m) for m in CatalogModel.objects.filter(id__in=targets)}
                if allowance is not None
                else {}
            )
            results = run_async(
                check_models(
                    targets,
                    plans,
                    allowance,
                    concurrency=max(1, settings.LLMHIVE_HEALTH_CONCURRENCY),
                    timeout=settings.LLMHIVE_HEALTH_TIMEOUT_SECONDS,
                )
            )
            for reason in (SKIP_CAP, SKIP_NO_PRICE):
                skipped = sum(1 for r in results if r.skipped_ping == reason)
                if skipped:
                    notes.append(f"{skipped} ping{'s' if skipped > 1 else ''} skipped: {reason}")
            if any(r.skipped_ping == SKIP_CAP for r in results):
                cap = settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD
                notes.append(f"spent on pings today before this run: {decimal_str(spent)} of {decimal_str(cap)} USD")
            record(run, results, key, notes)
    except Exception as exc:
        if not isinstance(exc, HealthCheckError):
            logger.exception("health run #%s crashed", run.pk)
        run.status, run.error, run.finished_at = (
            RunStatus.ERROR,
            _one_line(str(exc)) or type(exc).__name__,
            timezone.now(),
        )
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    return run
