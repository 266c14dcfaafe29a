"""Asking for a catalog run: at most one queued job per kind, whoever asks and however often.

Each kind has a slot, a `core.models.Lock` row named `catalog queue:<kind>`: its holder names the
job queued through it (`<token> <task id>`) and `locked_until` when the claim lapses. A request
takes the slot's row lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions
serialise writers anyway), so two requests at once queue one job. The job frees the slot when it
ends; a worker killed mid-job leaves the claim to lapse, or to be freed when django-q records the
task's result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import SyncKind, SyncRun, SyncStatus
from core.models import Lock

SLOT_PREFIX = "catalog queue:"


@dataclass(frozen=True)
class CatalogJob:
    """The job that answers a request: the one just queued, or the one already queued or running."""

    kind: str
    task_id: str
    status: str  # "queued" or "running"
    already_queued: bool
    run: SyncRun | None = None


def _slot_name(kind: str) -> str:
    return f"{SLOT_PREFIX}{kind}"


def _claim_ttl() -> timedelta:
    # A queued job waits at most until a worker is free; one taken by a killed worker is handed to
    # another after Q_CLUSTER["retry"]. Past both the claim is presumed stale.
    return timedelta(seconds=max(settings.LLMHIVE_SYNC_LOCK_SECONDS, settings.Q_CLUSTER.get("retry", 0)))


def _running_run(kind: str) -> SyncRun | None:
    """A run of this kind in progress (from any trigger), not one a killed process left behind."""
    recent = timezone.now() - timedelta(seconds=settings.LLMHIVE_SYNC_LOCK_SECONDS)
    return (
        SyncRun.objects.filter(kind=kind, status=SyncStatus.RUNNING, started_at__gte=recent)
        .order_by("-started_at", "-id")
        .first()
    )


def _task_finished(task_id: str) -> bool:
    from django_q.models import Task

    return Task.objects.filter(id=task_id).exists()


def request_catalog_job(kind: str, *, trigger: str, force: bool = False) -> CatalogJob:
    """Queue a sync or research run unless one of that kind is already queued or running."""
    from catalog.tasks import queue_catalog_job

    if kind not in SyncKind.values:
        raise ValueError(f"unknown catalog job kind {kind!r}")
    name = _slot_name(kind)
    if not Lock.objects.filter(name=name).exists():
        try:
            with transaction.atomic():
                Lock.objects.create(name=name, locked_until=timezone.now(), holder="")
        except IntegrityError:
            pass  # another request created it first
    with transaction.atomic():
        slot = Lock.objects.select_for_update().get(name=name)
        now = timezone.now()
        running = _running_run(kind)
        if slot.holder and slot.locked_until > now:
            _token, _, task_id = slot.holder.partition(" ")
            if not _task_finished(task_id):
                return CatalogJob(
                    kind=kind,
                    task_id=task_id,
                    status="running" if running else "queued",
                    already_queued=True,
                    run=running,
                )
        if running is not None:
            # Started by the schedule or a command: that run answers, nothing is queued.
            return CatalogJob(kind=kind, task_id="", status="running", already_queued=True, run=running)
        token = uuid.uuid4().hex[:12]
        task_id = queue_catalog_job(kind, trigger=trigger, force=force, queue_token=token)
        slot.holder = f"{token} {task_id}"
        slot.locked_until = now + _claim_ttl()
        slot.save(update_fields=["holder", "locked_until"])
    return CatalogJob(kind=kind, task_id=task_id, status="queued", already_queued=False)


def release_slot(kind: str, token: str) -> None:
    """Called by the job when it ends: the next request queues a new one."""
    if token:
        Lock.objects.filter(name=_slot_name(kind), holder__startswith=f"{token} ").update(
            holder="", locked_until=timezone.now()
        )
