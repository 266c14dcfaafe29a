"""Probing: talking to OpenRouter. Its free per-endpoint status first, then a ping completion,
only with a key and only under the daily spend cap.

The network part runs concurrently (an httpx AsyncClient and a semaphore, one deadline per
check: twenty checks take about as long as the slowest few). Nothing is written here but the
ping lock; health.recording writes the results.
"""

from __future__ import annotations

import asyncio
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

from catalog.client import openrouter_client
from core.locks import LockBusy, hold_lock
from core.money import decimal_str
from health.models import HealthCheckRun
from health.pings import PING_MESSAGES, Allowance, PingPlan, ping_max_tokens, spent_today
from openrouter import (
    AsyncOpenRouterClient,
    KeyInfo,
    ModelEndpoints,
    OpenRouterAuthError,
    OpenRouterError,
)

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
    model_ids: list[str],
    plans: dict[str, PingPlan | None],
    allowance: Allowance | None,
    *,
    concurrency: int,
    timeout: float,
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


async def _check(
    client: AsyncOpenRouterClient, result: Result, plan: PingPlan | None, allowance: Allowance | None
) -> None:
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
            f"an estimated {decimal_str(estimate)} USD would pass the daily cap of "
            f"{decimal_str(settings.LLMHIVE_HEALTH_PING_DAILY_CAP_USD)} USD ({decimal_str(max(allowance.usd, Decimal(0)))} USD left)",
        )
        return
    result.pinged = True
    started = time.perf_counter()
    try:
        reply = await client.chat_completion(
            result.model_id, PING_MESSAGES, max_tokens=max_tokens, reasoning=plan.reasoning
        )
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


def check_openrouter() -> tuple[KeyInfo | None, str]:
    """Connectivity (the models list, free) and, with a key, the key's limit and usage.

    Returns (key info or None, a note). Raises HealthCheckError when OpenRouter cannot be
    reached at all."""
    with openrouter_client(max_retries=1) as client:
        try:
            client.list_models()
        except OpenRouterError as exc:
            raise HealthCheckError(
                _one_line(f"OpenRouter is unreachable at {settings.OPENROUTER_BASE_URL}: {exc}")
            ) from None
        if not settings.OPENROUTER_API_KEY:
            return None, ""
        try:
            return client.get_key(), ""
        except OpenRouterAuthError as exc:
            return None, _one_line(f"the key was refused ({exc})")
        except OpenRouterError as exc:
            return None, _one_line(f"the key's limit and usage could not be read ({exc})")


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
