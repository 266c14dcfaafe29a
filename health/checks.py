"""Health checks of the models that matter: OpenRouter's free per-endpoint status first, then a
ping completion, only with a key and only under the daily spend cap.

The network part runs concurrently (an httpx AsyncClient and a semaphore, one deadline per
check: twenty checks take about as long as the slowest few); everything is written in one go at
the end, in sync code: the checks, the ping costs into the usage ledger (strategy
`health_check`), reliability, alerts, and the HEALTH data version routing watches.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import Coroutine
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.alerts import NewAlert, raise_alerts
from catalog.client import openrouter_client
from catalog.locks import LockBusy, hold_lock
from catalog.models import AlertKind, CatalogAlert, CatalogModel
from openrouter import (
    AsyncOpenRouterClient,
    KeyInfo,
    ModelEndpoints,
    OpenRouterAuthError,
    OpenRouterError,
)
from catalog.research import models_that_matter
from health.models import HealthCheckRun, ModelHealthCheck, ModelReliability, RunStatus, Trigger
from health.pings import PING_MESSAGES, Allowance, PingPlan, ping_max_tokens, plan_ping, spent_today, usd
from health.selectors import HEALTH_STRATEGY
from llmhive_site.models import DataVersion

logger = logging.getLogger(__name__)
T = TypeVar("T")

PING_LOCK = "health pings"
SKIP_CAP = "the daily ping cap is reached"
SKIP_NO_PRICE = "no usable price to bound a ping's cost"


class HealthCheckError(Exception):
    """Nothing could be checked: OpenRouter unreachable, or models named that do not exist."""


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
        """This check's part in reliability: the share of endpoints up, or 0 when it failed
        (a model whose endpoints are up but whose ping fails is down for us)."""
        if not self.ok or not self.endpoints_total:
            return 0.0
        return self.endpoints_up / self.endpoints_total

    def skip_ping(self, reason: str, detail: str) -> None:
        self.skipped_ping = reason
        self.error_message = f"ping skipped: {detail}"

    def fail(self, code: str, message: str, http_status: int | None = None) -> None:
        self.error_code, self.error_message, self.http_status = code[:64], message[:2000], http_status

    def read_endpoints(self, listing: ModelEndpoints) -> None:
        # Status 0 is healthy; OpenRouter's negative values are degraded states.
        self.endpoints_total = len(listing.endpoints)
        self.endpoints_up = sum(1 for e in listing.endpoints if (e.status or 0) == 0)
        uptimes = [e.uptime_last_30m for e in listing.endpoints if e.uptime_last_30m is not None]
        self.best_uptime = max(uptimes) if uptimes else None
        if not self.endpoints_total:
            self.fail("no_endpoints", "OpenRouter lists no endpoint for this model")
        elif not self.endpoints_up:
            self.fail("no_endpoint_up", f"{self.endpoints_total} endpoints, none up")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also when this thread already runs an event loop (then in a fresh thread,
    which has none)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="health-checks")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def check_models(
    model_ids: list[str], plans: dict[str, PingPlan | None], allowance: Allowance | None, *, concurrency: int, timeout: float
) -> list[Result]:
    """Check each model, at most `concurrency` at once, each within `timeout` seconds."""
    semaphore = asyncio.Semaphore(concurrency)
    # The per-check deadline is the timeout that counts; the client's own is a backstop.
    async with openrouter_client(AsyncOpenRouterClient, timeout=timeout + 1, max_retries=0) as client:

        async def one(model_id: str) -> Result:
            result = Result(model_id)
            async with semaphore:
                try:
                    async with asyncio.timeout(timeout):
                        await _check(client, result, plans.get(model_id), allowance)
                except TimeoutError:
                    if result.pinged:
                        result.ping_ok = False
                    result.fail("timeout", f"no answer within {timeout:g} s", None)
                except OpenRouterError as exc:
                    if result.pinged:
                        result.ping_ok = False
                    result.fail(*_describe(exc))
            return result

        return list(await asyncio.gather(*(one(m) for m in model_ids)))


async def _check(client: AsyncOpenRouterClient, result: Result, plan: PingPlan | None, allowance: Allowance | None) -> None:
    listing = await client.list_endpoints(result.model_id)
    result.read_endpoints(listing)
    if result.error_code or allowance is None:
        return  # nothing up to ping, or no key / pings off: the free check is the whole check
    if plan is None:
        result.skip_ping(SKIP_NO_PRICE, "the catalog has no price to bound its cost")
        return
    up = [e for e in listing.endpoints if (e.status or 0) == 0]
    max_tokens = ping_max_tokens(up)
    estimate = plan.estimate(max_tokens)
    if not allowance.reserve(estimate):
        result.skip_ping(
            SKIP_CAP,
            f"an estimated {usd(estimate)} USD would pass the daily cap of "
            f"{usd(settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD)} USD ({usd(max(allowance.usd, Decimal(0)))} USD left)",
        )
        return
    result.pinged = True
    started = time.perf_counter()
    try:
        reply = await client.chat_completion(result.model_id, PING_MESSAGES, max_tokens=max_tokens, reasoning=plan.reasoning)
    finally:
        result.latency_ms = int((time.perf_counter() - started) * 1000)
    usage = reply.usage
    result.ping_ok, result.http_status = True, 200
    result.ping_cost_usd = usage.cost if usage.cost is not None else estimate
    allowance.settle(estimate, result.ping_cost_usd)
    result.usage = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "reasoning_tokens": min(usage.reasoning_tokens, usage.completion_tokens),
        "cached_tokens": min(usage.cached_tokens, usage.prompt_tokens),
        "cost_usd": usage.cost,
        "generation_id": reply.id[:100],
    }


def _describe(exc: OpenRouterError) -> tuple[str, str, int | None]:
    """(error_code, message, HTTP status): `paymentrequired`, `ratelimited`, `servererror`,
    `unreachable`, `badresponse`, `autherror`; OpenRouter's own code after a colon."""
    code = type(exc).__name__.removeprefix("OpenRouter").lower() or "error"
    if exc.error_code not in (None, ""):
        code = f"{code}:{exc.error_code}"
    return code, str(exc), exc.status_code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def models_to_check(*, top: int | None = None, explicit: list[str] | None = None) -> list[str]:
    """The ones named, or the ones that matter (role preferences and escalation overrides, the
    top of each category ranking, the most used in the last 7 days — enabled and active ones
    only: catalog.research.models_that_matter with the hooks routing and health register)."""
    if explicit:
        wanted = list(dict.fromkeys(explicit))
        known = set(CatalogModel.objects.filter(id__in=wanted).values_list("id", flat=True))
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise HealthCheckError(f"not in the catalog: {', '.join(unknown)}")
        return wanted
    return models_that_matter(limit=top or settings.LLMHIVE_HEALTH_TOP)


def check_openrouter() -> tuple[KeyInfo | None, str]:
    """Connectivity (the models list, free) and, with a key, the key's limit and usage.

    Returns (key info or None, a note). Raises HealthCheckError when OpenRouter cannot be
    reached at all."""
    with openrouter_client(max_retries=1) as client:
        try:
            client.list_models()
        except OpenRouterError as exc:
            raise HealthCheckError(_one_line(f"OpenRouter is unreachable at {settings.OPENROUTER_BASE_URL}: {exc}")) from None
        if not settings.OPENROUTER_API_KEY:
            return None, ""
        try:
            return client.get_key(), ""
        except OpenRouterAuthError as exc:
            return None, _one_line(f"the key was refused ({exc})")
        except OpenRouterError as exc:
            return None, _one_line(f"the key's limit and usage could not be read ({exc})")


def run_health_checks(
    *, model_ids: list[str] | None = None, top: int | None = None, ping: bool = True, trigger: str = Trigger.COMMAND
) -> HealthCheckRun:
    """Check, record, and return the run. Raises HealthCheckError (after recording the run as
    an error) when nothing could be checked."""
    run = HealthCheckRun.objects.create(trigger=trigger)
    try:
        targets = models_to_check(top=top, explicit=model_ids)
        key, key_note = check_openrouter()
        notes = [key_note] if key_note else []
        if not targets:
            notes.append("no models to check: none enabled and active that matter")
        with ExitStack() as stack:
            allowance, spent = _ping_allowance(stack, run, ping=ping, key_note=key_note, checks=len(targets), notes=notes)
            plans = {m.id: plan_ping(m) for m in CatalogModel.objects.filter(id__in=targets)} if allowance is not None else {}
            results = run_async(check_models(
                targets, plans, allowance,
                concurrency=max(1, settings.LLMHIVE_HEALTH_CONCURRENCY), timeout=settings.LLMHIVE_HEALTH_TIMEOUT_SECONDS,
            ))
            for reason in (SKIP_CAP, SKIP_NO_PRICE):
                skipped = sum(1 for r in results if r.skipped_ping == reason)
                if skipped:
                    notes.append(f"{skipped} ping{'s' if skipped > 1 else ''} skipped: {reason}")
            if any(r.skipped_ping == SKIP_CAP for r in results):
                cap = settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD
                notes.append(f"spent on pings today before this run: {usd(spent)} of {usd(cap)} USD")
            record(run, results, key, notes)
    except Exception as exc:
        if not isinstance(exc, HealthCheckError):
            logger.exception("health run #%s crashed", run.pk)
        run.status, run.error, run.finished_at = RunStatus.ERROR, _one_line(str(exc)) or type(exc).__name__, timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    return run


def _ping_allowance(
    stack: ExitStack, run: HealthCheckRun, *, ping: bool, key_note: str, checks: int, notes: list[str]
) -> tuple[Allowance | None, Decimal]:
    """(what pings may spend in this run, what they spent today before it); None: no pings."""
    if not ping:
        notes.append("pings off (--no-ping): endpoint status only")
    elif not settings.OPENROUTER_API_KEY:
        notes.append("no OPENROUTER_API_KEY: no pings, endpoint status only")
    elif key_note.startswith("the key was refused"):
        notes.append("no pings with a refused key")
    else:
        # One run pings at a time, so two runs cannot each spend what is left of the cap. The
        # lock outlives the slowest possible run (a killed worker's lock expires).
        concurrency = max(1, settings.LLMHIVE_HEALTH_CONCURRENCY)
        ttl = math.ceil(checks / concurrency) * math.ceil(settings.LLMHIVE_HEALTH_TIMEOUT_SECONDS) + 300
        holder = f"health run #{run.pk} ({uuid.uuid4().hex[:8]})"
        try:
            stack.enter_context(hold_lock(PING_LOCK, holder=holder, ttl_seconds=ttl))
        except LockBusy as exc:
            notes.append(f"no pings: another health run is pinging ({exc.holder})")
        else:
            spent = spent_today()
            return Allowance(max(settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD - spent, Decimal(0))), spent
    return None, Decimal(0)


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
    DataVersion.bump(DataVersion.HEALTH)


def _record_ping_costs(run: HealthCheckRun, results: list[Result], now) -> None:
    """Answered pings go into the usage ledger as strategy health_check (routing's memory
    ignores that strategy). A failed ping's cost is unknown, so it is not booked."""
    from costs.ingest import ingest_events

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
            alerts.append(NewAlert(
                kind=AlertKind.MODEL_UNHEALTHY,
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
            ))
    ModelReliability.objects.bulk_create(new)
    # bulk_update skips auto_now, hence updated_at set above.
    ModelReliability.objects.bulk_update(
        changed,
        ["reliability", "checks_count", "consecutive_failures", "last_checked_at", "last_ok_at", "last_error", "updated_at"],
    )
    if recovered:
        _close_recovered(recovered, now)
    return alerts


def _close_recovered(model_ids: list[str], now) -> None:
    """A model_unhealthy alert of a model whose check passed again is answered, with a note."""
    stamp = f"{now:%Y-%m-%d %H:%M} UTC"
    closing = list(CatalogAlert.objects.open().filter(kind=AlertKind.MODEL_UNHEALTHY, model_id__in=model_ids))
    for alert in closing:
        alert.acknowledged_at = now
        alert.message += f" Recovered at {stamp}: the last health check passed."
        alert.details = {**alert.details, "recovered_at": now.isoformat(), "note": f"recovered at {stamp}"}
    CatalogAlert.objects.bulk_update(closing, ["acknowledged_at", "message", "details"])
