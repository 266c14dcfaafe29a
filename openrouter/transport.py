"""One call to OpenRouter, sans I/O: what a request is, what an answer or a failure comes to,
and the one retry loop both clients run.

`exchange()` is that loop, written once as a generator. It yields steps and never does I/O:

    Send(call)      send the request; the driver sends back the `httpx.Response`, or the
                    `httpx.RequestError` it raised
    Sleep(seconds)  wait, then resume it

It returns the decoded JSON payload (`StopIteration.value`) or raises the `OpenRouterError` the
attempts came to. `RetryPolicy` decides whether a failed attempt is tried again and how long to
wait first; `judge()` turns what an attempt got into a `Verdict`. The blocking and the asyncio
client each drive the generator in a few lines (`time.sleep` / `asyncio.sleep`, `httpx.Client`
/ `httpx.AsyncClient`); nothing else differs between them.

A limit on a whole call (a deadline across the retries) lives in `exchange()`: it notes the
start, gives each `Send` the moment the call must end (`Send.ends_at`, on the driver's monotonic
clock), and refuses a pause that would end past it. The drivers bound each attempt by that
moment and by a size cap while they read the body (`read_capped` / `aread_capped`), and answer
with a `Cut` when either is reached.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import httpx

from openrouter.errors import (
    OpenRouterBadResponse,
    OpenRouterError,
    OpenRouterRateLimited,
    OpenRouterServerError,
    OpenRouterUnreachable,
    error_class,
)
from openrouter.parsing import parse_retry_after


@dataclass(frozen=True)
class Call:
    """One request: method, path under the base URL, query, JSON body."""

    method: str
    path: str
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    # Parse JSON numbers with a fraction as Decimal (bodies that carry money as numbers).
    exact: bool = False

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Verdict:
    """What one attempt came to: a payload, or an error and whether to try again."""

    payload: Any = None
    error: OpenRouterError | None = None
    retry: bool = False
    retry_after: float | None = None


@dataclass(frozen=True)
class Send:
    """Step: send `call`, and resume the loop with what came of it (an `Outcome`). The attempt
    must end by `ends_at` (time.monotonic()), when there is a deadline."""

    call: Call
    ends_at: float | None = None
    # The call's deadline in seconds, for the messages.
    deadline: float | None = None

    def remaining(self) -> float | None:
        return None if self.ends_at is None else self.ends_at - time.monotonic()


@dataclass(frozen=True)
class Sleep:
    """Step: wait `seconds`, then resume the loop (with None)."""

    seconds: float


@dataclass(frozen=True)
class Cut:
    """An attempt the driver stopped: the call's deadline came (`reason` "deadline") or the
    answer grew past the size cap ("size") after `received` bytes."""

    reason: str
    limit: float
    received: int = 0


# What a driver sends back after a `Send`: the answer, the failure that stood for one, or a Cut.
Outcome = httpx.Response | httpx.RequestError | Cut
Steps = Generator[Send | Sleep, Outcome | None, Any]


@dataclass(frozen=True)
class RetryPolicy:
    """The one place that decides whether a failed attempt is tried again, and after how long."""

    max_retries: int = 3
    backoff: float = 0.5
    max_retry_after: float = 60.0

    def pause(self, attempt: int, verdict: Verdict) -> float | None:
        """Seconds to wait before retrying after failed attempt number `attempt` (0 for the
        first), or None to give up: the failure is final or the retries are spent."""
        if not verdict.retry or attempt >= self.max_retries:
            return None
        if verdict.retry_after is not None:
            return min(verdict.retry_after, self.max_retry_after)
        base = self.backoff * (2**attempt)
        return base + random.uniform(0, base * 0.1)


def exchange(
    call: Call,
    policy: RetryPolicy,
    verdict_on: Callable[[Call, Outcome], Verdict],
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Steps:
    """The retry loop shared by both clients (see the module docstring for how to drive it).
    `deadline`: seconds the whole call may take, attempts and pauses included (None: no limit)."""
    ends_at = None if deadline is None else clock() + deadline
    attempt = 0
    while True:
        outcome = yield Send(call, ends_at=ends_at, deadline=deadline)
        assert outcome is not None, "a Send step is answered with the response, the RequestError or a Cut"
        verdict = verdict_on(call, outcome)
        if verdict.error is None:
            return verdict.payload
        pause = policy.pause(attempt, verdict)
        if pause is not None and ends_at is not None and clock() + pause >= ends_at:
            verdict.error._append(f"(no time left to retry within the call's deadline of {deadline:g} s)")
            raise verdict.error
        if pause is None:
            raise give_up(verdict, attempt + 1)
        yield Sleep(pause)
        attempt += 1


def give_up(verdict: Verdict, attempts: int) -> OpenRouterError:
    assert verdict.error is not None
    if verdict.retry and attempts > 1:
        verdict.error._append(f"(after {attempts} attempts)")
    return verdict.error


# --- Verdicts ---------------------------------------------------------------------------------


def judge(call: Call, outcome: Outcome, *, base_url: str, timeout: float) -> Verdict:
    """The verdict on one attempt. `base_url` and `timeout` only word the failure messages."""
    if isinstance(outcome, Cut):
        return judge_cut(call, outcome, base_url + call.path)
    if isinstance(outcome, httpx.RequestError):
        return judge_failure(call, outcome, base_url + call.path, timeout)
    return judge_response(call, outcome)


def judge_cut(call: Call, cut: Cut, url: str) -> Verdict:
    if cut.reason == "size":
        # The same answer would come again: not retried.
        return Verdict(
            error=OpenRouterBadResponse(
                f"OpenRouter's answer to {call.method} {url} is larger than {cut.limit:.0f} bytes; reading "
                f"stopped at {cut.received} bytes (raise LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES if it is genuine)"
            )
        )
    return Verdict(
        error=OpenRouterUnreachable(
            f"OpenRouter did not finish answering {call.method} {url} within the call's deadline of "
            f"{cut.limit:g} s ({cut.received} bytes received)"
        ),
        # The deadline is spent: nothing is left to retry in.
    )


def judge_failure(call: Call, exc: httpx.RequestError, url: str, timeout: float) -> Verdict:
    if isinstance(exc, httpx.TimeoutException):
        error = OpenRouterUnreachable(
            f"OpenRouter did not answer {call.method} {url} within {timeout:g} s ({type(exc).__name__})"
        )
    elif isinstance(exc, httpx.RemoteProtocolError):
        error = OpenRouterUnreachable(
            f"OpenRouter closed the connection without a complete answer to {call.method} {url}"
        )
    elif isinstance(exc, httpx.TransportError):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = OpenRouterUnreachable(f"cannot reach OpenRouter at {call.method} {url}: {detail}")
    else:  # a body we could not decode (bad gzip), too many redirects...
        return Verdict(
            error=OpenRouterBadResponse(
                f"OpenRouter's answer to {call.describe()} is unusable: {type(exc).__name__}: {exc}"
            )
        )
    return Verdict(error=error, retry=True)


def judge_response(call: Call, response: httpx.Response) -> Verdict:
    status = response.status_code
    if 200 <= status < 300:
        try:
            payload = decode(response, call)
        except OpenRouterBadResponse as exc:
            return Verdict(error=exc)
        message, code = _error_details(payload)
        if message is None and code is None:
            return Verdict(payload=payload)
        # OpenRouter sometimes answers 200 and puts the failure in the body (the status
        # line went out before the provider failed). Not retried: a completion may already
        # have been paid for.
        cls = error_class(code if isinstance(code, int) else None)
        text = f"OpenRouter answered {call.describe()} with 200 but an error in the body"
        text += f" (code {code})" if code is not None else ""
        text += f": {message}" if message else ""
        return Verdict(error=cls(text, status_code=status, error_code=code))

    try:
        body = decode(response, call)
    except OpenRouterBadResponse:
        body = None
    message, code = _error_details(body)
    if body is None and _looks_like_html(response):
        message = "an HTML page, not JSON"
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "error"
    text = f"OpenRouter answered {call.describe()} with {status} {reason}"
    text += f": {message}" if message and message != reason else ""
    cls = error_class(status)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if cls is OpenRouterRateLimited:
        error: OpenRouterError = OpenRouterRateLimited(
            text, status_code=status, error_code=code, retry_after=retry_after
        )
    else:
        error = cls(text, status_code=status, error_code=code)
    retry = cls in (OpenRouterRateLimited, OpenRouterServerError)
    return Verdict(error=error, retry=retry, retry_after=retry_after)


# --- Bodies -----------------------------------------------------------------------------------


def _error_details(body: Any) -> tuple[str | None, int | str | None]:
    """(message, code) of OpenRouter's error body `{"error": {"code", "message", "metadata"}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
    provider = metadata.get("provider_name")
    if message and isinstance(provider, str) and provider:
        message = f"{message} (provider: {provider})"
    code = error.get("code")
    code = code if isinstance(code, (int, str)) and not isinstance(code, bool) else None
    return message, code


def _looks_like_html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("content-type", "") or response.content.lstrip()[:1] == b"<"


def decode(response: httpx.Response, call: Call) -> Any:
    """The JSON body, or OpenRouterBadResponse saying what is wrong with it."""
    text = response.content.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise OpenRouterBadResponse(
            f"OpenRouter answered {call.describe()} with an empty body", status_code=response.status_code
        )
    if _looks_like_html(response):
        raise OpenRouterBadResponse(
            f"OpenRouter answered {call.describe()} with an HTML page ({response.status_code}), not JSON",
            status_code=response.status_code,
        )
    # Non-streamed completions arrive with whitespace before the JSON (OpenRouter sends it to
    # keep the connection alive while the model works); json.loads skips leading whitespace.
    try:
        return json.loads(text, parse_float=Decimal) if call.exact else json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpenRouterBadResponse(
            f"OpenRouter answered {call.describe()} with invalid or truncated JSON "
            f"({exc.msg} at line {exc.lineno} column {exc.colno}; {len(response.content)} bytes)",
            status_code=response.status_code,
        ) from None


# --- Reading an answer within the deadline and the size cap -----------------------------------


def attempt_timeout(timeout: float, send: Send) -> httpx.Timeout | None:
    """Each wait of the attempt: the client's timeout, shortened to what is left of the call's
    deadline; None when nothing is left."""
    remaining = send.remaining()
    if remaining is None:
        return httpx.Timeout(timeout)
    if remaining <= 0:
        return None
    return httpx.Timeout(min(timeout, remaining))


def buffered(response: httpx.Response, body: bytes) -> httpx.Response:
    """A complete response holding `body` (already decoded: no content-encoding left)."""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


class Watchdog:
    """Shuts the attempt's socket down when the call's deadline comes, so that a read blocked in
    the middle of a trickle (a byte a second satisfies every per-read timeout) ends then. The
    blocking client's only way to bound a whole answer, headers included: httpx has no total
    timeout, and closing a socket does not wake a thread blocked reading it (shutting it down
    does)."""

    def __init__(self, send: Send) -> None:
        self._streams: list[Any] = []
        self._lock = threading.Lock()
        self.fired = False
        remaining = send.remaining()
        self._timer = None if remaining is None else threading.Timer(max(0.0, remaining), self._fire)
        if self._timer:
            self._timer.daemon = True
            self._timer.start()

    def trace(self, event: str, info: dict) -> None:
        """httpcore's trace hook: watch a new connection's stream as soon as it is open (and
        again once TLS wraps it: the wrapped socket replaces the plain one)."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        if stream is None:
            return
        with self._lock:
            self._streams.append(stream)
            fired = self.fired
        if fired:
            _shut(stream)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            streams = list(self._streams)
        for stream in streams:
            _shut(stream)

    def cancel(self) -> None:
        if self._timer:
            self._timer.cancel()


def _shut(stream: Any) -> None:
    sock = stream.get_extra_info("socket") if hasattr(stream, "get_extra_info") else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def read_capped(http: httpx.Client, request_args: dict[str, Any], send: Send, timeout: float, cap: int) -> Outcome:
    """One blocking attempt, read as a stream and stopped at the deadline or past the size cap."""
    limit = send.deadline or 0.0
    per_wait = attempt_timeout(timeout, send)
    if per_wait is None:
        return Cut("deadline", limit)
    watchdog = Watchdog(send)
    received = 0
    try:
        with http.stream(**request_args, timeout=per_wait, extensions={"trace": watchdog.trace}) as response:
            watchdog.watch(response.extensions.get("network_stream"))  # a connection reused from the pool
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                received = len(body)
                if received > cap:
                    return Cut("size", cap, received)
                if send.ends_at is not None and time.monotonic() >= send.ends_at:
                    return Cut("deadline", limit, received)
            return buffered(response, bytes(body))
    except httpx.RequestError as exc:
        if watchdog.fired or (send.ends_at is not None and time.monotonic() >= send.ends_at):
            return Cut("deadline", limit, received)
        return exc
    finally:
        watchdog.cancel()


async def aread_capped(
    http: httpx.AsyncClient, request_args: dict[str, Any], send: Send, timeout: float, cap: int
) -> Outcome:
    """One asyncio attempt, read as a stream and stopped at the deadline or past the size cap."""
    limit = send.deadline or 0.0
    per_wait = attempt_timeout(timeout, send)
    if per_wait is None:
        return Cut("deadline", limit)
    received = 0
    try:
        async with asyncio.timeout(send.remaining()):
            async with http.stream(**request_args, timeout=per_wait) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    received = len(body)
                    if received > cap:
                        return Cut("size", cap, received)
                return buffered(response, bytes(body))
    except TimeoutError:
        return Cut("deadline", limit, received)
    except httpx.RequestError as exc:
        if send.ends_at is not None and time.monotonic() >= send.ends_at:
            return Cut("deadline", limit, received)
        return exc
