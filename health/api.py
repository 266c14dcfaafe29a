"""Service health for load balancers and people (no key), and model health for the
orchestrator."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.db.utils import DatabaseError
from django.utils import timezone
from ninja import Router, Schema, Status

from catalog.selectors import catalog_freshness
from llmhive_site.auth import require

router = Router(tags=["health"])


def task_queue_status() -> dict:
    """Is a django-q2 worker alive, and how old is the oldest task waiting for one."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.status import Stat

    try:
        broker = get_broker()
        clusters = [s for s in Stat.get_all(broker=broker) if s.status != Conf.STOPPED]
        queued = broker.queue_size()
    except Exception as exc:  # the broker itself is down: say so, do not fail the health check
        return {"status": "down", "error": str(exc).splitlines()[0][:200], "workers": 0, "queued": None,
                "oldest_queued_seconds": None}
    oldest = None
    if Conf.ORM:
        from django_q.models import OrmQ

        first = OrmQ.objects.filter(key=Conf.CLUSTER_NAME, lock__lte=timezone.now()).order_by("lock").values_list("lock", flat=True).first()
        oldest = None if first is None else int((timezone.now() - first).total_seconds())
    workers = sum(len(s.workers) for s in clusters)
    return {
        "status": "ok" if clusters else "no_worker",
        "clusters": len(clusters),
        "workers": workers,
        "queued": queued,
        "oldest_queued_seconds": oldest,
        "broker": "redis" if Conf.REDIS else "orm",
    }


@router.get("/health", auth=None, summary="Service health: database, task queue, catalog freshness; 200 or 503")
def service_health(request):
    """503 when the database is down; `degraded` when the catalog is older than its schedule
    plus a grace, or no task worker is alive."""
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"status": "ok", "vendor": connection.vendor}
    except DatabaseError as exc:
        checks["database"] = {"status": "down", "error": str(exc).splitlines()[0]}
        return Status(503, {"status": "down", "checks": checks})

    freshness = catalog_freshness()
    last = freshness.last_run
    checks["catalog"] = {
        "status": "stale" if freshness.is_stale else "ok",
        "last_success_at": freshness.last_success,
        "age_seconds": None if freshness.age is None else int(freshness.age.total_seconds()),
        "stale_after_seconds": int(freshness.stale_after.total_seconds()),
        "last_run": None if last is None else {"id": last.pk, "kind": last.kind, "status": last.status, "error": last.error},
    }
    checks["task_queue"] = task_queue_status()
    status = "ok" if all(c["status"] == "ok" for c in checks.values()) else "degraded"
    return Status(200, {"status": status, "checks": checks})


class ModelHealthOut(Schema):
    model: str
    reliability: float
    consecutive_failures: int
    checks_count: int
    last_checked_at: datetime
    last_ok_at: datetime | None
    endpoints_total: int | None
    endpoints_up: int | None
    best_uptime: float | None
    pinged: bool | None
    ping_ok: bool | None
    latency_ms: int | None
    last_error: str


@router.get("/health/models", response=list[ModelHealthOut], auth=require("route"),
            summary="The latest health and reliability of each checked model")
def model_health(request):
    from health.models import ModelHealthCheck, ModelReliability

    newest = ModelHealthCheck.objects.filter(model=OuterRef("model")).order_by("-checked_at", "-id").values("id")[:1]
    rows = list(ModelReliability.objects.annotate(latest_id=Subquery(newest)).order_by("model_id"))
    latest = ModelHealthCheck.objects.in_bulk([r.latest_id for r in rows if r.latest_id])
    out = []
    for r in rows:
        check = latest.get(r.latest_id)
        out.append({
            "model": r.model_id, "reliability": round(r.reliability, 4), "consecutive_failures": r.consecutive_failures,
            "checks_count": r.checks_count, "last_checked_at": r.last_checked_at, "last_ok_at": r.last_ok_at,
            "endpoints_total": check.endpoints_total if check else None, "endpoints_up": check.endpoints_up if check else None,
            "best_uptime": check.best_uptime if check else None, "pinged": check.pinged if check else None,
            "ping_ok": check.ping_ok if check else None, "latency_ms": check.latency_ms if check else None,
            "last_error": r.last_error,
        })
    return out
