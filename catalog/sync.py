"""Catalog runs: a sync (or research) is recorded as a SyncRun, holds the catalog lock, fetches
the model list (from OpenRouter or a saved response) and applies it (`catalog.apply`); an
expected failure is recorded on the run and raised as an alert, never raised to the caller.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from catalog.apply import Progress, SyncRefused, apply_model_list
from catalog.client import openrouter_client
from catalog.families import raise_drift_alerts
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
from core.locks import HeldLock, LockBusy, hold_lock
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


# Byte order marks, longest first (UTF-32's LE mark starts with UTF-16's).
_BOMS = (
    (codecs.BOM_UTF32_LE, None),
    (codecs.BOM_UTF32_BE, None),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_saved_text(data: bytes, name: str) -> str:
    """A saved response's text: UTF-8, UTF-8 with a BOM, or UTF-16 with a BOM (LE or BE; what
    PowerShell's `>` and `Out-File` write by default). SourceError for anything else."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            if encoding is None:
                raise SourceError(f"{name} is UTF-32; save it as UTF-8 (or UTF-16 with a BOM)")
            break
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        shown = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise SourceError(
            f"{name} is not {shown} text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"save it as UTF-8, UTF-8 with a BOM, or UTF-16 with a BOM"
        ) from None


def read_saved_response(path: str | os.PathLike) -> ModelList:
    """A saved `GET /models` response: {"data": [...]} (or a bare list of entries), in one of the
    encodings `decode_saved_text` reads, no larger than LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES."""
    path = Path(path)
    cap = settings.LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES
    try:
        with path.open("rb") as file:
            data = file.read(cap + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > cap:
        raise SourceError(f"{path} is larger than {cap} bytes (LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES)")
    text = decode_saved_text(data, str(path))
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


class SyncDeadline(Exception):
    """The run passed LLMHIVE_SYNC_DEADLINE_SECONDS."""


FAILURES = (OpenRouterError, SyncRefused, SourceError, SyncDeadline)

# The lock's holder names its run, so that the run a dead holder left "running" can be found.
_HOLDER_RUN = re.compile(r"run #(\d+) ")


def run_catalog_job(
    *,
    kind: str,
    trigger: str,
    fetch: Callable[..., ModelList],
    source: str,
    source_detail: str,
    force: bool = False,
    progress: Progress | None = None,
    after_apply: Callable[[SyncRun, Progress | None], None] | None = None,
) -> SyncRun:
    """Record a run, take the catalog lock, fetch (within the run's deadline), apply, then run the
    job's extra steps. `fetch(deadline=seconds)` gets what is left of the run's deadline."""
    run = SyncRun.objects.create(
        kind=kind, trigger=trigger, source=source, source_detail=source_detail[:500], forced=force
    )
    deadline = settings.LLMHIVE_SYNC_DEADLINE_SECONDS
    ends_at = time.monotonic() + deadline
    holder = f"{kind} run #{run.pk} ({uuid.uuid4().hex[:8]})"
    try:
        with hold_lock(LOCK_NAME, holder=holder, ttl_seconds=settings.LLMHIVE_SYNC_LOCK_SECONDS) as lock:
            mark_abandoned_runs(run, lock)
            heartbeat = _heartbeat(lock, progress)
            heartbeat("fetch", 0, 1)
            # The fetch is bounded by what is left of the run's deadline; applying is a fixed
            # number of queries.
            model_list = fetch(deadline=_remaining(ends_at, deadline))
            heartbeat("fetch", 1, 1)
            apply_model_list(model_list, run=run, force=force, progress=heartbeat).record_on(run)
            # Newer versions land in older families (Claude Opus 4.8 in "Claude 4"): said after every list applied.
            run.details["version_drift"] = raise_drift_alerts()
            if after_apply:
                after_apply(run, heartbeat)
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


def _remaining(ends_at: float, deadline: float) -> float:
    remaining = ends_at - time.monotonic()
    if remaining <= 0:
        raise SyncDeadline(
            f"the run passed its deadline of {deadline:g} s before fetching (LLMHIVE_SYNC_DEADLINE_SECONDS)"
        )
    return remaining


def _heartbeat(lock: HeldLock, progress: Progress | None) -> Progress:
    """Progress that also refreshes the lock, so that a live run is never taken for a dead one."""

    def beat(step: str, done: int, total: int) -> None:
        lock.refresh()
        if progress:
            progress(step, done, total)

    return beat


def mark_abandoned_runs(run: SyncRun, lock: HeldLock) -> list[SyncRun]:
    """Mark abandoned the runs a dead process left "running": the lock's dead holder, and any
    earlier run still "running" though it cannot hold the lock (we do) and is older than the
    lock's expiry. Recorded on `run`'s details and raised as alerts."""
    now = timezone.now()
    candidates = SyncRun.objects.filter(status=SyncStatus.RUNNING, pk__lt=run.pk)
    dead_holder = _HOLDER_RUN.search(lock.displaced + " ")
    reasons: dict[int, str] = {}
    if dead_holder:
        reasons[int(dead_holder.group(1))] = f"the process holding the catalog lock died: {lock.displaced_because}"
    older = now - timedelta(seconds=settings.LLMHIVE_SYNC_LOCK_SECONDS)
    for pk in candidates.filter(started_at__lt=older).values_list("pk", flat=True):
        reasons.setdefault(pk, "still marked running long after its lock was released or expired")
    abandoned = list(candidates.filter(pk__in=reasons))
    if not abandoned:
        return []
    for old in abandoned:
        old.status = SyncStatus.ABANDONED
        old.finished_at = now
        old.error = f"abandoned: {reasons[old.pk]}; found by {run.kind} run #{run.pk}"
    SyncRun.objects.bulk_update(abandoned, ["status", "finished_at", "error"])
    run.details["abandoned_runs"] = [{"run": old.pk, "kind": old.kind, "reason": reasons[old.pk]} for old in abandoned]
    raise_alerts(
        [
            NewAlert(
                AlertKind.RUN_ABANDONED,
                f"Catalog {old.kind} #{old.pk} (started {old.started_at.isoformat(timespec='seconds')}) was "
                f"abandoned: {reasons[old.pk]}. {run.kind.capitalize()} #{run.pk} marked it and ran.",
                subject=f"run-{old.pk}",
                details={"run": old.pk, "found_by": run.pk, "reason": reasons[old.pk]},
            )
            for old in abandoned
        ]
    )
    return abandoned


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
            "fetch": lambda deadline=None: read_saved_response(from_file),
            "source": SyncSource.FILE,
            "source_detail": str(from_file),
        }

    def fetch(deadline: float | None = None) -> ModelList:
        # Each call has its own deadline (LLMHIVE_OPENROUTER_DEADLINE); the run's may be shorter.
        call_deadline = settings.LLMHIVE_OPENROUTER_DEADLINE
        if deadline is not None:
            call_deadline = min(call_deadline, deadline) if call_deadline > 0 else deadline
        with openrouter_client(deadline=call_deadline) as client:
            return client.list_models()

    return {"fetch": fetch, "source": SyncSource.API, "source_detail": f"{settings.OPENROUTER_BASE_URL}/models"}
