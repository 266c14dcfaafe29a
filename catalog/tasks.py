"""django-q2 task entry points, given to the queue by dotted path. Thin: the work is in sync/research."""

from catalog.models import SyncKind, SyncTrigger
from catalog.queueing import release_slot
from catalog.research import research_catalog
from catalog.sync import sync_catalog


def sync_catalog_task(trigger: str = SyncTrigger.SCHEDULE, force: bool = False, queue_token: str = "") -> str:
    try:
        return sync_catalog(trigger=trigger, force=force).summary()
    finally:
        release_slot(SyncKind.SYNC, queue_token)


def research_catalog_task(trigger: str = SyncTrigger.SCHEDULE, queue_token: str = "") -> str:
    try:
        return research_catalog(trigger=trigger).summary()
    finally:
        release_slot(SyncKind.RESEARCH, queue_token)


TASKS = {"sync": "catalog.tasks.sync_catalog_task", "research": "catalog.tasks.research_catalog_task"}


def queue_catalog_job(kind: str, *, trigger: str, force: bool = False, queue_token: str = "") -> str:
    """Queue a sync or research run; returns the django-q2 task id. Callers that must not pile
    jobs up go through `catalog.queueing.request_catalog_job`."""
    from django_q.tasks import async_task

    kwargs = {"trigger": trigger}
    if kind == "sync":
        kwargs["force"] = force
    if queue_token:
        kwargs["queue_token"] = queue_token
    return async_task(TASKS[kind], task_name=f"catalog {kind} ({trigger})", **kwargs)
