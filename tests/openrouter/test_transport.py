"""The one retry loop (`openrouter.transport.exchange`): driven by hand without any I/O, and
through both clients against the fake OpenRouter, which must retry the same way."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from openrouter import (
    AsyncOpenRouterClient,
    OpenRouterAuthError,
    OpenRouterClient,
    OpenRouterError,
    OpenRouterServerError,
    OpenRouterUnreachable,
    RetryPolicy,
)
from openrouter.transport import Call, Cut, Send, Sleep, exchange, judge
from tests.fake_openrouter import drop, rate_limited, status

CALL = Call("GET", "/models")
OK = httpx.Response(200, json={"data": []})


def error(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, headers=headers, json={"error": {"code": code, "message": f"says {code}"}})


def drive(policy: RetryPolicy, outcomes: list) -> tuple[list, object]:
    """Run the loop by hand, answering each Send with the next outcome: (steps, payload or error)."""
    steps = exchange(
        CALL, policy, lambda call, outcome: judge(call, outcome, base_url="https://or.test/api/v1", timeout=5)
    )
    seen: list = []
    answers = iter(outcomes)
    reply = None
    try:
        while True:
            step = steps.send(reply)
            seen.append(step)
            reply = next(answers) if isinstance(step, Send) else None
    except StopIteration as done:
        return seen, done.value
    except OpenRouterError as exc:
        return seen, exc


# --- The loop, without I/O --------------------------------------------------------------------


def test_it_waits_for_retry_after_then_backs_off_then_returns_the_payload():
    seen, result = drive(RetryPolicy(max_retries=3, backoff=0.1), [error(429, **{"Retry-After": "2"}), error(503), OK])

    assert [type(step) for step in seen] == [Send, Sleep, Send, Sleep, Send]
    assert all(step.call == CALL for step in seen if isinstance(step, Send))
    assert seen[1].seconds == 2.0  # Retry-After
    assert 0.2 <= seen[3].seconds <= 0.22  # backoff * 2 ** 1, plus up to 10 % jitter
    assert result == {"data": []}


def test_retry_after_is_capped():
    seen, _ = drive(RetryPolicy(max_retry_after=0.5), [error(429, **{"Retry-After": "3600"}), OK])

    assert seen[1] == Sleep(0.5)


def test_it_gives_up_when_the_retries_are_spent():
    seen, result = drive(RetryPolicy(max_retries=1, backoff=0), [error(503), error(502)])

    assert [type(step) for step in seen] == [Send, Sleep, Send]
    assert isinstance(result, OpenRouterServerError) and result.status_code == 502
    assert "after 2 attempts" in str(result)


def test_a_final_failure_is_not_retried():
    seen, result = drive(RetryPolicy(max_retries=3), [error(401)])

    assert seen == [Send(CALL)]
    assert isinstance(result, OpenRouterAuthError) and "after" not in str(result)


def test_a_failed_request_is_judged_unreachable_and_retried():
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    seen, result = drive(RetryPolicy(max_retries=1, backoff=0), [refused, refused])

    assert [type(step) for step in seen] == [Send, Sleep, Send]
    assert isinstance(result, OpenRouterUnreachable)
    assert (
        str(result)
        == "cannot reach OpenRouter at GET https://or.test/api/v1/models: [Errno 111] Connection refused (after 2 attempts)"
    )


# --- Both clients through the shared loop ----------------------------------------------------


def list_models(kind: str, base_url: str, **options):
    """GET /models with the blocking or the asyncio client: the payload's ids, or the error."""
    options = {"timeout": 2.0, "backoff": 0.01, **options}
    try:
        if kind == "blocking":
            with OpenRouterClient(base_url, **options) as client:
                return client.list_models().ids

        async def run():
            async with AsyncOpenRouterClient(base_url, **options) as client:
                return (await client.list_models()).ids

        return asyncio.run(run())
    except OpenRouterError as exc:
        return exc


def test_the_blocking_and_async_clients_retry_the_same_way(fake_openrouter):
    fake_openrouter.set_models([{"id": "acme/model", "pricing": {"prompt": "0.000001", "completion": "0.000002"}}])
    runs = {}
    for kind in ("blocking", "async"):
        fake_openrouter.reset_counters()
        fake_openrouter.script("/models", rate_limited(retry_after="0.3"), status(503), drop())

        result = list_models(kind, fake_openrouter.base_url, max_retries=3)

        times = [r.time for r in fake_openrouter.requests]
        runs[kind] = (result, len(times))
        assert 0.3 <= times[1] - times[0] < 1.0, kind  # Retry-After, not the 0.01 s backoff

    assert runs["blocking"] == runs["async"] == (["acme/model"], 4)


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_both_clients_give_up_after_the_same_attempts(fake_openrouter, kind):
    fake_openrouter.script("/models", status(503), rate_limited(retry_after="0"), status(502), status(500))

    failure = list_models(kind, fake_openrouter.base_url, max_retries=2)

    assert isinstance(failure, OpenRouterServerError)
    assert failure.status_code == 502
    assert str(failure).endswith("(after 3 attempts)")
    assert len(fake_openrouter.requests) == 3
    assert fake_openrouter.pending("/models") == 1


# --- The call's deadline, without I/O ----------------------------------------------------------


def drive_with_clock(deadline: float, outcomes: list, clock_after: list[float]) -> tuple[list, object]:
    """Like `drive`, on a fake clock: the clock reads `clock_after[i]` once the i-th step is done."""
    now = [0.0]
    steps = exchange(
        CALL,
        RetryPolicy(max_retries=5, backoff=1.0),
        lambda call, outcome: judge(call, outcome, base_url="https://or.test/api/v1", timeout=5),
        deadline,
        clock=lambda: now[0],
    )
    seen: list = []
    answers, times = iter(outcomes), iter(clock_after)
    reply = None
    try:
        while True:
            step = steps.send(reply)
            seen.append(step)
            now[0] = next(times)
            reply = next(answers) if isinstance(step, Send) else None
    except StopIteration as done:
        return seen, done.value
    except OpenRouterError as exc:
        return seen, exc


def test_each_attempt_is_told_when_the_call_must_end():
    seen, result = drive_with_clock(10.0, [error(503), OK], [2.0, 3.5, 5.0])

    assert [type(step) for step in seen] == [Send, Sleep, Send]
    assert {step.ends_at for step in seen if isinstance(step, Send)} == {10.0}
    assert result == {"data": []}


def test_a_pause_that_would_end_past_the_deadline_is_not_taken():
    seen, result = drive_with_clock(3.0, [error(503), OK], [2.5])

    assert [type(step) for step in seen] == [Send]  # a 1 s backoff would end at 3.5 > 3
    assert isinstance(result, OpenRouterServerError)
    assert "no time left to retry within the call's deadline of 3 s" in str(result)


def test_an_attempt_cut_at_the_deadline_is_final():
    seen, result = drive_with_clock(3.0, [Cut("deadline", 3.0, received=7)], [3.0])

    assert isinstance(result, OpenRouterUnreachable)
    assert "within the call's deadline of 3 s (7 bytes received)" in str(result)
