"""Which gunicorn worker class serves /route best (issue 12; the table in docs/ops/deploying.md).

On PostgreSQL, with bench_route's data (the 349-model catalog, load_demo's roles and usage) and
production-like settings (DEBUG off, two workers), every server configuration runs at once (idle
when not measured) and is measured in turn, three interleaved rounds, from a separate process
(tests/benchmarks/loadgen.py), so that a busy moment of the machine hits one round of one
configuration, not one configuration's whole measurement:
- /route at 300 requests/s for 4 s: p50 and p99 (the round with the best p99);
- /route and GET /key (the framework's floor) at saturation, 4 connections, 2 s each: throughput
  (the best round), and /route's p50 and p99 there;
- where the worker's time goes: each worker adds up (gunicorn hooks in a wrapper of the
  project's gunicorn.conf.py) its time in gunicorn's `close_graceful` (after an answer gunicorn
  half-closes the socket and waits for the client to close its side) and, for the sync worker,
  its time handling connections: the share the sync worker spends waiting for clients to close.
Clients either send `Connection: close` on a new connection per request, or keep one connection
open (what an orchestrator's HTTP client does; the sync worker closes it after every answer).

Minutes long, so it runs only when asked:

    LLMHIVE_BENCH_WORKERS=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive \\
        bin/test tests/benchmarks/bench_workers.py -s
"""

from __future__ import annotations

import io
import json
import os
from contextlib import ExitStack
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from core.models import ApiKey
from routing.models import Role
from tests.benchmarks.bench_route import loadgen, request_bodies
from tests.fake_openrouter import requires_recorded, snapshot_path
from tests.servers import ROOT, gunicorn

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.django_db(transaction=True),
    requires_recorded,
    pytest.mark.skipif(
        not os.environ.get("LLMHIVE_BENCH_WORKERS"), reason="minutes long: set LLMHIVE_BENCH_WORKERS=1 to run it"
    ),
]

ROUNDS = 3
# (label, gunicorn() arguments, clients keep connections open)
# (the project's classes: gunicorn's sync and gthread workers that tell the refresh of requests in
# flight; gunicorn.conf.py's is the sync one)
SYNC = ["--worker-class", "llmhive_site.workers.SyncWorker"]
GTHREAD = ["--worker-class", "llmhive_site.workers.ThreadWorker"]
CONFIGS = [
    ("sync -w 2", {"workers": 2, "threads": 1, "options": SYNC}, False),
    ("sync -w 2", {"workers": 2, "threads": 1, "options": SYNC}, True),
    ("sync -w 4", {"workers": 4, "threads": 1, "options": SYNC}, False),
    ("gthread -w 2 --threads 2", {"workers": 2, "threads": 2, "options": GTHREAD}, False),
    ("gthread -w 2 --threads 2", {"workers": 2, "threads": 2, "options": GTHREAD}, True),
    ("gthread -w 2 --threads 4", {"workers": 2, "threads": 4, "options": GTHREAD}, False),
    ("gthread -w 2 --threads 4", {"workers": 2, "threads": 4, "options": GTHREAD}, True),
    (
        "asgi -w 2 (llmhive_site.asgi)",
        {"workers": 2, "options": ["--worker-class", "asgi"], "app": "llmhive_site.asgi"},
        True,
    ),
]

# The project's gunicorn.conf.py, plus hooks that time each worker's handling and closing.
TIMING_CONF = """
import json, os, time
from pathlib import Path

_project = Path({project!r})
_ns = {{"__file__": str(_project), "__name__": "llmhive_gunicorn_conf"}}
exec(compile(_project.read_text(), str(_project), "exec"), _ns)
globals().update({{k: v for k, v in _ns.items() if not k.startswith("__")}})
_STATS = {{"close_s": 0.0, "closes": 0, "handle_s": 0.0, "handled": 0}}


def post_fork(server, worker):
    import gunicorn.util
    from gunicorn.workers import sync

    close_graceful = gunicorn.util.close_graceful

    def timed_close(sock, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return close_graceful(sock, *args, **kwargs)
        finally:
            _STATS["close_s"] += time.perf_counter() - t0
            _STATS["closes"] += 1

    gunicorn.util.close_graceful = timed_close
    handle = sync.SyncWorker.handle

    def timed_handle(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return handle(self, *args, **kwargs)
        finally:
            _STATS["handle_s"] += time.perf_counter() - t0
            _STATS["handled"] += 1

    sync.SyncWorker.handle = timed_handle


def worker_exit(server, worker):
    Path({stats!r}, f"{{os.getpid()}}.json").write_text(json.dumps(_STATS))
"""


def closing_stats(directory: Path) -> dict:
    totals = {"close_s": 0.0, "closes": 0, "handle_s": 0.0, "handled": 0}
    for path in directory.glob("*.json"):
        for key, value in json.loads(path.read_text()).items():
            totals[key] += value
    return totals


def test_worker_classes(tmp_path, capsys):
    if connection.vendor != "postgresql":
        pytest.skip("the worker benchmark runs on PostgreSQL (set DATABASE_URL)")
    out = io.StringIO()
    call_command("sync_catalog", "--from-file", str(snapshot_path("2025-12-18")), "--no-progress", stdout=out)
    call_command("load_demo", "--days", "30", "--events-per-day", "1800", stdout=out)
    _, key = ApiKey.issue(name="bench", scopes=["route"])
    bodies_file = tmp_path / "bodies.json"
    bodies_file.write_text(json.dumps(request_bodies(list(Role.objects.values_list("slug", flat=True)))))

    measured: list[dict] = []
    with ExitStack() as servers:
        for n, (_, server, _) in enumerate(CONFIGS):
            stats_dir = tmp_path / f"stats-{n}"
            stats_dir.mkdir()
            conf = tmp_path / f"gunicorn-{n}.conf.py"
            conf.write_text(TIMING_CONF.format(project=str(ROOT / "gunicorn.conf.py"), stats=str(stats_dir)))
            options = ["-c", str(conf), *server.get("options", [])]
            base = servers.enter_context(gunicorn(**{**server, "options": options}))
            measured.append({"base": base, "stats": stats_dir, "steady": [], "route": [], "floor": []})
        for _ in range(ROUNDS):
            for (_, _, keepalive), m in zip(CONFIGS, measured, strict=True):
                client = {"keepalive": True} if keepalive else {}
                route_url, key_url = f"{m['base']}/api/v1/route", f"{m['base']}/api/v1/key"
                m["steady"].append(loadgen("rate", route_url, key, bodies_file, rate=300, duration=4, **client))
                m["route"].append(loadgen("max", route_url, key, bodies_file, connections=4, duration=2, **client))
                m["floor"].append(loadgen("max", key_url, key, None, connections=4, duration=2, **client))
    rows = []
    for (label, _, keepalive), m in zip(CONFIGS, measured, strict=True):
        steady = min(m["steady"], key=lambda r: r["p99_ms"])
        route_max = max(m["route"], key=lambda r: r["rate_rps"])
        floor_max = max(m["floor"], key=lambda r: r["rate_rps"])
        errors = sum(r["errors"] for r in m["steady"] + m["route"] + m["floor"])
        rows.append((label, keepalive, steady, route_max, floor_max, closing_stats(m["stats"]), errors))

    with capsys.disabled():
        print(
            f"\n--- gunicorn worker classes: {os.cpu_count()} cores, PostgreSQL, DEBUG off, /route mix of bench_route"
        )
        print(
            "| server | client connections | 300 rps p50 / p99 (ms) | saturated /route rps | p50 / p99 (ms) "
            "| GET /key rps | /route of /key | waiting for clients to close | errors |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for label, keepalive, steady, route_max, floor_max, closing, errors in rows:
            per_close = closing["close_s"] / closing["closes"] * 1000 if closing["closes"] else 0.0
            waiting = f"{closing['closes']:,} closes, {per_close:.2f} ms each"
            if closing["handle_s"]:
                waiting += f", {closing['close_s'] / closing['handle_s']:.0%} of the sync worker's handling time"
            print(
                f"| {label} | {'kept open' if keepalive else 'one per request'} "
                f"| {steady['p50_ms']:.2f} / {steady['p99_ms']:.2f} | {route_max['rate_rps']:.0f} "
                f"| {route_max['p50_ms']:.2f} / {route_max['p99_ms']:.2f} | {floor_max['rate_rps']:.0f} "
                f"| {route_max['rate_rps'] / floor_max['rate_rps']:.0%} | {waiting} | {errors} |"
            )

    for label, keepalive, steady, route_max, floor_max, _closing, errors in rows:
        assert errors == 0, (label, keepalive, steady, route_max, floor_max)
        assert steady["requests"] > 0 and route_max["requests"] > 0
