"""django-q2 task entry points, given to the queue by dotted path. Thin: the work is in sync/research."""

from catalog.models import SyncTrigger
from catalog.research import research_catalog
from catalog.sync import sync_catalog


def sync_catalog_task(trigger: str = SyncTrigger.SCHEDULE, force: bool = False) -> str:
    return sync_catalog(trigger=trigger, force=force).summary()


def research_catalog_task(trigger: str = SyncTrigger.SCHEDULE) -> str:
    return research_catalog(trigger=trigger).summary()


TASKS = {"sync": "catalog.tasks.sync_catalog_task", "research": "catalog.tasks.research_catalog_task"}


def queue_catalog_job(kind: str, *, trigger: str, force: bool = False) -> str:
    """Queue a sync or research run; returns the django-q2 task id."""
    from django_q.tasks import async_task

    kwargs = {"trigger": trigger}
    if kind == "sync":
        kwargs["force"] = force
    return async_task(TASKS[kind], task_name=f"catalog {kind} ({trigger})", **kwargs)
