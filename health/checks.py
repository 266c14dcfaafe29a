"""Health checks of the models that matter: OpenRouter's free per-endpoint status first, then a
ping completion, only with a key and only under the daily spend cap.

The network part runs concurrently (an httpx AsyncClient and a semaphore: twenty checks take
about as long as the slowest few); everything is written in one go at the end: the checks, the
ping costs into the usage ledger (strategy `health_check`), reliability, alerts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from catalog.alerts import NewAlert, raise_alerts
from catalog.models import AlertKind, CatalogAlert, CatalogModel, ModelStatus
from catalog.openrouter import (
    AsyncOpenRouterClient,
    KeyInfo,
    OpenRouterClient,
    OpenRouterError,
    OpenRouterUnreachable,
)
from catalog.research import models_that_matter
from health.models import HealthCheckRun, ModelHealthCheck, ModelReliability, RunStatus
from llmhive_site.models import DataVersion

HEALTH_STRATEGY = "health_check"
PING_MESSAGES = [{"role": "user", "content": "Reply with OK."}]
PING_MAX_TOKENS = 5
# Recent results weigh more: each check moves reliability this far toward its own result.
RECENT_WEIGHT = 0.3


class HealthCheckError(Exception):
    """OpenRouter could not be reached at all: nothing was checked."""


@dataclass
class Result:
    model_id: str
    endpoints_total: int = 0
    endpoints_up: int = 0
    best_uptime: float | None = None
    pinged: bool = False
    ping_ok: bool | None = None
    latency_ms: int | None = None
    http_status: int | None = None
    error_code: str = ""
    error_message: str = ""
    ping_cost_usd: Decimal | None = None
    usage: dict = field(default_factory=dict)
    skipped_ping: str = ""

    @property
    def ok(self) -> bool:
        return self.endpoints_up > 0 and self.ping_ok is not False and not self.error_code

    @property
    def score(self) -> float:
        """This check's contribution to reliability: 0 when it failed; the share of endpoints up
        when only the free status was read; 1 when a ping answered."""
        if not self.ok:
            return 0.0
        if self.ping_ok:
            return 1.0
        return self.endpoints_up / self.endpoints_total if self.endpoints_total else 0.0


def most_used(days: int = 7, limit: int = 10) -> list[str]:
    from costs.models import UsageEvent

    since = timezone.now() - timedelta(days=days)
    rows = (
        UsageEvent.objects.filter(occurred_at__gte=since, model__isnull=False)
        .exclude(strategy=HEALTH_STRATEGY)
        .values("model_id").annotate(n=Count("id")).order_by("-n", "model_id")[:limit]
    )
    return [row["model_id"] for row in rows]


def models_to_check(top: int | None = None, explicit: list[str] | None = None) -> list[str]:
    """The ones named, or the ones that matter: role preferences and escalation overrides (the
    hooks routing registers), the top of each category ranking, the most used in the last 7
    days — enabled and active ones only, in that order."""
    if explicit:
        known = set(CatalogModel.objects.filter(id__in=explicit).values_list("id", flat=True))
        unknown = [m for m in explicit if m not in known]
        if unknown:
            raise HealthCheckError(f"not in the catalog: {', '.join(unknown)}")
        return list(dict.fromkeys(explicit))
    limit = top or settings.LLMHIVE_HEALTH_TOP
    ordered = list(dict.fromkeys(models_that_matter(limit=limit * 2) + most_used()))
    usable = set(
        CatalogModel.objects.filter(id__in=ordered, enabled=True, status=ModelStatus.ACTIVE).values_list("id", flat=True)
    )
    return [m for m in ordered if m in usable][:limit]


def spent_today() -> Decimal:
    from costs.models import UsageEvent

    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    totals = UsageEvent.objects.filter(strategy=HEALTH_STRATEGY, occurred_at__gte=midnight).aggregate(
        reported=Sum("cost_usd"), computed=Sum("computed_cost_usd")
    )
    return totals["reported"] or totals["computed"] or Decimal(0)


def ping_estimate(model: CatalogModel) -> Decimal | None:
    """What one ping may cost at the catalog's prices (None when the model has no usable price)."""
    prompt, completion = model.price_prompt, model.price_completion
    if model.variable_pricing or prompt is None or completion is None:
        return None
    reasoning = PING_MAX_TOKENS if model.supports_reasoning else 0
    return prompt * 20 + completion * (PING_MAX_TOKENS + reasoning) + (model.price_request or Decimal(0))


def _run_coroutine(coroutine):
    """asyncio.run, also from a thread that already runs an event loop (then in a fresh thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _check_all(model_ids: list[str], budgets: dict[str, Decimal | None], allowance: Decimal | None,
                     concurrency: int) -> list[Result]:
    semaphore = asyncio.Semaphore(concurrency)
    remaining = {"usd": allowance}
    timeout = settings.LLMHIVE_HEALTH_TIMEOUT_SECONDS

    async with AsyncOpenRouterClient.from_settings(timeout=timeout, max_retries=0) as client:

        async def one(model_id: str) -> Result:
            result = Result(model_id)
            async with semaphore:
                try:
                    listing = await client.list_endpoints(model_id)
                except OpenRouterError as exc:
                    result.error_code, result.error_message, result.http_status = _describe(exc)
                    return result
                result.endpoints_total = len(listing.endpoints)
                result.endpoints_up = sum(1 for e in listing.endpoints if (e.status or 0) == 0)
                uptimes = [e.uptime_last_30m for e in listing.endpoints if e.uptime_last_30m is not None]
                result.best_uptime = max(uptimes) if uptimes else None
                if result.endpoints_up == 0:
                    result.error_code = "no_endpoint_up"
                    result.error_message = f"{result.endpoints_total} endpoints, none up"
                    return result
                if remaining["usd"] is None:
                    return result  # no key: the free check is the whole check
                estimate = budgets.get(model_id)
                if estimate is None:
                    result.skipped_ping = "no usable price to bound its cost"
                    return result
                if estimate > remaining["usd"]:
                    result.skipped_ping = "the daily ping cap is reached"
                    return result
                remaining["usd"] -= estimate  # reserved before awaiting: concurrent pings respect the cap
                result.pinged = True
                started = time.perf_counter()
                try:
                    reply = await client.chat_completion(
                        model_id, PING_MESSAGES, max_tokens=PING_MAX_TOKENS,
                        reasoning={"effort": "minimal", "exclude": True},
                    )
                except OpenRouterError as exc:
                    result.ping_ok = False
                    result.error_code, result.error_message, result.http_status = _describe(exc)
                    result.latency_ms = int((time.perf_counter() - started) * 1000)
                    return result
                result.latency_ms = int((time.perf_counter() - started) * 1000)
                result.ping_ok, result.http_status = True, 200
                usage = reply.usage
                result.ping_cost_usd = usage.cost if usage.cost is not None else estimate
                result.usage = {
                    "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                    "reasoning_tokens": min(usage.reasoning_tokens, usage.completion_tokens),
                    "cached_tokens": min(usage.cached_tokens, usage.prompt_tokens),
                    "cost_usd": usage.cost, "generation_id": reply.id[:100],
                }
                return result

        return list(await asyncio.gather(*(one(m) for m in model_ids)))


def _describe(exc: OpenRouterError) -> tuple[str, str, int | None]:
    code = type(exc).__name__.removeprefix("OpenRouter").lower() or "error"
    if getattr(exc, "error_code", None) not in (None, ""):
        code = f"{code}:{exc.error_code}"
    return code[:64], str(exc)[:2000], getattr(exc, "status_code", None)


def check_key() -> KeyInfo | None:
    """The key's limit and usage (None without a key). Raises HealthCheckError when OpenRouter
    cannot be reached at all."""
    try:
        with OpenRouterClient.from_settings(max_retries=0) as client:
            client.list_models()  # connectivity; free and needs no key
            return client.get_key() if settings.OPENROUTER_API_KEY else None
    except OpenRouterUnreachable as exc:
        raise HealthCheckError(f"OpenRouter is unreachable at {settings.OPENROUTER_BASE_URL}: {exc}") from None
    except OpenRouterError as exc:
        raise HealthCheckError(f"OpenRouter answered with an error: {exc}") from None


def run_health_checks(*, model_ids: list[str] | None = None, top: int | None = None, ping: bool = True,
                      trigger: str = "command") -> HealthCheckRun:
    """Check, record, and return the run. Raises HealthCheckError (after recording the run as
    an error) when OpenRouter cannot be reached at all."""
    run = HealthCheckRun.objects.create(trigger=trigger)
    try:
        targets = models_to_check(top=top, explicit=model_ids)
        key = check_key()
    except HealthCheckError as exc:
        run.status, run.error, run.finished_at = RunStatus.ERROR, str(exc), timezone.now()
        run.save()
        raise
    notes = []
    allowance = None
    if not ping:
        notes.append("pings off (--no-ping): endpoint status only")
    elif not settings.OPENROUTER_API_KEY:
        notes.append("no OPENROUTER_API_KEY: no pings, endpoint status only")
    else:
        allowance = max(settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD - spent_today(), Decimal(0))
    catalog = {m.id: m for m in CatalogModel.objects.filter(id__in=targets)}
    estimates = {m: ping_estimate(catalog[m]) for m in targets}
    results = _run_coroutine(_check_all(targets, estimates, allowance, settings.LLMHIVE_HEALTH_CONCURRENCY))
    skipped = sorted({r.skipped_ping for r in results if r.skipped_ping})
    notes += [f"pings skipped: {reason}" for reason in skipped]
    record(run, results, key, notes)
    return run


def record(run: HealthCheckRun, results: list[Result], key: KeyInfo | None, notes: list[str]) -> None:
    """Write everything in one transaction, then tell routing (the HEALTH data version)."""
    now = timezone.now()
    with transaction.atomic():
        ModelHealthCheck.objects.bulk_create([
            ModelHealthCheck(
                run=run, model_id=r.model_id, checked_at=now, ok=r.ok, endpoints_total=r.endpoints_total,
                endpoints_up=r.endpoints_up, best_uptime=r.best_uptime, pinged=r.pinged, ping_ok=r.ping_ok,
                latency_ms=r.latency_ms, http_status=r.http_status, error_code=r.error_code,
                error_message=r.error_message, ping_cost_usd=r.ping_cost_usd,
            )
            for r in results
        ])
        _record_ping_costs(run, results, now)
        alerts = _update_reliability(results, now)
        run.models_checked = len(results)
        run.models_failed = sum(1 for r in results if not r.ok)
        run.pinged = sum(1 for r in results if r.pinged)
        run.ping_spend_usd = sum((r.ping_cost_usd or Decimal(0) for r in results), Decimal(0))
        run.key_limit_usd = key.limit if key else None
        run.key_usage_usd = key.usage if key else None
        run.note = "; ".join(notes)
        run.status = RunStatus.FAILURES if run.models_failed else RunStatus.OK
        run.finished_at = timezone.now()
        run.save()
    if alerts:
        raise_alerts(alerts)
    DataVersion.bump(DataVersion.HEALTH)


def _record_ping_costs(run: HealthCheckRun, results: list[Result], now) -> None:
    from costs.ingest import ingest_events

    events = [
        {
            "request_id": f"health:{run.pk}:{r.model_id}", "occurred_at": now, "model": r.model_id,
            "strategy": HEALTH_STRATEGY, "success": bool(r.ping_ok), "latency_ms": r.latency_ms,
            **{k: v for k, v in r.usage.items() if k != "cost_usd"},
            "cost_usd": r.usage.get("cost_usd"),
        }
        for r in results if r.pinged and r.ping_ok
    ]
    if events:
        ingest_events(events)


def _update_reliability(results: list[Result], now) -> list[NewAlert]:
    threshold = settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT
    existing = {r.model_id: r for r in ModelReliability.objects.filter(model_id__in=[x.model_id for x in results])}
    new, changed, alerts, recovered = [], [], [], []
    for result in results:
        row = existing.get(result.model_id)
        if row is None:
            row = ModelReliability(model_id=result.model_id, reliability=result.score, checks_count=0,
                                   consecutive_failures=0, last_checked_at=now)
            new.append(row)
        else:
            row.reliability = RECENT_WEIGHT * result.score + (1 - RECENT_WEIGHT) * row.reliability
            changed.append(row)
        row.checks_count += 1
        row.last_checked_at = now
        if result.ok:
            if row.consecutive_failures >= threshold:
                recovered.append(result.model_id)
            row.consecutive_failures = 0
            row.last_ok_at = now
            row.last_error = ""
        else:
            row.consecutive_failures += 1
            row.last_error = f"{result.error_code}: {result.error_message}"[:2000]
            if row.consecutive_failures >= threshold:
                alerts.append(NewAlert(
                    kind=AlertKind.MODEL_UNHEALTHY, model_id=result.model_id,
                    message=f"{result.model_id} failed {row.consecutive_failures} health checks in a row "
                            f"(last: {row.last_error}). Routing weighs it down by its reliability ({row.reliability:.2f}).",
                    details={"consecutive_failures": row.consecutive_failures, "error_code": result.error_code},
                ))
    ModelReliability.objects.bulk_create(new)
    ModelReliability.objects.bulk_update(
        changed, ["reliability", "checks_count", "consecutive_failures", "last_checked_at", "last_ok_at", "last_error"]
    )
    if recovered:
        for alert in CatalogAlert.objects.open().filter(kind=AlertKind.MODEL_UNHEALTHY, model_id__in=recovered):
            alert.acknowledged_at = now
            alert.details = {**alert.details, "recovered_at": now.isoformat(), "note": "recovered: the last check passed"}
            alert.message += f" Recovered at {now:%Y-%m-%d %H:%M} UTC: the last check passed."
            alert.save(update_fields=["acknowledged_at", "details", "message"])
    return alerts
