"""Sync speed: prints figures, asserts only what does not depend on the machine's load.

Targets (issue #2, on PostgreSQL): the first sync of the 349-model 2025-12-18 snapshot into an
empty catalog in <= 1.5 s; an unchanged re-sync in <= 0.3 s; the number of queries a sync makes
does not grow with the number of models (printed for 35 and 349).

Baselines measured in the same run: fetching and parsing the list alone (the floor any sync
pays), and a naive sync that calls update_or_create per model.

    bin/test tests/benchmarks/bench_sync.py -s
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalog.apply import model_values
from catalog.client import openrouter_client
from catalog.models import CatalogModel, Family, PriceChange, SyncRun, SyncStatus
from catalog.sync import sync_catalog
from core.models import Alert
from tests.fake_openrouter import load_snapshot, requires_recorded

pytestmark = [pytest.mark.django_db(transaction=True), requires_recorded, pytest.mark.benchmark]

ROUNDS = int(os.environ.get("LLMHIVE_BENCH_ROUNDS", "5"))


def empty_catalog() -> None:
    Alert.objects.all().delete()
    PriceChange.objects.all().delete()
    CatalogModel.objects.all().delete()
    SyncRun.objects.all().delete()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def report(lines: list[str], capsys) -> None:
    with capsys.disabled():
        print()
        for line in lines:
            print(line)


def test_sync_speed_and_query_counts(fake_openrouter, capsys):
    payload = load_snapshot("2025-12-18")
    fake_openrouter.set_models(payload)

    # Baseline 1: fetch + parse only.
    def fetch_only():
        with openrouter_client() as client:
            client.list_models()

    fetch = [timed(fetch_only) for _ in range(ROUNDS)]

    # First sync into an empty catalog.
    first = []
    for _ in range(ROUNDS):
        empty_catalog()
        first.append(timed(lambda: _succeeded(sync_catalog())))

    # Unchanged re-sync.
    resync = [timed(lambda: _succeeded(sync_catalog())) for _ in range(ROUNDS)]

    # Baseline 2: a naive sync, one update_or_create per model.
    with openrouter_client() as client:
        entries = client.list_models().entries
    families = list(Family.objects.all())

    def naive():
        with transaction.atomic():
            for entry in entries:
                CatalogModel.objects.update_or_create(id=entry.id, defaults=model_values(entry, families))

    naive_first = []
    for _ in range(ROUNDS):
        empty_catalog()
        naive_first.append(timed(naive))
    naive_resync = [timed(naive) for _ in range(ROUNDS)]

    # Queries for 35 and for 349 models, first sync and unchanged re-sync.
    counts = {}
    for size in (35, 349):
        fake_openrouter.set_models({"data": payload["data"][:size]})
        empty_catalog()
        with CaptureQueriesContext(connection) as first_q:
            _succeeded(sync_catalog())
        with CaptureQueriesContext(connection) as resync_q:
            _succeeded(sync_catalog())
        counts[size] = (len(first_q), len(resync_q))

    med = statistics.median
    report(
        [
            f"catalog sync benchmark on {connection.vendor}, {os.cpu_count()} cores, {len(entries)} models, median of {ROUNDS}",
            f"  baseline: fetch + parse only         {ms(med(fetch))}",
            f"  first sync into an empty catalog     {ms(med(first))}   (target <= 1500 ms; naive update_or_create: {ms(med(naive_first))})",
            f"  unchanged re-sync                    {ms(med(resync))}   (target <=  300 ms; naive update_or_create: {ms(med(naive_resync))})",
            f"  queries, first sync:  35 models {counts[35][0]:3d}   349 models {counts[349][0]:3d}",
            f"  queries, re-sync:     35 models {counts[35][1]:3d}   349 models {counts[349][1]:3d}",
        ],
        capsys,
    )
    if connection.vendor == "postgresql":
        # On PostgreSQL every bulk write is one statement whatever the size.
        assert counts[35] == counts[349]


def _succeeded(run: SyncRun) -> None:
    assert run.status == SyncStatus.SUCCEEDED, run.error
