"""Recording: everything a run found is written in one go at the end, in sync code: the checks,
the ping costs into the usage ledger (strategy `health_check`), reliability, alerts, and the
HEALTH data version routing watches."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.alerts import NewAlert, raise_alerts
from core.models import Alert, DataVersion
from costs.ingest import ingest_events
from health.models import HEALTH_VERSION, HealthCheckRun, ModelHealthCheck, ModelReliability
from health.models import AlertKind as HealthAlertKind
from health.probing import Result
from health.selectors import HEALTH_STRATEGY
from openrouter import KeyInfo


def record(run: HealthCheckRun, results: list[Result], key: KeyInfo | None, notes: list[str]) -> None:
    """Write everything in one transaction, then tell routing (the HEALTH data version)."""
    now = timezone.now()
    with transaction.atomic():
        ModelHealthCheck.objects.bulk_create(
            [
                ModelHealthCheck(
                    run=run,
                    model_id=r.model_id,
                    checked_at=now,
                    ok=r.ok,
                    endpoints_total=r.endpoints_total,
                    endpoints_up=r.endpoints_up,
                    best_uptime=r.best_uptime,
                    pinged=r.pinged,
                    ping_ok=r.ping_ok,
                    latency_ms=r.latency_ms,
                    http_status=r.http_status,
                    error_code=r.error_code,
                    error_message=r.error_message,
                    ping_cost_usd=r.ping_cost_usd,
                )
                for r in results
            ]
        )
        _record_ping_costs(run, results, now)
        alerts = _update_reliability(results, now)
        raise_alerts(alerts)
        run.models_checked = len(results)
        run.models_failed = sum(1 for r in results if not r.ok)
        run.pinged = sum(1 for r in results if r.pinged)
        run.ping_spend_usd = sum((r.ping_cost_usd or Decimal(0) for r in results), Decimal(0))
        run.key_limit_usd = key.limit if key else None
        run.key_usage_usd = key.usage if key else None
        run.note = "; ".join(notes)
        run.status = HealthCheckRun.status_for(run.models_checked, run.models_failed)
        run.finished_at = timezone.now()
        run.save()
    DataVersion.bump(HEALTH_VERSION)


def _record_ping_costs(run: HealthCheckRun, results: list[Result], now) -> None:
    """Answered pings go into the usage ledger as strategy health_check (routing's memory
    ignores that strategy). A failed ping's cost is unknown, so it is not booked."""
    events = [
        {
            "request_id": f"health:{run.pk}:{r.model_id}",
            "occurred_at": now,
            "model": r.model_id,
            "strategy": HEALTH_STRATEGY,
            "success": True,
            "latency_ms": r.latency_ms,
            **r.usage,
        }
        for r in results
        if r.pinged and r.ping_ok
    ]
    if events:
        ingest_events(events)


def _update_reliability(results: list[Result], now) -> list[NewAlert]:
    """Fold each result into its model's reliability; return the alerts to raise, and close
    the open ones of models that recovered."""
    threshold = settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT
    half_life = settings.LLMHIVE_HEALTH_RELIABILITY_HALF_LIFE
    existing = {r.model_id: r for r in ModelReliability.objects.filter(model_id__in=[x.model_id for x in results])}
    new, changed, alerts, recovered = [], [], [], []
    for result in results:
        row = existing.get(result.model_id)
        if row is None:
            row = ModelReliability(model_id=result.model_id, reliability=0.0, checks_count=0, consecutive_failures=0)
            new.append(row)
        else:
            changed.append(row)
        row.add_check(result.score, half_life=half_life)
        row.last_checked_at = row.updated_at = now
        if result.ok:
            if row.consecutive_failures:
                recovered.append(result.model_id)
            row.consecutive_failures = 0
            row.last_ok_at = now
            row.last_error = ""
            continue
        row.consecutive_failures += 1
        row.last_error = f"{result.error_code}: {result.error_message}"[:2000]
        if row.consecutive_failures >= threshold:
            alerts.append(
                NewAlert(
                    kind=HealthAlertKind.MODEL_UNHEALTHY,
                    model_id=result.model_id,
                    message=(
                        f"{result.model_id} failed {row.consecutive_failures} health checks in a row "
                        f"(last: {row.last_error}). Its reliability is {row.reliability:.2f}; routing weighs it down."
                    ),
                    details={
                        "consecutive_failures": row.consecutive_failures,
                        "error_code": result.error_code,
                        "reliability": round(row.reliability, 4),
                    },
                )
            )
    ModelReliability.objects.bulk_create(new)
    # bulk_update skips auto_now, hence updated_at set above.
    ModelReliability.objects.bulk_update(
        changed,
        [
            "reliability",
            "checks_count",
            "consecutive_failures",
            "last_checked_at",
            "last_ok_at",
            "last_error",
            "updated_at",
        ],
    )
    if recovered:
        _close_recovered(recovered, now)
    return alerts


def _close_recovered(model_ids: list[str], now) -> None:
    """A model_unhealthy alert of a model whose check passed again is answered, with a note."""
    stamp = f"{now:%Y-%m-%d %H:%M} UTC"
    closing = list(Alert.objects.open().filter(kind=HealthAlertKind.MODEL_UNHEALTHY, model_id__in=model_ids))
    for alert in closing:
        alert.acknowledged_at = now
        alert.message += f" Recovered at {stamp}: the last health check passed."
        alert.details = {**alert.details, "recovered_at": now.isoformat(), "note": f"recovered at {stamp}"}
    Alert.objects.bulk_update(closing, ["acknowledged_at", "message", "details"])
