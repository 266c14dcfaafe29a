"""Usage ingest throughput through the HTTP API (issue 3: >= 5,000 events/s in batches of 1,000),
and what a batch of 100 costs when batches come one at a time (issue 12: usage at 1,000 events/s
as ten such batches a second shares the cores with /route).

The server is gunicorn with two workers on the test database, as README's deployment section
says; the client sends batches of 1,000 events from two connections at once. The baseline,
measured in the same run, is what a naive ingest does: one ORM `get_or_create` per event and a
read-modify-write of the rollup row.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.db import connection, transaction

from catalog.models import CatalogModel
from core.models import ApiKey
from costs.models import DailyCost, UsageEvent
from tests.servers import gunicorn

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

BATCH = 1_000
BATCHES = 30
SMALL_BATCH, SMALL_BATCHES = 100, 60
MODELS = [f"bench/model-{i}" for i in range(20)]
ROLES = ["coder", "writer", "reviewer", "planner"]
STRATEGIES = ["single", "refine_on_failure", "ensemble"]
ERRORS = ["rate_limited", "timeout", "quality", "provider_error", ""]


def make_batch(run: str, b: int) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "request_id": f"{run}-{b}-{i}",
            "occurred_at": (now - timedelta(minutes=(b * BATCH + i) % 2000)).isoformat(),
            "model": MODELS[i % len(MODELS)],
            "role": ROLES[i % len(ROLES)],
            "strategy": STRATEGIES[i % len(STRATEGIES)],
            "prompt_tokens": 900 + i % 300,
            "completion_tokens": 150 + i % 80,
            "reasoning_tokens": i % 50,
            "cost_usd": "0.00123" if i % 3 else None,
            "success": i % 7 != 0,
            # Failures carry a class, retryable ones included: the cooldown check runs on every batch.
            "error": "" if i % 7 else ERRORS[(i // 7) % len(ERRORS)],
            "latency_ms": 300 + i % 900,
            "tools": ["search"] if i % 5 == 0 else [],
        }
        for i in range(BATCH)
    ]


def naive_ingest(events: list[dict]) -> None:
    """What a first version does: an ORM round trip per event and per rollup row."""
    models = {m.id: m for m in CatalogModel.objects.filter(id__in={e["model"] for e in events})}
    with transaction.atomic():
        for e in events:
            model = models.get(e["model"])
            cost = model.price_prompt * e["prompt_tokens"] + model.price_completion * e["completion_tokens"]
            _, created = UsageEvent.objects.get_or_create(
                request_id=e["request_id"],
                defaults={
                    "occurred_at": datetime.fromisoformat(e["occurred_at"]),
                    "model": model,
                    "model_ref": e["model"],
                    "role": e["role"],
                    "strategy": e["strategy"],
                    "prompt_tokens": e["prompt_tokens"],
                    "completion_tokens": e["completion_tokens"],
                    "computed_cost_usd": cost,
                    "success": e["success"],
                },
            )
            if created:
                row, _ = DailyCost.objects.select_for_update().get_or_create(
                    day=datetime.fromisoformat(e["occurred_at"]).date(),
                    model=e["model"],
                    strategy=e["strategy"],
                    role=e["role"],
                )
                row.requests += 1
                row.cost_usd += cost
                row.save()


def test_ingest_throughput_over_http():
    if connection.vendor != "postgresql":
        pytest.skip("the ingest target is for PostgreSQL (set DATABASE_URL)")
    for model_id in MODELS:
        CatalogModel.objects.create(
            id=model_id, name=model_id, price_prompt=Decimal("0.0000011"), price_completion=Decimal("0.0000044")
        )
    _, key = ApiKey.issue(name="bench", scopes=["usage:write"])
    run = uuid.uuid4().hex[:8]
    batches = [make_batch(run, b) for b in range(BATCHES)]

    # Baseline, same run, same data shape: three batches through the naive path.
    naive = batches[:3]
    started = time.perf_counter()
    for batch in naive:
        naive_ingest([dict(e, request_id="naive-" + e["request_id"]) for e in batch])
    naive_rate = 3 * BATCH / (time.perf_counter() - started)

    latencies: list[float] = []
    with gunicorn(workers=2) as base_url:

        def send(batch):
            with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
                t = time.perf_counter()
                response = client.post("/api/v1/usage", json={"events": batch})
                latencies.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text[:500]
                return response.json()

        send(make_batch(run + "-warm", 0))  # warm both workers' imports and connections
        send(make_batch(run + "-warm", 1))
        latencies.clear()
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(send, batches))
        elapsed = time.perf_counter() - started
        # The same batches again: all duplicates, nothing stored twice.
        started_dup = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            repeats = list(pool.map(send, batches[:10]))
        dup_elapsed = time.perf_counter() - started_dup

        # Small batches, one after another on one connection: each answer's time is the batch's
        # whole cost on the server (parsing, validation, storing, rollups, memory, budgets).
        small: list[float] = []
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
            for b in range(SMALL_BATCHES):
                events = make_batch(f"{run}-small", b)[:SMALL_BATCH]
                t = time.perf_counter()
                response = client.post("/api/v1/usage", json={"events": events})
                small.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text[:500]
        small.sort()

    accepted = sum(a["accepted"] for a in answers)
    rate = accepted / elapsed
    print(
        f"\nusage ingest benchmark on {connection.vendor}, {os.cpu_count()} cores, gunicorn -w 2, 2 client connections\n"
        f"  {BATCHES} batches of {BATCH:,} events:        {rate:10,.0f} events/s   (target >= 5,000)\n"
        f"  batch latency p50 / max:            {statistics.median(latencies) * 1000:7.1f} / {max(latencies) * 1000:.1f} ms\n"
        f"  re-sent batches (all duplicates):   {10 * BATCH / dup_elapsed:10,.0f} events/s\n"
        f"  {SMALL_BATCHES} batches of {SMALL_BATCH}, one at a time:  p50 {small[len(small) // 2] * 1000:.1f} ms, "
        f"p90 {small[int(len(small) * 0.9)] * 1000:.1f} ms a batch\n"
        f"  baseline, naive ORM ingest:         {naive_rate:10,.0f} events/s   (same run, in process)"
    )
    assert accepted == BATCHES * BATCH
    assert sum(r["duplicates"] for r in repeats) == 10 * BATCH
    stored = BATCHES * BATCH + 2 * BATCH + SMALL_BATCHES * SMALL_BATCH
    assert UsageEvent.objects.filter(request_id__startswith=run).count() == stored
