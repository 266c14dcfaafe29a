"""Service health for load balancers and people: no key needed."""

from __future__ import annotations

from django.db import connection
from django.db.utils import DatabaseError
from ninja import Router

from catalog.selectors import catalog_freshness

router = Router(tags=["health"])


@router.get("/health", auth=None, summary="Service health: database and catalog freshness; 200 or 503")
def service_health(request):
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"status": "ok", "vendor": connection.vendor}
    except DatabaseError as exc:
        checks["database"] = {"status": "down", "error": str(exc).splitlines()[0]}
        return 503, {"status": "down", "checks": checks}

    freshness = catalog_freshness()
    last = freshness.last_run
    checks["catalog"] = {
        "status": "stale" if freshness.is_stale else "ok",
        "last_success_at": freshness.last_success,
        "age_seconds": None if freshness.age is None else int(freshness.age.total_seconds()),
        "stale_after_seconds": int(freshness.stale_after.total_seconds()),
        "last_run": None if last is None else {"id": last.pk, "kind": last.kind, "status": last.status, "error": last.error},
    }
    status = "ok" if all(c["status"] == "ok" for c in checks.values()) else "degraded"
    return 200, {"status": status, "checks": checks}
