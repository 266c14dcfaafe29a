"""The simulation with known truth (issue 14) on the recorded catalog: the 2026-06-29 model list
synced through the real sync from the fake OpenRouter server, load_demo's roles, preferences and a
month of usage (the request mix), then `simulate(seed=1, requests=2000)` over the default
policies. Prints the table (each policy's success, cost, regret and outage reaction) and the time
it took; asserts only what must hold on any machine (it repeats exactly, regret is never negative,
the cooldown takes the failing model out).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive bin/test tests/benchmarks/bench_simulation.py -s
"""

from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command

from catalog.models import CatalogModel
from catalog.sync import sync_catalog
from costs.models import UsageEvent
from routing.simulation import format_table, simulate
from routing.snapshot import holder
from tests.fake_openrouter import load_snapshot, requires_recorded

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db, requires_recorded]

RECORDED = "2026-06-29"
REQUESTS = 2_000


def test_simulation_on_the_recorded_catalog(fake_openrouter, capsys):
    fake_openrouter.set_models(load_snapshot(RECORDED)["data"])
    sync_catalog()
    call_command("load_demo", "--days", "30", "--events-per-day", "300", stdout=io.StringIO())
    holder.clear()

    started = time.perf_counter()
    result = simulate(seed=1, requests=REQUESTS)
    elapsed = time.perf_counter() - started
    again = simulate(seed=1, requests=REQUESTS)

    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)
    assert all(p["regret"] >= 0 for p in result["policies"])
    with capsys.disabled():
        print()
        print(
            f"{CatalogModel.objects.count()} models, {UsageEvent.objects.count()} usage events in the mix; "
            f"{REQUESTS} requests x {len(result['policies'])} policies in {elapsed:.2f} s "
            f"({elapsed / REQUESTS / len(result['policies']) * 1e6:.0f} us a decision with its learning)"
        )
        print(format_table(result))
        for policy in result["policies"]:
            print(f"{policy['name']:<14} regret at 25/50/75/100 %: {list(policy['regret_curve'].values())}")
    current = next(p for p in result["policies"] if p["name"] == "current")
    assert current["outage"]["seconds_to_cooldown"] is not None
