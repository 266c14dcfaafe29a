"""Decisions while the worker's routing snapshot is rebuilt in the background (issue 12: p99 with
usage flowing).

A web worker answers requests in one thread and rebuilds its snapshot in another (core.versions'
refresher). Python runs one thread at a time: a request gives the interpreter lock up at each
read and write of its socket, and must wait to take it back while the refresh computes, for up to
the interpreter's switch interval (5 ms) each time, unless the refresh pauses between steps of
its work (core.versions.pause), and, at each pause, steps aside while a request is in flight
(marked by the gunicorn worker class, llmhive_site.workers). This measures that, in process, on
PostgreSQL, over the 349-model catalog with load_demo's roles: a request is a decision (warm, as
most are) between two short sleeps standing for its socket reads and writes, a millisecond
apart, and the refresh is what a worker does at each outcomes check under the bench_route flow:
the memory rows 2,000 usage events moved (about a thousand) read and taken in, and the snapshot
rebuilt. Printed side by side, in interleaved rounds (best round by p99 shown, each round's p99
listed): requests with no refresh running (the floor), during refreshes that step aside for them
(now), during the same refreshes whose pauses only yield the lock (requests not marked in
flight: before), and with the pauses turned off, with how many refreshes ran.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive bin/test tests/benchmarks/bench_refresh.py -s
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import time

import pytest
from django.test import Client

from catalog.models import CatalogModel
from core.models import ApiKey, DataVersion
from core.versions import BackgroundRefresh, refresher
from routing.decision import decide
from routing.snapshot import INPUTS, build_snapshot, current_snapshot, holder
from tests.benchmarks import loadgen
from tests.benchmarks.bench_route import in_process_bench
from tests.fake_openrouter import requires_recorded

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True), requires_recorded]

ROUNDS = 3
SECONDS = 2.0  # of requests per condition and round
IO_SECONDS = 0.0002  # each of a request's two socket operations
GAP_SECONDS = 0.001  # between requests (a worker at 300 req/s is idle most of the time)


def test_decisions_while_the_snapshot_refreshes(capsys, monkeypatch):
    roles, requests = in_process_bench()
    for req in requests * 3:
        decide(req)
    before = current_snapshot()

    # 2,000 events (twenty batches of bench_route's flow: 100 models, every role, cooldown trips).
    ids = sorted(CatalogModel.objects.values_list("id", flat=True))
    plan = {"flow": ids[:20] + random.Random(3).sample(ids, 80), "roles": roles, "trip": ids[:20]}
    _, key = ApiKey.issue(name="bench-refresh", scopes=["usage:write"])
    make, _ = loadgen.usage_batches("http://bench/api/v1/usage", key, plan, 100, 10, 10)
    client = Client()
    for i in range(20):
        body = json.loads(make(i).split(b"\r\n\r\n", 1)[1])
        answer = client.post("/api/v1/usage", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")
        assert answer.status_code == 200, answer.content
    holder.wait_idle()
    stored = DataVersion.current()
    versions = {name: stored.get(name, 0) for name in INPUTS}
    assert versions != before.versions
    moved = sum(len(models) for models in before.book.refreshed()[1].values())

    def refresh_until(stop: float, counter: list) -> None:
        while time.perf_counter() < stop:
            build_snapshot(versions, before)  # what the outcomes check rebuilds, again and again
            counter.append(1)

    def requests_for(seconds: float, marked: bool) -> list[float]:
        latencies = []
        stop = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            if marked:
                refresher.request_started()  # as the gunicorn worker class does (llmhive_site.workers)
            time.sleep(IO_SECONDS)  # reading the request
            decide(requests[i % len(requests)], snap=before)
            time.sleep(IO_SECONDS)  # writing the answer
            latencies.append((time.perf_counter() - started) * 1000)
            refresher.request_finished()
            i += 1
            time.sleep(GAP_SECONDS)  # waiting for the next connection
        return latencies

    def measured(condition: str) -> dict:
        refreshes: list = []
        if condition != "quiet":
            job = BackgroundRefresh("bench-refresh")
            job.start(refresh_until, time.perf_counter() + SECONDS + 0.1, refreshes)
            time.sleep(0.02)
        with monkeypatch.context() as patch:
            if condition == "no pauses":
                patch.setattr(refresher, "pause", lambda: None)
            latencies = sorted(requests_for(SECONDS, marked=condition == "steps aside"))
            if condition != "quiet":
                job.wait_idle(10)
        return {
            "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99)],
            "requests": len(latencies),
            "refreshes": len(refreshes),
        }

    conditions = ("quiet", "steps aside", "pauses", "no pauses")
    rounds = {name: [] for name in conditions}
    # The heap frozen out of the collector's sight, as a serving worker's is (core.heap).
    gc.collect()
    gc.freeze()
    try:
        for _ in range(ROUNDS):
            for name in conditions:
                rounds[name].append(measured(name))
    finally:
        gc.unfreeze()
        refresher.stop()

    with capsys.disabled():
        print(
            f"\n--- decisions while the snapshot refreshes: in process, PostgreSQL, {len(before.models)} models, "
            f"each refresh taking in {moved:,} memory rows moved by 2,000 usage events; a request = a warm decision "
            f"between two {IO_SECONDS * 1000:g} ms socket waits; best of {ROUNDS} interleaved rounds by p99"
        )
        for name, label in (
            ("quiet", "no refresh (floor)"),
            ("steps aside", "refreshing, steps aside (now)"),
            ("pauses", "refreshing, pauses only yield"),
            ("no pauses", "refreshing, no pauses"),
        ):
            best = min(rounds[name], key=lambda r: r["p99"])
            p99s = ", ".join(f"{r['p99']:.2f}" for r in rounds[name])
            line = (
                f"  {label:32} p50 {best['p50']:.2f} ms, p99 {best['p99']:.2f} ms over {best['requests']:,} requests "
                f"(round p99s: {p99s} ms)"
            )
            if name != "quiet":
                line += f"; {statistics.mean(r['refreshes'] for r in rounds[name]) / SECONDS:.0f} refreshes/s"
            print(line)
    assert all(r["refreshes"] >= 1 for name in conditions[1:] for r in rounds[name])
    assert moved > 0
