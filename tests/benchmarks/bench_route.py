"""Routing speed (issue 5), on PostgreSQL, over the 349-model 2025-12-18 catalog with load_demo's
twelve roles, preferences, overrides and budgets and 50,000 usage events in strategy memory.

Printed, with the machine's core count:
- the decision in process (decide() on the current snapshot): median and p99;
- database queries per decision in steady state;
- /route through gunicorn with two workers (README's deployment), load from a separate process
  (tests/benchmarks/loadgen.py): 300 requests/s for 10 s, p50 and p99;
- /route's maximum throughput against the authenticated trivial endpoint GET /key, the
  framework's floor, measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive bin/test tests/benchmarks/bench_route.py -s
"""

from __future__ import annotations

import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import CatalogModel
from core.models import ApiKey, version_watch
from costs.models import UsageEvent
from routing.decision import RouteRequest, decide
from routing.models import Role
from routing.snapshot import current_snapshot
from tests.factories import CategoryFactory
from tests.fake_openrouter import requires_recorded, snapshot_path
from tests.servers import gunicorn

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True), requires_recorded]

LOADGEN = Path(__file__).with_name("loadgen.py")
TARGETS = {"p50_ms": 2.0, "p99_ms": 6.0, "ratio": 0.70, "decision_us": 150.0}


def request_bodies(roles: list[str]) -> list[dict]:
    """A realistic mix: each role, with and without a category, accuracy and token estimates."""
    bodies = []
    shapes = [
        {},
        {"accuracy": "high"},
        {"accuracy": "economy", "estimated_input_tokens": 12_000, "estimated_output_tokens": 800},
        {"category": "programming", "fallback_count": 3},
        {"required_capabilities": ["supports_tools"], "max_cost_usd": "0.05"},
    ]
    for role in roles:
        for shape in shapes:
            bodies.append({"role": role, **shape})
    return bodies


def loadgen(mode: str, url: str, key: str, bodies_file: Path | None, **options) -> dict:
    command = [sys.executable, str(LOADGEN), mode, "--url", url, "--key", key]
    if bodies_file is not None:
        command += ["--bodies", str(bodies_file)]
    for name, value in options.items():
        command += [f"--{name}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


def test_route_speed(tmp_path, capsys):
    if connection.vendor != "postgresql":
        pytest.skip("the routing benchmark runs on PostgreSQL (set DATABASE_URL)")
    out = io.StringIO()
    call_command("sync_catalog", "--from-file", str(snapshot_path("2025-12-18")), "--no-progress", stdout=out)
    # The category the requests name (a transactional test flushes what migrations seeded; an
    # unknown category is a 422).
    CategoryFactory(slug="programming", name="Programming")
    call_command("load_demo", "--days", "30", "--events-per-day", "1800", stdout=out)
    models, roles = CatalogModel.objects.count(), list(Role.objects.values_list("slug", flat=True))
    events = UsageEvent.objects.count()
    _, key = ApiKey.issue(name="bench", scopes=["route"])
    bodies = request_bodies(roles)

    # In process: the decision itself, on a warm snapshot.
    requests = [RouteRequest(**{k: v for k, v in b.items() if k != "max_cost_usd"}) for b in bodies]
    current_snapshot()
    for req in requests * 3:
        decide(req)
    # Five rounds of 4,000 decisions; the figure is the best round's median (as timeit takes the
    # best repeat): a round that shares the two cores with PostgreSQL's background work after
    # the other benchmarks is shown, not taken.
    samples, round_medians = [], []
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        for _ in range(5):
            gc.collect()
            this_round = []
            for i in range(4_000):
                req = requests[i % len(requests)]
                t0 = time.perf_counter_ns()
                decide(req)
                this_round.append(time.perf_counter_ns() - t0)
            round_medians.append(statistics.median(this_round) / 1000)
            samples += this_round
        elapsed = time.perf_counter() - started
    samples.sort()
    decision_us = min(round_medians)
    p99_us = samples[int(len(samples) * 0.99)] / 1000
    # Version polls happen at most every LLMHIVE_SNAPSHOT_CHECK_SECONDS, whatever the load.
    poll_queries = len(queries)
    # The burst starts right after a poll, so it lies between two polls unless it outlasts the
    # interval (checked below): a poll falling inside it is then a real query per decision.
    version_watch.expire()
    version_watch.versions()
    burst_started = time.monotonic()
    with CaptureQueriesContext(connection) as burst:
        for req in requests:
            decide(req)
    burst_seconds = time.monotonic() - burst_started
    queries_per_decision = poll_queries / len(samples)

    bodies_file = tmp_path / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    with gunicorn(workers=2) as base:
        route_url, key_url = f"{base}/api/v1/route", f"{base}/api/v1/key"
        steady = loadgen("rate", route_url, key, bodies_file, rate=300, duration=10)
        # Interleaved rounds, the best of each: a busy moment on the machine hits one round, not
        # one endpoint's whole measurement.
        route_rounds, floor_rounds = [], []
        for _ in range(3):
            route_rounds.append(loadgen("max", route_url, key, bodies_file, connections=4, duration=4))
            floor_rounds.append(loadgen("max", key_url, key, None, connections=4, duration=4))
        route_max = max(route_rounds, key=lambda r: r["rate_rps"])
        floor_max = max(floor_rounds, key=lambda r: r["rate_rps"])
    ratio = route_max["rate_rps"] / floor_max["rate_rps"]

    with capsys.disabled():
        print(
            f"\n--- /route speed: {os.cpu_count()} cores, PostgreSQL, {models} models, {len(roles)} roles, {events:,} usage events"
        )
        print(
            f"decision in process:   median {decision_us:.1f} µs (best of 5 rounds: "
            f"{', '.join(f'{m:.0f}' for m in round_medians)}), p99 {p99_us:.1f} µs over {len(samples):,} decisions "
            f"(target median <= {TARGETS['decision_us']:.0f} µs)"
        )
        print(
            f"queries per decision:  {queries_per_decision:.5f} ({poll_queries} version polls in {elapsed:.2f} s of "
            f"back-to-back decisions; {len(burst)} in a burst of {len(requests)} between polls) (target 0 per decision)"
        )
        print(
            f"/route at 300 rps:     p50 {steady['p50_ms']:.2f} ms, p90 {steady['p90_ms']:.2f} ms, p99 {steady['p99_ms']:.2f} ms, "
            f"{steady['rate_rps']:.0f} rps achieved, {steady['errors']} errors, {steady['late_starts']} late starts "
            f"(target p50 <= 2 ms, p99 <= 6 ms)"
        )
        print(
            f"max throughput:        /route {route_max['rate_rps']:.0f} rps, GET /key (floor) {floor_max['rate_rps']:.0f} rps: "
            f"{ratio:.0%} of the floor (target >= 70%), 4 connections, gunicorn -w 2, best of 3 interleaved rounds "
            f"(/route {', '.join(str(round(r['rate_rps'])) for r in route_rounds)}; "
            f"/key {', '.join(str(round(r['rate_rps'])) for r in floor_rounds)})"
        )

    assert steady["errors"] == 0 and all(r["errors"] == 0 for r in route_rounds + floor_rounds), (
        steady,
        route_rounds,
        floor_rounds,
    )
    assert steady["statuses"] == {"200": steady["requests"]}
    assert burst_seconds < version_watch.interval, (burst_seconds, version_watch.interval)
    assert len(burst) == 0
