"""Decisions right after a usage batch (issue 12: no request waits for a rebuild).

Every usage batch moves the outcomes of the (role, category) shapes it reports on, and each
memoised ranking of those shapes must take the new outcomes in. Until this change the first
request of each shape did it (routing.scoring._updated, for the models that moved); now the
snapshot does it for the rankings requests were using before it is put in use
(routing.scoring.prepare: in the background refresh for another process's batch, or in the
batch's own request for this process's). This measures, in process on PostgreSQL over the
349-model catalog with load_demo's roles: bench_route's 65 request shapes decided (warm), a
100-event batch posted (bench_route's flow, every role), then each shape decided once, timed.
Printed side by side in interleaved rounds: the decisions' median, slowest and total, and the
batch's own request, with the rankings prepared and with them updated when asked for.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive bin/test tests/benchmarks/bench_after_batch.py -s
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
from core.models import ApiKey
from routing import scoring
from routing.decision import decide
from tests.benchmarks import loadgen
from tests.benchmarks.bench_route import in_process_bench
from tests.fake_openrouter import requires_recorded

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True), requires_recorded]

ROUNDS = 8  # per condition, interleaved


def test_decisions_right_after_a_batch(capsys, monkeypatch):
    roles, requests = in_process_bench()
    ids = sorted(CatalogModel.objects.values_list("id", flat=True))
    plan = {"flow": ids[:20] + random.Random(3).sample(ids, 80), "roles": roles, "trip": []}
    _, key = ApiKey.issue(name="bench-after-batch", scopes=["usage:write"])
    make, _ = loadgen.usage_batches("http://bench/api/v1/usage", key, plan, 100, 10, 10)
    client = Client()

    def post(batch: int) -> float:
        """Milliseconds to store usage batch number `batch`."""
        started = time.perf_counter()
        body = json.loads(make(batch).split(b"\r\n\r\n", 1)[1])
        answer = client.post("/api/v1/usage", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")
        assert answer.status_code == 200, answer.content
        return (time.perf_counter() - started) * 1000

    post(0)  # (the first batch of a process is slower: not measured)
    conditions = {"prepared": scoring.PREPARED_RANKINGS, "updated when asked": 0}
    rounds: dict[str, list[dict]] = {name: [] for name in conditions}
    # The heap frozen out of the collector's sight, as a serving worker's is (core.heap).
    gc.collect()
    gc.freeze()
    try:
        for round_ in range(ROUNDS):
            for n, (name, prepared) in enumerate(conditions.items()):
                monkeypatch.setattr(scoring, "PREPARED_RANKINGS", prepared)
                for req in requests * 2:
                    decide(req)  # every shape warm
                posted_ms = post(1 + 2 * round_ + n)
                took = []
                for req in requests:
                    started = time.perf_counter()
                    decide(req)
                    took.append((time.perf_counter() - started) * 1e6)
                rounds[name].append(
                    {"median": statistics.median(took), "max": max(took), "total": sum(took) / 1000, "post": posted_ms}
                )
    finally:
        gc.unfreeze()

    def spread(figures: list[dict], field: str, unit: str, digits: int = 0) -> str:
        values = sorted(r[field] for r in figures)
        return f"{statistics.median(values):.{digits}f} {unit} ({values[0]:.{digits}f}-{values[-1]:.{digits}f})"

    with capsys.disabled():
        print(
            f"\n--- decisions right after a 100-event usage batch: in process, PostgreSQL, {len(ids)} models, "
            f"{len(requests)} request shapes each decided once; median over {ROUNDS} interleaved rounds (range)"
        )
        for name, figures in rounds.items():
            print(
                f"  rankings {name:19} decision median {spread(figures, 'median', 'µs')}, "
                f"slowest {spread(figures, 'max', 'µs')}, all {len(requests)} {spread(figures, 'total', 'ms', 1)}; "
                f"the batch's request {spread(figures, 'post', 'ms', 1)}"
            )
    assert all(r["total"] > 0 for figures in rounds.values() for r in figures)
