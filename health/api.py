"""Service health for load balancers and people (no key), and model health for the
orchestrator."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.db import connection
from django.db.utils import DatabaseError
from ninja import Field, Router, Schema, Status

from catalog.selectors import catalog_freshness
from core.auth import require
from core.errors import errors
from core.models import version_watch
from core.money import decimal_str
from health.selectors import latest_health, oldest_queued_task_age
from health.signals import model_cooldowns

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
        return {
            "status": "down",
            "error": " ".join(str(exc).split())[:200] or type(exc).__name__,
            "clusters": 0,
            "workers": 0,
            "queued": None,
            "oldest_queued_seconds": None,
            "broker": "redis" if Conf.REDIS else "orm",
        }
    oldest = oldest_queued_task_age()
    workers = sum(len(s.workers) for s in clusters)
    return {
        "status": "ok" if clusters else "no_worker",
        "clusters": len(clusters),
        "workers": workers,
        "queued": queued,
        "oldest_queued_seconds": None if oldest is None else int(oldest),
        "broker": "redis" if Conf.REDIS else "orm",
    }


def catalog_status() -> dict:
    """How old the catalog is against its schedule, judged as the dashboard judges it
    (`catalog_freshness`: stale past the sync interval plus LLMHIVE_CATALOG_GRACE_MINUTES)."""
    freshness = catalog_freshness()
    age = freshness.age
    last = freshness.last_run
    return {
        "status": "stale" if freshness.is_stale else "ok",
        "last_success_at": freshness.last_success,
        "age_seconds": None if age is None else int(age.total_seconds()),
        "stale_after_seconds": int(freshness.stale_after.total_seconds()),
        "last_run": None
        if last is None
        else {"id": last.pk, "kind": last.kind, "status": last.status, "error": last.error},
    }


class ServiceHealthOut(Schema):
    status: Literal["ok", "degraded", "down"] = Field(
        description="down (503) when the database is unreachable; degraded when a check is not ok"
    )
    down: list[str] = Field(description="the checks that are down: database, task_queue, catalog")
    checks: dict[str, dict] = Field(description="database, catalog and task_queue, each with its status")


@router.get(
    "/health",
    auth=None,
    response={200: ServiceHealthOut, 503: ServiceHealthOut},
    summary="Service health: database, task queue, catalog freshness; 200 or 503",
)
def service_health(request):
    """503 when the database is down, naming what is down with it (the catalog is read from the
    database, and so is the task queue with the ORM broker); 200 otherwise, `degraded` when the
    catalog is older than its schedule plus a grace or no task worker is alive."""
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"status": "ok", "vendor": connection.vendor}
    except DatabaseError as exc:
        version_watch.database_failed()
        error = " ".join(str(exc).split())[:200] or type(exc).__name__
        checks["database"] = {"status": "down", "vendor": connection.vendor, "error": error}
    database_up = checks["database"]["status"] == "ok"
    # With the database down, nothing more is read from it: each try could wait for its
    # connect timeout.
    if database_up:
        checks["catalog"] = catalog_status()
    else:
        checks["catalog"] = {"status": "down", "error": "not readable: the database is down"}
    if database_up or not _orm_broker():
        checks["task_queue"] = task_queue_status()
    else:
        checks["task_queue"] = {"status": "down", "error": "not readable: the ORM broker's queue is in the database"}
    down = [name for name, check in checks.items() if check["status"] == "down"]
    if not database_up:
        return Status(503, {"status": "down", "down": down, "checks": checks})
    status = "ok" if all(c["status"] == "ok" for c in checks.values()) else "degraded"
    return Status(200, {"status": status, "down": down, "checks": checks})


def _orm_broker() -> bool:
    from django_q.conf import Conf

    return bool(Conf.ORM)


class CooldownOut(Schema):
    state: Literal["closed", "open", "half-open"] = Field(
        description="open: left out until `until`; half-open: its time is up, a share of decisions may try it "
        "until a success closes it"
    )
    reason: str = Field(description="what tripped (or closed) it, e.g. '3 rate_limited in 60 s; out for 30 s'")
    until: datetime | None
    trips: int = Field(description="times it was opened, ever")


class ModelHealthOut(Schema):
    model_id: str
    reliability: float | None = Field(description="null for a model never health-checked (listed for its cooldown)")
    consecutive_failures: int
    checks_count: int
    last_checked_at: datetime | None
    last_ok_at: datetime | None
    ok: bool | None = Field(description="the latest check's verdict")
    endpoints_total: int | None
    endpoints_up: int | None
    best_uptime: float | None = Field(description="the best endpoint's uptime over the last 30 minutes, %")
    pinged: bool | None
    ping_ok: bool | None
    latency_ms: int | None = Field(description="the latest ping's latency")
    ping_cost_usd: str | None = Field(description="what the latest ping cost, USD (a decimal string)")
    error_code: str = Field(description="the latest check's error code, empty when it passed")
    last_error: str = Field(description="the error of the latest failed check while failures continue")
    cooldown: CooldownOut | None = Field(
        description="the model's circuit breaker under the default policy (null when it never tripped)"
    )
    role_cooldowns: dict[str, CooldownOut] = Field(
        description="its circuit breakers for roles with cooldown settings of their own, by role"
    )


def _cooldowns() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for _, answer in model_cooldowns.send(sender=None):
        found.update(answer or {})
    return found


@router.get(
    "/health/models",
    response={200: list[ModelHealthOut], **errors(401, 403)},
    auth=require("route"),
    summary="The latest health, reliability and cooldown of each checked or cooling model",
)
def model_health(request):
    """Every health-checked model, and every model cooling down (open or half-open) even if never
    checked, by model id."""
    cooldowns = _cooldowns()
    no_cooldown = {"cooldown": None, "role_cooldowns": {}}
    out = []
    for r, check in latest_health():
        out.append(
            {
                "model_id": r.model_id,
                "reliability": round(r.reliability, 4),
                "consecutive_failures": r.consecutive_failures,
                "checks_count": r.checks_count,
                "last_checked_at": r.last_checked_at,
                "last_ok_at": r.last_ok_at,
                "ok": check.ok if check else None,
                "endpoints_total": check.endpoints_total if check else None,
                "endpoints_up": check.endpoints_up if check else None,
                "best_uptime": check.best_uptime if check else None,
                "pinged": check.pinged if check else None,
                "ping_ok": check.ping_ok if check else None,
                "latency_ms": check.latency_ms if check else None,
                "ping_cost_usd": decimal_str(check.ping_cost_usd) if check else None,
                "error_code": check.error_code if check else "",
                "last_error": r.last_error,
                **cooldowns.pop(r.model_id, no_cooldown),
            }
        )
    for model_id, cooling in cooldowns.items():
        states = [c["state"] for c in [cooling["cooldown"], *cooling["role_cooldowns"].values()] if c]
        if any(state != "closed" for state in states):
            out.append(
                {
                    "model_id": model_id,
                    "reliability": None,
                    "consecutive_failures": 0,
                    "checks_count": 0,
                    "last_checked_at": None,
                    "last_ok_at": None,
                    "ok": None,
                    "endpoints_total": None,
                    "endpoints_up": None,
                    "best_uptime": None,
                    "pinged": None,
                    "ping_ok": None,
                    "latency_ms": None,
                    "ping_cost_usd": None,
                    "error_code": "",
                    "last_error": "",
                    **cooling,
                }
            )
    out.sort(key=lambda row: row["model_id"])
    return out
