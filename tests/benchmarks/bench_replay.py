"""Replay speed (issue 14): the ledger's requests decided again under each policy, on PostgreSQL,
over the 349-model 2025-12-18 catalog with load_demo's roles, preferences and budgets and a
week of its usage events.

Printed: the events replayed, the whole replay's wall time, and per policy the seconds its
decisions took and events/s — for the policy in force, a proposed one that explores (10 %, no
memoising possible), one with a tight budget (memoised only while the budget is OK), and the
four baselines. Issue 14's goal (10,000 events x 6 policies under ~10 s) is printed beside the
figures, not asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive bin/test tests/benchmarks/bench_replay.py -s
"""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command
from django.db import connection

from costs.models import UsageEvent
from routing.policies import Policy
from routing.replay import replay
from tests.fake_openrouter import requires_recorded, snapshot_path

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True), requires_recorded]

EVENTS = 10_000
GOAL_SECONDS = 10.0  # for 6 policies


def test_replay_speed(capsys):
    if connection.vendor != "postgresql":
        pytest.skip("the replay benchmark runs on PostgreSQL (set DATABASE_URL)")
    out = io.StringIO()
    call_command("sync_catalog", "--from-file", str(snapshot_path("2025-12-18")), "--no-progress", stdout=out)
    call_command("load_demo", "--days", "7", "--events-per-day", "1600", stdout=out)
    exploring = Policy.from_json({"name": "explore_10pct", "every_role": {"exploration_rate": 0.1}})
    tight = Policy.from_json(
        {"name": "tight_budget", "budgets": [{"name": "day", "period": "day", "limit_usd": "1", "action": "downgrade"}]}
    )

    started = time.perf_counter()
    answer = replay([exploring, tight], days=7, limit=EVENTS)
    wall = time.perf_counter() - started
    started = time.perf_counter()
    again = replay([exploring, tight], days=7, limit=EVENTS)
    warm = time.perf_counter() - started

    assert answer["requests"] > 0
    assert answer["policies"] == again["policies"]  # repeatable
    n = answer["requests"]
    decided = sum(answer["seconds"].values())
    with capsys.disabled():
        print(f"\nreplay: {n} events replayed of {answer['events_in_window']} ({UsageEvent.objects.count()} in ledger)")
        print(f"  wall {wall:.2f} s for {len(answer['seconds'])} policies (again, warm: {warm:.2f} s)")
        print(f"  decisions {decided:.2f} s; goal: {EVENTS} events x 6 policies under {GOAL_SECONDS:.0f} s")
        for name, seconds in answer["seconds"].items():
            print(f"  {name:>14}: {seconds:6.2f} s  {n / max(seconds, 1e-9):9.0f} events/s")
        for p in answer["policies"]:
            print(
                f"  {p['name']:>14}: cost {p['cost_usd']} USD, expected success {p['expected_success']}, "
                f"prior share {p['prior_share']}, bites {p['budget_bites']}, explored {p['explored']}"
            )
