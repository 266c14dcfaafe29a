"""Catalog runs: a sync (or research) is recorded as a SyncRun, holds the catalog lock, fetches
the model list (from OpenRouter or a saved response) and applies it (`catalog.apply`); an
expected failure is recorded on the run and raised as an alert, never raised to the caller.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from catalog.apply import Progress, SyncRefused, apply_model_list
from catalog.client import openrouter_client
from catalog.models import (
    CATALOG_VERSION,
    AlertKind,
    SyncKind,
    SyncRun,
    SyncSource,
    SyncStatus,
    SyncTrigger,
)
from core.alerts import NewAlert, raise_alerts
from core.locks import LockBusy, hold_lock
from core.models import Alert, DataVersion
from openrouter import (
    ModelList,
    OpenRouterError,
    parse_models_payload,
)

logger = logging.getLogger(__name__)

LOCK_NAME = "catalog"


class SourceError(Exception):
    """The saved response given to --from-file cannot be read."""


def read_saved_response(path: str | os.PathLike) -> ModelList:
    """A saved `GET /models` response: {"data": [...]} (or a bare list of entries)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if isinstance(payload, list):
        payload = {"data": payload}
    try:
        return parse_models_payload(payload)
    except OpenRouterError as exc:
        raise SourceError(f"{path}: {exc}") from exc


FAILURES = (OpenRouterError, SyncRefused, SourceError)


def run_catalog_job(
    *,
    kind: str,
    trigger: str,
    fetch: Callable[[], ModelList],
    source: str,
    source_detail: str,
    force: bool = False,
    progress: Progress | None = None,
    after_apply: Callable[[SyncRun, Progress | None], None] | None = None,
) -> SyncRun:
    """Record a run, take the catalog lock, fetch, apply, then run the job's extra steps."""
    run = SyncRun.objects.create(
        kind=kind, trigger=trigger, source=source, source_detail=source_detail[:500], forced=force
    )
    holder = f"{kind} run #{run.pk} ({uuid.uuid4().hex[:8]})"
    try:
        with hold_lock(LOCK_NAME, holder=holder, ttl_seconds=settings.LLMHIVE_SYNC_LOCK_SECONDS):
            if progress:
                progress("fetch", 0, 1)
            model_list = fetch()
            if progress:
                progress("fetch", 1, 1)
            apply_model_list(model_list, run=run, force=force, progress=progress).record_on(run)
            if after_apply:
                after_apply(run, progress)
        run.status = SyncStatus.SUCCEEDED
    except LockBusy as exc:
        run.status = SyncStatus.SKIPPED
        run.error = f"another catalog run is in progress ({exc.holder})"
    except FAILURES as exc:
        _fail(run, str(exc))
    except Exception as exc:
        logger.exception("catalog %s run #%s crashed", kind, run.pk)
        _fail(run, f"unexpected error: {exc.__class__.__name__}: {exc}")
        raise
    finally:
        run.finished_at = timezone.now()
        run.save()
    if run.status == SyncStatus.SUCCEEDED:
        # The list was fetched and applied: the alerts of runs that could not do that are
        # answered. Only those (`_fail`'s keys): an alert about a later step of a job (a research
        # category that failed) stays open until that step succeeds.
        Alert.objects.open().filter(
            kind=AlertKind.SYNC_FAILED, key__in=[_failure_key(k) for k in SyncKind.values]
        ).update(acknowledged_at=run.finished_at)
    return run


def _failure_key(kind: str) -> str:
    return NewAlert(AlertKind.SYNC_FAILED, "", subject=kind).key


def _fail(run: SyncRun, error: str) -> None:
    run.status = SyncStatus.FAILED
    run.error = error
    raise_alerts([NewAlert(AlertKind.SYNC_FAILED, f"Catalog {run.kind} #{run.pk} failed: {error}", subject=run.kind)])
    # Whether routing falls back to the bootstrap list depends on the last sync's outcome.
    DataVersion.bump(CATALOG_VERSION)


def sync_catalog(
    *,
    trigger: str = SyncTrigger.COMMAND,
    from_file: str | os.PathLike | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> SyncRun:
    """Sync the catalog from OpenRouter (or from a saved response). Never raises for an
    expected failure: the run records it and an alert is raised."""
    return run_catalog_job(
        kind=SyncKind.SYNC, trigger=trigger, force=force, progress=progress, **model_list_source(from_file)
    )


def model_list_source(from_file: str | os.PathLike | None = None) -> dict:
    """Where a run gets its model list: `fetch` (a callable), and `source` and `source_detail`
    for the run's record: OpenRouter's `GET /models`, or a saved response."""
    if from_file is not None:
        return {
            "fetch": lambda: read_saved_response(from_file),
            "source": SyncSource.FILE,
            "source_detail": str(from_file),
        }

    def fetch() -> ModelList:
        with openrouter_client() as client:
            return client.list_models()

    return {"fetch": fetch, "source": SyncSource.API, "source_detail": f"{settings.OPENROUTER_BASE_URL}/models"}
