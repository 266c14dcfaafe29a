"""Routing speed (issues 5 and 12), on PostgreSQL, over the 349-model 2025-12-18 catalog with
load_demo's twelve roles, preferences, overrides and budgets and 50,000 usage events in strategy
memory.

Printed side by side, with the machine's core count:
- the decision in process (decide() on the current snapshot): median and p99;
- database queries per decision in steady state;
- /route through gunicorn with two workers (README's deployment), load from a separate process
  (tests/benchmarks/loadgen.py, ahead of the servers for a core where the bench may raise its
  priority, as root: nice -5; on two shared cores its own waits counted as the server's, 12-167
  late starts a condition before, 0-12 since): 300 requests/s for 10 s, p50 and p99, (a) quiet, (b) with
  usage flowing to the same workers (10 batches of 100 events a second to POST /usage, also from
  its own process) while model cooldowns trip and clear ten times a second (three retryable
  failures of the next model of a rotating set of chosen models, then a success once its
  cooldown has passed), (c) the same with usage sent to a pool of its own, and (d) usage to the
  same workers again, reported as a client that flushes once a second does: one batch of 1,000
  events a second (the ten trips a second in it). Three interleaved rounds of each, shown by the
  median round (by p99) with every round's p99. Each is measured again, right after, for the
  authenticated trivial endpoint GET /key at the same rate (5 s): the server's floor under the same
  conditions, so a figure can be read against what the machine gave anything that round. A server that does
  not know usage events' `error` field yet (a 422 naming it) gets the usage flow without the
  trips, and the output says so;
- per condition, the view's own time on /route (llmhive_route_decision_seconds: the bucket its p99
  falls under, the calls over 1 and 5 ms), so that the client's tail can be read as the code's or
  the waits' (for a connection, for a core); and the share of /route answers the workers gave
  again from a kept answer (nothing it rests on moved: llmhive_route_answers_kept_total against
  the `ok` answers);
- the route workers' garbage-collector pauses over those rounds, per generation (GET /metrics,
  core.heap), with how many took over 5 and over 25 ms;
- /route's maximum throughput against the authenticated trivial endpoint GET /key, the
  framework's floor, measured in the same run;
- the warm decision (memoised request shapes), the new-shape decision (a shape not memoised
  yet) and a shape with requirements of its own (no role's eligibility memoised either), median
  (the best of three rounds' medians, each round's shown for new shapes) and p99, at 349 models
  and at 3,490 (the same recorded list synced ten times with suffixed ids, through
  sync_catalog).
`LLMHIVE_BENCH_CONDITIONS` names the conditions to measure, comma-separated, to study one or two
(`LLMHIVE_BENCH_CONDITIONS=quiet,same`: a/b; `split` is c, `flushed` d; all four when unset).
Only what must hold on any machine is asserted (no errors, no query per decision); the goals
are printed beside the figures.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmhive bin/test tests/benchmarks/bench_route.py -s
"""

from __future__ import annotations

import gc
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import CatalogModel
from core.models import ApiKey, version_watch
from costs.models import UsageEvent
from routing.decision import RouteRequest, RoutingError, decide
from routing.models import Role
from routing.snapshot import current_snapshot
from tests.factories import CategoryFactory
from tests.fake_openrouter import load_snapshot, requires_recorded, snapshot_path
from tests.servers import gunicorn, metric_samples

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True), requires_recorded]

LOADGEN = Path(__file__).with_name("loadgen.py")
# Issue 12's goals (printed, not asserted: a busy two-core machine must not fail the suite).
GOALS = {"p50_ms": 2.0, "p99_ms": 5.0, "ratio": 0.85, "decision_us": 150.0, "new_shape_us": 1000.0}
COPIES = 10  # the 349-model list, ten times: 3,490 models
USAGE_RATE, USAGE_BATCH, TRIPS_PER_SECOND = 1_000, 100, 10
BIG_BATCH = 1_000  # (d): a client flushing its usage once a second
LATENCY_ROUNDS = 3
CONDITIONS = ("quiet", "same", "split", "flushed")  # (a) to (d)
MEASURED = [c for c in os.environ.get("LLMHIVE_BENCH_CONDITIONS", ",".join(CONDITIONS)).split(",") if c]
WORKERS = int(os.environ.get("LLMHIVE_BENCH_ROUTE_WORKERS", "2"))  # the route server's (and the usage pool's)
# The measuring load generator runs ahead of the servers for a core (where the bench may raise a
# priority, as root): on two shared cores its own waits would otherwise count as the server's.
MEASURING_NICE = -5
FLOOR_SECONDS = 5  # GET /key under each condition: half as long as /route (1,500 requests a round)
# The bench server's cooldown policy: three failures trip a model for one second (no growth),
# so a trip is cleared by a success about a second later. Whole seconds: read as int or float.
COOLDOWN_ENV = {
    "LLMHIVE_COOLDOWN_FAILURES": "3",
    "LLMHIVE_COOLDOWN_WINDOW_SECONDS": "1",
    "LLMHIVE_COOLDOWN_SECONDS": "1",
    "LLMHIVE_COOLDOWN_MAX_SECONDS": "1",
}


def median_round(rounds: list[tuple[dict, dict | None]]) -> tuple[dict, dict | None]:
    """The round of median p99 (route figures, usage figures), with every round's p99 noted."""
    ordered = sorted(rounds, key=lambda r: r[0]["p99_ms"])
    routed, flow = ordered[len(ordered) // 2]
    return {**routed, "round_p99s": [r[0]["p99_ms"] for r in rounds]}, flow


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


def loadgen_command(mode: str, url: str, key: str, bodies_file: Path | None, **options) -> list[str]:
    command = [sys.executable, str(LOADGEN), mode, "--url", url, "--key", key]
    if bodies_file is not None:
        command += ["--bodies", str(bodies_file)]
    for name, value in options.items():
        command += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    return command


def loadgen(mode: str, url: str, key: str, bodies_file: Path | None, **options) -> dict:
    command = loadgen_command(mode, url, key, bodies_file, **options)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


NEW_REQUIREMENTS = (
    [],
    ["supports_tools"],
    ["supports_structured_outputs"],
    ["supports_tools", "supports_structured_outputs"],
    ["supports_reasoning"],
)


def new_shapes(roles: list[str], count: int, seed: int = 5, requirements: bool = False) -> list[RouteRequest]:
    """`count` request shapes no two of which share a memo entry: distinct (role, accuracy,
    input and output token buckets), with the bucket as routing.scoring buckets estimates
    (round(2 * log2(tokens + 1))), inputs 32 to 185k tokens, outputs 32 to 32k. With
    `requirements`, each also asks for capabilities and a context length of its own
    (NEW_REQUIREMENTS, 0 to 128k tokens), so that few share the role's eligibility either."""
    rng = random.Random(seed)
    seen, shapes = set(), []
    while len(shapes) < count:
        role, accuracy = rng.choice(roles), rng.choice(["economy", "balanced", "high"])
        tokens_in, tokens_out = int(2 ** rng.uniform(5, 17.5)), int(2 ** rng.uniform(5, 15))
        required = rng.choice(NEW_REQUIREMENTS) if requirements else []
        min_context = rng.choice([None, 8_000, 32_000, 64_000, 128_000]) if requirements else None
        key = (role, accuracy, round(2 * math.log2(tokens_in + 1)), round(2 * math.log2(tokens_out + 1)))
        key += (tuple(required), min_context)
        if key not in seen:
            seen.add(key)
            shapes.append(
                RouteRequest(
                    role=role,
                    accuracy=accuracy,
                    estimated_input_tokens=tokens_in,
                    estimated_output_tokens=tokens_out,
                    required_capabilities=required,
                    min_context_length=min_context,
                )
            )
    return shapes


def decision_times(
    snap, warm: list[RouteRequest], fresh: list[RouteRequest], novel: list[RouteRequest], rounds: int = 3
) -> dict:
    """The warm decision (a mix of memoised shapes), the new-shape decision (each of `fresh`
    once, on a snapshot that has memoised none of them) and the decision for shapes with
    requirements of their own (`novel`: each once, with no role's eligibility memoised either),
    in µs: for each, the best of `rounds` rounds' medians (as timeit takes the best repeat: a
    busy moment of the shared machine slows one round, not the figure) and the p99 over all
    rounds. The answer made again: a warm shape whose kept answer is dropped (its ranking kept).
    A round of new shapes starts with the snapshot's rankings and kept answers dropped, not what
    a worker keeps until health or the catalog changes (the catalog's arrays, each
    role's eligibility); a round of novel shapes drops the eligibility too. A shape no model can
    serve (a 422) is timed as any other."""
    for req in warm * 3:
        decide(req, snap=snap)

    def timed(requests: list[RouteRequest], before=None, each=None) -> tuple[list[float], list[int]]:
        medians, samples = [], []
        for _ in range(rounds):
            if before:
                before()
            gc.collect()
            this_round = []
            for req in requests:
                if each:
                    each()
                t0 = time.perf_counter_ns()
                try:
                    decide(req, snap=snap)
                except RoutingError:
                    pass
                this_round.append(time.perf_counter_ns() - t0)
            medians.append(statistics.median(this_round) / 1000)
            samples += this_round
        samples.sort()
        return medians, samples

    def forget() -> None:
        snap.cache.clear()
        snap.answers.clear()
        snap.stale.clear()

    def forget_eligibility() -> None:
        forget()
        snap.eligible.clear()

    def figures(medians: list[float], samples: list[int]) -> dict:
        return {"median": min(medians), "rounds": medians, "p99": samples[int(len(samples) * 0.99)] / 1000}

    return {
        "models": len(snap.models),
        "warm": figures(*timed([warm[i % len(warm)] for i in range(3_000)])),
        # The answer made again on its memoised ranking, as after a cooldown or a budget state
        # moved on a model it rests on.
        "again": figures(*timed([warm[i % len(warm)] for i in range(1_000)], each=snap.answers.clear)),
        "new": figures(*timed(fresh, before=forget)),
        "novel": figures(*timed(novel, before=forget_eligibility)),
        "count": len(fresh),
        "novel_count": len(novel),
    }


def catalog_times(copies: int, path: Path) -> Path:
    """The recorded 349-model list `copies` times, copies after the first with suffixed ids (and
    canonical slugs): a catalog of realistic prices, capabilities and contexts, 10x the size."""
    payload = load_snapshot("2025-12-18")
    models = list(payload["data"])
    for n in range(1, copies):
        for model in payload["data"]:
            copy = json.loads(json.dumps(model))
            copy["id"] = f"{model['id']}-x{n}"
            if copy.get("canonical_slug"):
                copy["canonical_slug"] = f"{model['canonical_slug']}-x{n}"
            copy["name"] = f"{model['name']} (x{n})"
            models.append(copy)
    path.write_text(json.dumps({**payload, "data": models}))
    return path


def buckets(samples: list, name: str, label: str | None = None) -> dict:
    """A histogram's cumulative bucket counts ({upper bound in s: count}), per value of `label`
    when one is named."""
    found: dict = {}
    for sample in samples:
        if sample.name == f"{name}_bucket":
            into = found.setdefault(sample.labels[label], {}) if label else found
            into[float(sample.labels["le"])] = sample.value
    return found


def gc_pauses(base: str, key: str) -> dict[str, dict[float, float]]:
    """The route workers' garbage-collector pauses so far (core.heap): per generation, the count
    at or under each bucket bound (seconds)."""
    return buckets(metric_samples(base, key), "llmhive_gc_pause_seconds", "generation")


def route_figures(base: str, key: str) -> dict:
    """What the route workers counted so far: answers given again from a kept answer, `ok`
    answers, and the time the view took on each /route call (buckets, seconds)."""
    samples = metric_samples(base, key)
    figures = {"kept": 0.0, "ok": 0.0, "view": buckets(samples, "llmhive_route_decision_seconds")}
    for sample in samples:
        if sample.name == "llmhive_route_answers_kept_total":
            figures["kept"] = sample.value
        elif sample.name == "llmhive_route_decisions_total" and sample.labels.get("result") == "ok":
            figures["ok"] = sample.value
    return figures


def moved(before: dict, after: dict) -> dict:
    """What moved between two scrapes of the same figures (nested dicts of counts)."""
    return {k: moved(before.get(k, {}), v) if isinstance(v, dict) else v - before.get(k, 0.0) for k, v in after.items()}


def added(into: dict, more: dict) -> dict:
    return {k: added(into.get(k, {}), v) if isinstance(v, dict) else into.get(k, 0.0) + v for k, v in more.items()}


def view_line(view: dict[float, float]) -> str:
    """The view's own time on /route (its histogram): the bucket bound its 99th percentile falls
    under, and the calls over 1 and 5 ms. Read against the client's p99: the rest is the
    connection and the waits (the listen queue, a core)."""
    total = view.get(math.inf, 0.0)
    if not total:
        return "      in the view:       no /route call counted"
    p99 = min((le for le, n in view.items() if n >= 0.99 * total), default=math.inf)
    return (
        f"      in the view:       p99 <= {p99 * 1000:g} ms, {total - view[0.001]:,.0f} of {total:,.0f} calls over 1 ms, "
        f"{total - view[0.005]:,.0f} over 5 ms"
    )


def gc_line(before: dict, after: dict) -> str:
    """Collections per generation between two scrapes, and the pauses over 5 and 25 ms."""
    parts, over = [], {0.005: 0.0, 0.025: 0.0}
    for generation in sorted(after):
        moved = {le: n - before.get(generation, {}).get(le, 0.0) for le, n in after[generation].items()}
        total = moved[math.inf]
        longest = min((le for le, n in moved.items() if n == total), default=math.inf)
        parts.append(f"gen {generation}: {total:,.0f} (all <= {longest * 1000:g} ms)")
        for bound in over:
            over[bound] += total - moved[bound]
    return f"{'; '.join(parts)}; pauses over 5 ms: {over[0.005]:.0f}, over 25 ms: {over[0.025]:.0f}"


def usage_errors_accepted(base: str, usage_key: str, model: str) -> bool:
    """Whether the server knows usage events' `error` field (issue 12's failure classes): a 422
    naming `events.0.error` means it does not yet. One failure: below any cooldown threshold."""
    event = {
        "request_id": f"bench-probe-{time.time_ns()}",
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model,
        "success": False,
        "error": "rate_limited",
    }
    answer = httpx.post(
        f"{base}/api/v1/usage", json={"events": [event]}, headers={"Authorization": f"Bearer {usage_key}"}, timeout=10
    )
    if answer.status_code == 422 and any(e.get("field") == "events.0.error" for e in answer.json().get("errors", [])):
        return False
    assert answer.status_code == 200, answer.text
    return True


def in_process_bench() -> tuple[list[str], list[RouteRequest]]:
    """For the in-process benchmarks of the refresh (PostgreSQL only: it reads memory rows by
    transaction snapshot): three days of bench data loaded; the roles and the request shapes of
    request_bodies, without their cost caps."""
    if connection.vendor != "postgresql":
        pytest.skip("the refresh reads memory rows by transaction snapshot: PostgreSQL (set DATABASE_URL)")
    load_bench_data(days=3)
    roles = list(Role.objects.values_list("slug", flat=True))
    bodies = request_bodies(roles)
    return roles, [RouteRequest(**{k: v for k, v in b.items() if k != "max_cost_usd"}) for b in bodies]


def load_bench_data(days: int) -> io.StringIO:
    """The recorded 349-model catalog and load_demo's roles, budgets and `days` of usage (1,800
    events a day); returns what the commands printed."""
    out = io.StringIO()
    call_command("sync_catalog", "--from-file", str(snapshot_path("2025-12-18")), "--no-progress", stdout=out)
    # The category the requests name (a transactional test flushes what migrations seeded; an
    # unknown category is a 422).
    CategoryFactory(slug="programming", name="Programming")
    call_command("load_demo", "--days", str(days), "--events-per-day", "1800", stdout=out, stderr=out)
    return out


def test_route_speed(tmp_path, capsys):
    if connection.vendor != "postgresql":
        pytest.skip("the routing benchmark runs on PostgreSQL (set DATABASE_URL)")
    out = load_bench_data(days=30)
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

    # Decision micro-benchmarks at 349 models: warm shapes and shapes never seen before.
    at_349 = decision_times(
        current_snapshot(), requests, new_shapes(roles, 400), new_shapes(roles, 200, seed=7, requirements=True)
    )

    # What the usage flow reports on: the models /route chooses (their cooldowns trip and clear),
    # and, for the bulk of the events, those and a spread of the catalog.
    chosen = Counter()
    for req in requests:
        answer = decide(req)
        chosen.update([answer["model"], *answer["fallbacks"]])
    trip_models = [m for m, _ in chosen.most_common(20)]
    catalog_ids = sorted(CatalogModel.objects.values_list("id", flat=True))
    flow_models = trip_models + random.Random(3).sample(catalog_ids, 80)
    _, usage_key = ApiKey.issue(name="bench-usage", scopes=["usage:write"])
    _, metrics_key = ApiKey.issue(name="bench-metrics", scopes=["metrics:read"])

    bodies_file = tmp_path / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    with (
        gunicorn(workers=WORKERS, **COOLDOWN_ENV) as base,
        gunicorn(workers=WORKERS, LLMHIVE_ROUTING_PREWARM="false", **COOLDOWN_ENV) as ingest,
    ):
        route_url, key_url, usage_url = f"{base}/api/v1/route", f"{base}/api/v1/key", f"{base}/api/v1/usage"
        # (b) the same load while usage flows and cooldowns trip and clear.
        trips = usage_errors_accepted(base, usage_key, catalog_ids[-1])
        plan_file = tmp_path / "usage.json"
        plan_file.write_text(json.dumps({"flow": flow_models, "roles": roles, "trip": trip_models if trips else []}))

        def measured(url: str, bodies: Path | None, seconds: float) -> dict:
            return loadgen("rate", url, key, bodies, rate=300, duration=seconds, nice=MEASURING_NICE)

        def while_usage_flows(
            usage_url: str | None, url: str, bodies: Path | None, batch: int = USAGE_BATCH, seconds: float = 10
        ):
            """300 requests a second to `url` for `seconds` (round robin over `bodies`, GET when
            None), while usage flows to `usage_url` (none: quiet); (their figures, the flow's or None)."""
            if usage_url is None:
                return measured(url, bodies, seconds), None
            usage_command = loadgen_command(
                "usage",
                usage_url,
                usage_key,
                None,
                usage=plan_file,
                rate=USAGE_RATE,
                batch=batch,
                trips=TRIPS_PER_SECOND,
                duration=seconds + 3,  # (1.5 s before, the load generator's 1 s warm-up, a margin)
            )
            with subprocess.Popen(usage_command, stdout=subprocess.PIPE, text=True) as flowing:
                time.sleep(1.5)  # the flow (and the trips) under way before the measurement starts
                routed = measured(url, bodies, seconds)
                usage_out, _ = flowing.communicate(timeout=120)
            return routed, {**json.loads(usage_out), "batch": batch}

        # (a) to (d) in interleaved rounds, each shown by its median round (by p99): a busy
        # moment of a shared two-core machine (a late start of the load generator itself) then
        # moves one round, not the figure. (c): usage reported to its own pool of workers, as the
        # deploying guide advises (the same database, cooldowns and versions, but no decision
        # queues behind a batch). Each is measured twice in a row, for /route and for GET /key at
        # the same rate (for FLOOR_SECONDS): the server's floor under the same conditions, in the
        # same round.
        conditions = {
            "quiet": (None, USAGE_BATCH),
            "same": (usage_url, USAGE_BATCH),
            "split": (f"{ingest}/api/v1/usage", USAGE_BATCH),
            "flushed": (usage_url, BIG_BATCH),
        }
        assert set(MEASURED) <= set(conditions), f"LLMHIVE_BENCH_CONDITIONS: choose among {', '.join(CONDITIONS)}"
        conditions = {name: conditions[name] for name in CONDITIONS if name in MEASURED}
        rounds: dict[str, list] = {name: [] for name in conditions}
        floors: dict[str, list] = {name: [] for name in conditions}
        gc_before = gc_pauses(base, metrics_key)
        counted: dict[str, dict] = {name: {} for name in conditions}
        kept_rounds: dict[str, list[float]] = {name: [] for name in conditions}
        for _ in range(LATENCY_ROUNDS):
            for name, (flow_url, batch) in conditions.items():
                before = route_figures(base, metrics_key)
                rounds[name].append(while_usage_flows(flow_url, route_url, bodies_file, batch))
                this_round = moved(before, route_figures(base, metrics_key))
                counted[name] = added(counted[name], this_round)
                kept_rounds[name].append(this_round["kept"] / max(this_round["ok"], 1))
                floors[name].append(while_usage_flows(flow_url, key_url, None, batch, FLOOR_SECONDS))
        gc_during = gc_line(gc_before, gc_pauses(base, metrics_key))
        shown = {name: median_round(found) for name, found in rounds.items()}
        floor_at = {name: median_round(found)[0] for name, found in floors.items()}

        # Interleaved rounds, the best of each: a busy moment on the machine hits one round, not
        # one endpoint's whole measurement.
        route_rounds, floor_rounds = [], []
        for _ in range(3):
            route_rounds.append(loadgen("max", route_url, key, bodies_file, connections=4, duration=4))
            floor_rounds.append(loadgen("max", key_url, key, None, connections=4, duration=4))
        route_max = max(route_rounds, key=lambda r: r["rate_rps"])
        floor_max = max(floor_rounds, key=lambda r: r["rate_rps"])
        server_log = base.output()
    ratio = route_max["rate_rps"] / floor_max["rate_rps"]

    # The same catalog ten times (3,490 models), through the catalog's own write path.
    big_file = catalog_times(COPIES, tmp_path / "models_x10.json")
    sync_started = time.perf_counter()
    call_command("sync_catalog", "--from-file", str(big_file), "--no-progress", stdout=out)
    sync_seconds = time.perf_counter() - sync_started
    version_watch.expire()
    big = current_snapshot()
    at_3490 = decision_times(
        big, requests, new_shapes(roles, 400, seed=6), new_shapes(roles, 200, seed=8, requirements=True)
    )

    def rate_line(label: str, r: dict) -> str:
        line = (
            f"{label} p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
            f"{r['rate_rps']:.0f} rps achieved, {r['errors']} errors, {r['late_starts']} late starts"
        )
        if "round_p99s" in r:
            line += f" (median of {len(r['round_p99s'])} rounds by p99: {', '.join(f'{p:.2f}' for p in r['round_p99s'])} ms)"
        return line

    def floor_line(r: dict) -> str:
        return (
            f"      GET /key (floor), same rate and conditions: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms "
            f"(rounds: {', '.join(f'{p:.2f}' for p in r['round_p99s'])} ms)"
        )

    with capsys.disabled():
        print(
            f"\n--- /route speed: {os.cpu_count()} cores, PostgreSQL, {models} models, {len(roles)} roles, {events:,} usage events"
        )
        print(
            f"decision in process:   median {decision_us:.1f} µs (best of 5 rounds: "
            f"{', '.join(f'{m:.0f}' for m in round_medians)}), p99 {p99_us:.1f} µs over {len(samples):,} decisions "
            f"(goal median <= {GOALS['decision_us']:.0f} µs)"
        )
        print(
            f"queries per decision:  {queries_per_decision:.5f} ({poll_queries} version polls in {elapsed:.2f} s of "
            f"back-to-back decisions; {len(burst)} in a burst of {len(requests)} between polls) (goal 0 per decision)"
        )
        print(
            f"/route at 300 rps, gunicorn -w {WORKERS} (goal p50 <= {GOALS['p50_ms']:.0f} ms, p99 <= {GOALS['p99_ms']:.0f} ms in both):"
        )

        def counted_lines(name: str) -> str:
            kept, ok = counted[name]["kept"], counted[name]["ok"]
            return (
                view_line(counted[name]["view"])
                + "\n"
                + (
                    f"      kept answers:      {kept:,.0f} of {ok:,.0f} answers over the rounds ({kept / max(ok, 1):.0%}; "
                    f"rounds: {', '.join(f'{share:.0%}' for share in kept_rounds[name])}) given again without a decision"
                )
            )

        if "quiet" in shown:
            print(rate_line("  (a) quiet:           ", shown["quiet"][0]))
            print(floor_line(floor_at["quiet"]))
            print(counted_lines("quiet"))
        for name, label in (
            ("same", "(b) usage + trips, same workers:"),
            ("split", "(c) usage + trips, usage on its own 2 workers:"),
            ("flushed", f"(d) usage + trips, same workers, usage flushed once a second ({BIG_BATCH:,} a batch):"),
        ):
            if name not in shown:
                continue
            (routed, flow), floor = shown[name], floor_at[name]
            print(f"  {label}")
            print(rate_line("                        ", routed))
            print(floor_line(floor))
            print(counted_lines(name))
            churn = (
                f"{flow['trips']} cooldown trips and {flow['clears']} clears ({flow['failures']} retryable failures)"
                if trips
                else "cooldown trips SKIPPED: the server answers 422 to usage events' `error` field"
            )
            print(
                f"      usage meanwhile:   {flow['events']:,} events in {flow['requests']} batches of {flow['batch']:,}, "
                f"{flow['events_per_s']:.0f} events/s (goal {USAGE_RATE:,}), batch p50 {flow['p50_ms']:.1f} ms, "
                f"p99 {flow['p99_ms']:.1f} ms, {flow['errors']} errors, {flow['late_starts']} late; {churn}"
            )
        print(f"  garbage collector in the route workers over these rounds: {gc_during}")
        print(
            f"max throughput:        /route {route_max['rate_rps']:.0f} rps, GET /key (floor) {floor_max['rate_rps']:.0f} rps: "
            f"{ratio:.0%} of the floor (goal >= {GOALS['ratio']:.0%}), 4 connections, gunicorn -w {WORKERS}, best of 3 interleaved rounds "
            f"(/route {', '.join(str(round(r['rate_rps'])) for r in route_rounds)}; "
            f"/key {', '.join(str(round(r['rate_rps'])) for r in floor_rounds)})"
        )
        print(
            f"decision by catalog size (in process; new shape = a request shape not memoised yet, "
            f"goal <= {GOALS['new_shape_us']:.0f} µs at {models * COPIES:,}):"
        )
        for at in (at_349, at_3490):
            warm, new, novel, again = at["warm"], at["new"], at["novel"], at["again"]
            print(
                f"  {at['models']:>5,} models:  warm median {warm['median']:7.1f} µs, p99 {warm['p99']:8.1f} µs "
                f"(made again, its kept answer dropped: median {again['median']:.1f} µs, p99 {again['p99']:.1f} µs);"
                f"  new shape median {new['median']:8.1f} µs, p99 {new['p99']:8.1f} µs "
                f"({at['count']} shapes; round medians: {', '.join(f'{m:.0f}' for m in new['rounds'])})"
            )
            print(
                f"                 new requirements too (no eligibility memoised): median {novel['median']:8.1f} µs, "
                f"p99 {novel['p99']:8.1f} µs ({at['novel_count']} shapes; round medians: "
                f"{', '.join(f'{m:.0f}' for m in novel['rounds'])})"
            )
        print(f"  ({len(big.models):,} models synced from one file by sync_catalog in {sync_seconds:.1f} s)")

    assert all(r["errors"] == 0 for r in route_rounds + floor_rounds), (route_rounds, floor_rounds)
    for quiet, _ in rounds.get("quiet", []) + floors.get("quiet", []):
        assert quiet["errors"] == 0 and quiet["statuses"] == {"200": quiet["requests"]}, quiet
    # Under churn a decision may find every model of a shape cooling down (a 422 is then the
    # right answer), but never a 5xx or a transport error; the usage flow is all stored.
    for routed, flow in [
        r for name in ("same", "split", "flushed") for r in rounds.get(name, []) + floors.get(name, [])
    ]:
        assert all(not s.startswith("5") and s != "0" for s in routed["statuses"]), (routed, server_log[-3000:])
        assert flow["errors"] == 0, (flow, server_log[-3000:])
    assert burst_seconds < version_watch.interval, (burst_seconds, version_watch.interval)
    assert len(burst) == 0
    assert len(big.models) == models * COPIES
