"""Alerts over the API: listed with `alerts:read`, acknowledged with `alerts:write`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.db.models import Q
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema
from pydantic import AwareDatetime, field_validator

from core.alerts import alert_payload
from core.auth import require
from core.errors import ApiError, errors
from core.kinds import alert_kinds
from core.models import Alert

router = Router(tags=["alerts"])
ALERTS_READ = require("alerts:read")
ALERTS_WRITE = require("alerts:write")
MAX_ID = 2**63 - 1  # PostgreSQL's bigint: a larger id is a 422, not a database error
# The documented example: an id no test's sequence reaches, so the API test can give an alert it
# (tests/api/test_schemathesis.py) without colliding with alerts its sync raises.
EXAMPLE_ID = 1_000_000


class AlertOut(Schema):
    id: int
    kind: str
    kind_label: str
    model_id: str | None
    key: str
    message: str
    details: dict[str, Any]
    created_at: datetime
    last_raised_at: datetime
    times: int = Field(description="how many times it was raised while open")
    state: Literal["open", "acknowledged"]
    acknowledged_at: datetime | None


class AlertPage(Schema):
    count: int
    items: list[AlertOut]


class AlertFilters(Schema):
    kind: list[str] = Field(
        default_factory=list, description="repeatable, or a comma-separated list; any of them matches"
    )
    state: Literal["open", "acknowledged", "all"] = "open"
    since: AwareDatetime | None = Field(
        None, description="ISO 8601 with a timezone: alerts raised (first or again) at or after it (last_raised_at)"
    )
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)

    @field_validator("kind")
    @classmethod
    def known_kinds(cls, value: list[str]) -> list[str]:
        kinds = [k.strip() for item in value for k in item.split(",") if k.strip()]
        known = {k for k, _ in alert_kinds()}
        unknown = sorted(set(kinds) - known)
        if unknown:
            raise ValueError(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return kinds


@router.get("/alerts", response={200: AlertPage, **errors(401, 403, 422, 503)}, auth=ALERTS_READ, summary="List alerts")
def list_alerts(request, filters: Query[AlertFilters]):
    """Newest raised first (`last_raised_at`), so an alert raised again comes back to the top."""
    alerts = Alert.objects.order_by("-last_raised_at", "-id")
    if filters.kind:
        alerts = alerts.filter(kind__in=filters.kind)
    if filters.state != "all":
        alerts = alerts.filter(acknowledged_at__isnull=filters.state == "open")
    if filters.since:
        alerts = alerts.filter(last_raised_at__gte=filters.since)
    page = alerts[filters.offset : filters.offset + filters.limit]
    return {"count": alerts.count(), "items": [alert_payload(a) for a in page]}


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response={200: AlertOut, **errors(400, 401, 403, 404, 413, 422, 503)},
    auth=ALERTS_WRITE,
    summary="Acknowledge an alert",
)
def acknowledge_alert(request, alert_id: int = Path(..., ge=1, le=MAX_ID, example=EXAMPLE_ID)):
    """Idempotent: an alert already acknowledged keeps its first acknowledgement."""
    Alert.objects.filter(pk=alert_id, acknowledged_at__isnull=True).update(acknowledged_at=timezone.now())
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:
        raise ApiError(404, "not_found", f"No alert with id {alert_id}.")
    return alert_payload(alert)


class AcknowledgeIn(Schema):
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=1000, description="alert ids")


class AcknowledgeOut(Schema):
    acknowledged: list[int] = Field(description="acknowledged now")
    already_acknowledged: list[int]
    unknown: list[int] = Field(description="ids with no alert")


@router.post(
    "/alerts/acknowledge",
    response={200: AcknowledgeOut, **errors(400, 401, 403, 413, 422, 503)},
    auth=ALERTS_WRITE,
    summary="Acknowledge several alerts",
)
def acknowledge_alerts(request, payload: AcknowledgeIn):
    ids = sorted(set(payload.ids))
    existing = dict(Alert.objects.filter(pk__in=ids).values_list("pk", "acknowledged_at"))
    newly = sorted(pk for pk, acknowledged_at in existing.items() if acknowledged_at is None)
    Alert.objects.filter(Q(pk__in=newly) & Q(acknowledged_at__isnull=True)).update(acknowledged_at=timezone.now())
    return {
        "acknowledged": newly,
        "already_acknowledged": sorted(pk for pk, at in existing.items() if at is not None),
        "unknown": [pk for pk in ids if pk not in existing],
    }
