"""PostgreSQL cut under a running gunicorn (two workers): a TCP proxy between them, killed and
brought back inside the test.

While the database is away, /route, /escalate and /key keep answering from each worker's snapshot
and key cache and say `"degraded": true`; POST /usage and /health answer 503 JSON (with
Retry-After for the usage) and nothing is stored; a read that needs the database (/models) is a 503
JSON too. Within a second of the database returning, every answer is normal again.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from costs.models import UsageEvent
from tests.factories import ApiKeyFactory, CatalogModelFactory, RoleFactory
from tests.faults.tcp_proxy import TcpProxy
from tests.servers import gunicorn, snapshots_built

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = 30  # per endpoint while the database is cut
RECOVERY = 1.0  # seconds: what the issue promises
POLL = 0.5  # LLMHIVE_SNAPSHOT_CHECK_SECONDS (the default, set explicitly below)

_ids = itertools.count()


def event(prefix: str) -> dict:
    return {
        "request_id": f"{prefix}-{next(_ids)}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "model": "acme/first",
        "role": "coder",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "success": True,
    }


def hammer(call, seconds: float, threads: int = 4, fresh: bool = False) -> list:
    """call(client) from several threads for `seconds` (so both workers answer); every result.
    `fresh`: a connection per call (a kept-open one stays with the worker that accepted it)."""
    results: list = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        with httpx.Client(timeout=10, headers={"Connection": "close"} if fresh else None) as client:
            while time.monotonic() < stop:
                result = call(client)
                with lock:
                    results.append(result)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("cutting the database needs PostgreSQL over TCP (set DATABASE_URL)")
    return connection.settings_dict


@pytest.fixture
def auth() -> dict[str, str]:
    """A coder role over three tool-using models; the headers of a key that may route, report
    usage and read metrics."""
    for model_id in ("acme/first", "acme/second", "acme/third"):
        CatalogModelFactory(id=model_id, supports_tools=True)
    RoleFactory(slug="coder", required_capabilities=["supports_tools"])
    key = ApiKeyFactory(name="degraded", scopes=["route", "usage:write", "metrics:read"]).raw_key
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def proxied(postgres) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of the test database, and the DATABASE_URL through it."""
    with TcpProxy(postgres.get("HOST") or "127.0.0.1", int(postgres.get("PORT") or 5432)) as proxy:
        user = postgres.get("USER") or "postgres"
        yield proxy, f"postgres://{user}@127.0.0.1:{proxy.port}/{postgres['NAME']}"


# gunicorn.conf.py's sync worker, and the project's gthread worker (four threads, each with a
# database connection of its own that a cut leaves broken unused: Django checks each kept
# connection at its first use in a request, CONN_HEALTH_CHECKS, so none of them sends a worker
# back to degraded mode after the database returns).
SERVERS = {
    "sync": {},
    "gthread": {"threads": 4, "options": ["--worker-class", "llmhive_site.workers.ThreadWorker"]},
}


@pytest.mark.parametrize("server", SERVERS.values(), ids=SERVERS.keys())
def test_route_escalate_and_key_answer_degraded_while_the_database_is_cut_and_recover_within_a_second(
    postgres, auth, server, capsys
):
    key = auth["Authorization"].removeprefix("Bearer ")
    with proxied(postgres) as (proxy, url):
        with gunicorn(workers=2, **server, DATABASE_URL=url, LLMHIVE_SNAPSHOT_CHECK_SECONDS=str(POLL)) as base:

            def route(client: httpx.Client) -> tuple[float, int, dict]:
                sent = time.monotonic()
                r = client.post(f"{base}/api/v1/route", json={"role": "coder"}, headers=auth)
                return sent, r.status_code, r.json() if r.headers["content-type"].startswith("application/json") else {}

            def usage(client: httpx.Client, prefix: str = "after") -> tuple[float, int, str]:
                sent = time.monotonic()
                r = client.post(f"{base}/api/v1/usage", json={"events": [event(prefix)]}, headers=auth)
                return sent, r.status_code, r.text

            # Warm every worker: snapshot, key cache, budget book. A connection per call (a
            # kept-open one stays with one worker), until both workers count their snapshot (built
            # as each starts; without one a worker has nothing to route from while the database
            # is away).
            warm: list = []
            deadline = time.monotonic() + 10
            while snapshots_built(base, key) < 2 and time.monotonic() < deadline:
                warm += hammer(route, 0.5, fresh=True)
            warm += hammer(usage, 0.5, fresh=True)
            assert {status for _, status, _ in warm} == {200}, warm[:3]
            assert snapshots_built(base, key) == 2
            stored_before = UsageEvent.objects.count()

            proxy.cut()
            cut_at = time.monotonic()
            time.sleep(POLL + 0.1)
            # Every worker's next request starts its version read, on the worker's refresh thread
            # (no request waits for it), which fails: from then on its answers say degraded.
            # Hammered until a whole slice of answers says so (both workers have noticed).
            noticing: list = []
            while time.monotonic() - cut_at < POLL + 3:
                slice_ = hammer(route, 0.2, fresh=True)
                noticing += slice_
                if all(body.get("degraded") is True for _, _, body in slice_):
                    break
            noticed_after = time.monotonic() - cut_at - POLL - 0.1
            assert {status for _, status, _ in noticing} == {200}, noticing[:3]
            not_yet = sum(1 for _, _, body in noticing if body.get("degraded") is False)
            assert noticed_after < 2, f"the workers had not noticed the cut {noticed_after:.1f} s after a read was due"

            figures: dict[str, dict] = {}
            with httpx.Client(timeout=10, headers=auth) as client:
                answers = {
                    "/route": [client.post(f"{base}/api/v1/route", json={"role": "coder"}) for _ in range(CALLS)],
                    "/escalate": [
                        client.post(f"{base}/api/v1/escalate", json={"role": "coder", "failed_model": "acme/first"})
                        for _ in range(CALLS)
                    ],
                    "/key": [client.get(f"{base}/api/v1/key") for _ in range(CALLS)],
                    "/usage": [
                        client.post(f"{base}/api/v1/usage", json={"events": [event("cut") for _ in range(10)]})
                        for _ in range(CALLS)
                    ],
                    "/health": [client.get(f"{base}/api/v1/health") for _ in range(CALLS)],
                    "/models": [client.get(f"{base}/api/v1/models") for _ in range(CALLS)],
                    "/metrics": [client.get(f"{base}/api/v1/metrics") for _ in range(CALLS)],
                }
            cut_for = time.monotonic() - cut_at
            for path, responses in answers.items():
                statuses: dict[int, int] = {}
                for r in responses:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                figures[path] = statuses

            proxy.restore()
            restored_at = time.monotonic()
            after: dict[str, list] = {}
            both = [
                threading.Thread(target=lambda: after.setdefault("route", hammer(route, RECOVERY + 0.5, threads=2))),
                threading.Thread(target=lambda: after.setdefault("usage", hammer(usage, RECOVERY + 0.5, threads=2))),
            ]
            for t in both:
                t.start()
            for t in both:
                t.join()
            after_route, after_usage = after["route"], after["usage"]

            not_normal = [
                sent - restored_at
                for sent, status, body in after_route
                if status != 200 or body.get("degraded") is not False
            ]
            route_recovery = max(not_normal, default=0.0)
            usage_recovery = max((sent - restored_at for sent, status, _ in after_usage if status != 200), default=0.0)
            stored_after = UsageEvent.objects.count()

        with capsys.disabled():
            print(
                f"\ndatabase cut for {cut_for:.1f} s under gunicorn (2 workers, {server.get('threads', 1)} thread(s) each), "
                f"{CALLS} calls per endpoint:"
            )
            print(
                f"  noticed within {noticed_after:.1f} s of a version read being due: {not_yet} of {len(noticing)} "
                "/route answers meanwhile said not degraded (before the read on the refresh thread failed)"
            )
            for path, statuses in figures.items():
                lost = sum(n for status, n in statuses.items() if status >= 500 and status != 503)
                slowest = max(r.elapsed.total_seconds() for r in answers[path]) * 1000
                print(
                    f"  {path:10} tried {CALLS}, answered {dict(sorted(statuses.items()))}, lost {lost}; "
                    f"slowest answer {slowest:.0f} ms"
                )
            cut_events = UsageEvent.objects.filter(request_id__startswith="cut-").count()
            print(f"  /health names as down: {answers['/health'][0].json().get('down')}")
            print(f"  usage events sent while cut: {CALLS * 10}, stored: {cut_events} (503 asks for a retry)")
            print(
                f"after restore: /route normal {route_recovery * 1000:.0f} ms after, "
                f"/usage storing {usage_recovery * 1000:.0f} ms after "
                f"({len(after_route)} route and {len(after_usage)} usage calls; "
                f"{stored_after - stored_before} events stored); proxy connections: {proxy.connections}"
            )

    # While cut: routing answers from memory and says so; writes refuse cleanly.
    for path in ("/route", "/escalate", "/key"):
        assert figures[path] == {200: CALLS}, (path, figures[path])
    assert all(r.json()["degraded"] is True for r in answers["/route"] + answers["/escalate"])
    assert all(r.json()["name"] == "degraded" for r in answers["/key"])
    assert figures["/usage"] == {503: CALLS}
    for r in answers["/usage"]:
        assert r.headers["content-type"].startswith("application/json") and r.headers["Retry-After"].isdigit()
        assert r.json()["code"] == "unavailable" and "database" in r.json()["detail"]
    assert UsageEvent.objects.filter(request_id__startswith="cut-").count() == 0
    assert figures["/health"] == {503: CALLS}
    # Prometheus still scrapes: the web process's own figures, the decisions answered degraded,
    # a snapshot age that grows; what needs the database is left out, not a failed scrape.
    assert figures["/metrics"] == {200: CALLS}
    degraded_counts = [
        sample.value
        for family in text_string_to_metric_families(answers["/metrics"][-1].text)
        for sample in family.samples
        if sample.name == "llmhive_route_decisions_total" and sample.labels.get("result") == "degraded"
    ]
    assert degraded_counts == [CALLS + len(noticing) - not_yet]
    assert figures["/models"] == {503: CALLS}  # a read that needs the database: 503 JSON, not 500
    assert all(r.json()["code"] == "unavailable" and "Retry-After" in r.headers for r in answers["/models"])
    health = answers["/health"][0].json()
    assert health["status"] == "down" and health["checks"]["database"]["status"] == "down"
    assert "database" in health["down"]

    # Back within a second.
    assert route_recovery < RECOVERY and usage_recovery < RECOVERY
    late_route = [body for sent, status, body in after_route if sent - restored_at >= RECOVERY]
    assert late_route and all(body["degraded"] is False for body in late_route)
    assert stored_after - stored_before == sum(1 for _, status, _ in after_usage if status == 200)


STALL = 3.5  # seconds the database stops answering: past STALLED_SECONDS after a version read is due


def test_route_escalate_and_key_keep_answering_at_once_while_the_database_stops_answering(postgres, auth, capsys):
    """PostgreSQL stops answering without closing anything (a frozen host, a hung disk): every
    connection stays open and nothing comes back. No `/route`, `/escalate` or `/key` call waits
    for it: a worker reads the data versions on its refresh thread (the read that hangs) and
    records a key's use there too, so its requests make no query; once a read has hung
    STALLED_SECONDS the answers say degraded. When the database answers again, so do they."""
    from core.versions import STALLED_SECONDS

    key = auth["Authorization"].removeprefix("Bearer ")
    with proxied(postgres) as (proxy, url):
        with gunicorn(workers=2, DATABASE_URL=url, LLMHIVE_SNAPSHOT_CHECK_SECONDS=str(POLL)) as base:
            calls = itertools.cycle(
                [
                    ("POST", "/api/v1/route", {"role": "coder"}),
                    ("POST", "/api/v1/escalate", {"role": "coder", "failed_model": "acme/first"}),
                    ("GET", "/api/v1/key", None),
                ]
            )
            lock = threading.Lock()

            def call(client: httpx.Client) -> tuple[float, float, int, dict]:
                with lock:
                    method, path, body = next(calls)
                sent = time.monotonic()
                try:
                    r = client.request(method, f"{base}{path}", json=body, headers=auth, timeout=2 * STALL)
                except httpx.TimeoutException:  # waited for the database (the stall outlasts no answer)
                    return sent, time.monotonic() - sent, 0, {}
                return sent, time.monotonic() - sent, r.status_code, r.json()

            deadline = time.monotonic() + 10
            while snapshots_built(base, key) < 2 and time.monotonic() < deadline:
                hammer(call, 0.3, fresh=True)
            warm = hammer(call, 0.5, fresh=True)  # every worker's key cache and budget book
            assert snapshots_built(base, key) == 2 and {status for _, _, status, _ in warm} == {200}

            proxy.stall()
            stalled_at = time.monotonic()
            during = hammer(call, STALL, threads=3, fresh=True)
            proxy.resume()
            resumed_at = time.monotonic()
            after = hammer(call, 1.5, threads=3, fresh=True)
            with httpx.Client(timeout=10, headers=auth) as client:
                stored = client.post(f"{base}/api/v1/usage", json={"events": [event("stall")]})

    slowest = max(took for _, took, _, _ in during)
    told = min((sent - stalled_at for sent, _, _, body in during if body.get("degraded") is True), default=None)
    with capsys.disabled():
        print(
            f"\ndatabase stalled for {resumed_at - stalled_at:.1f} s under gunicorn (2 workers): "
            f"{len(during)} calls to /route, /escalate and /key, answered {sorted({s for _, _, s, _ in during})}, "
            f"slowest {slowest * 1000:.0f} ms; degraded said from {told if told is None else round(told, 2)} s"
        )
    assert {status for _, _, status, _ in during} == {200}
    assert slowest < 0.5, "a call waited for the stalled database"
    routed = [body for sent, _, _, body in during if "degraded" in body]
    late = [
        body for sent, _, _, body in during if "degraded" in body and sent - stalled_at > POLL + STALLED_SECONDS + 0.5
    ]
    assert routed and late and all(body["degraded"] is True for body in late)
    # Answering again once the database does: normal answers, usage stored.
    normal = [body for sent, _, _, body in after if "degraded" in body and sent - resumed_at > RECOVERY]
    assert {status for _, _, status, _ in after} == {200}
    assert normal and all(body["degraded"] is False for body in normal)
    assert stored.status_code == 200, stored.text
