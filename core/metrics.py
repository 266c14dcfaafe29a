"""Prometheus metrics recorded by the web process, and their rendering for GET /metrics.

Under gunicorn each worker is a process of its own, so a counter kept in one worker's memory
would show only what that worker did, and a scrape would see whichever worker answered it.
prometheus_client's multiprocess mode keeps each process's values in a file of its own under
`PROMETHEUS_MULTIPROC_DIR` and sums them at scrape time. That variable must be set before
prometheus_client is imported; `gunicorn.conf.py` (read by gunicorn from the project directory)
sets it, empties the directory when the server starts and marks a dead worker's gauges gone.
Under `runserver` (one process) it is not set and the values are kept in memory.

What other processes do (a sync run by the django-q2 worker or `manage.py sync_catalog`, usage
events stored by a health check's ping in the worker) is not counted here: those figures are
read from the database at scrape time (`llmhive_site.metrics`), so they are right whichever
process did the work and survive restarts of the web server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# What POST /route answered. Results with a decision: ok, bootstrap (the catalog is empty and the
# last sync failed), degraded (answered from the last snapshot without the database); with none:
# the error code of the decision (unknown_role, no_eligible_model, budget_exhausted), invalid (a
# body or parameter refused before the decision), unauthorized (no key, or without the scope),
# error (a 5xx).
ROUTE_RESULTS = (
    "ok",
    "bootstrap",
    "degraded",
    "unknown_role",
    "unknown_category",
    "no_eligible_model",
    "budget_exhausted",
    "invalid",
    "unauthorized",
    "error",
)
USAGE_API_RESULTS = ("stored", "duplicate")

# The `_created` series exist only in one process (multiprocess mode has none): without them the
# answer is the same under runserver and gunicorn.
disable_created_metrics()

# Metrics are registered in no registry of their own: each scrape builds one (`render`).
route_decisions = Counter(
    "llmhive_route_decisions", "POST /route calls answered, by result.", ["result"], registry=None
)
route_decision_seconds = Histogram(
    "llmhive_route_decision_seconds",
    "Time to answer POST /route in the view: key, validation, decision and encoding.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=None,
)
# The wall-clock time at which the routing snapshot was last found current (its data versions
# read from the database and equal to its own). The freshest live worker's ("livemax"): a worker
# that has answered nothing for a while has not re-checked and would look stale without being so;
# when the database is out of reach every worker stops confirming, and this stops moving.
snapshot_confirmed = Gauge(
    "llmhive_snapshot_confirmed_timestamp_seconds",
    "When the routing snapshot was last confirmed current against the database (Unix time).",
    multiprocess_mode="livemax",
    registry=None,
)
# How long each rebuild of a worker's routing snapshot took (routing.snapshot), by the largest input
# that moved: a request waits for none of them (background), but each takes CPU from the requests.
SNAPSHOT_CHANGES = ("first", "catalog", "routing", "outcomes", "health", "cooldowns")
snapshot_rebuild_seconds = Histogram(
    "llmhive_snapshot_rebuild_seconds",
    "Rebuilds of the routing snapshot in the web workers, by the largest input that moved.",
    ["change"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=None,
)
# How long the background refreshes waited for requests in flight to be answered (core.versions'
# Refresher.pause): the refresh steps aside so that a request does not wait for it.
refresh_held_seconds = Counter(
    "llmhive_refresh_held_seconds",
    "Time the web workers' background refreshes waited for requests in flight to be answered.",
    registry=None,
)
# /route answers given again from a kept answer (routing.decision.ANSWERS_KEPT): a dict lookup
# instead of a decision. Against llmhive_route_decisions_total{result="ok"}, the share that cost
# next to nothing; under a flow of cooldowns and spend it drops only as far as they touch answers.
route_answers_kept = Counter(
    "llmhive_route_answers_kept",
    "POST /route answers given again from a kept answer (nothing they rest on had moved).",
    registry=None,
)
usage_api_events = Counter(
    "llmhive_usage_api_events",
    "Usage events received by POST /usage in accepted batches: stored, or a duplicate of one stored.",
    ["result"],
    registry=None,
)

# Pauses of Python's cyclic garbage collector (core.heap): a worker answers nothing while one runs.
gc_pause_seconds = Histogram(
    "llmhive_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector in the web workers, by generation (2: a full collection).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=None,
)

# Every series exists from the start, at 0 (a rate needs two points); /route counts through
# these (a label lookup per call costs more than the count).
route_decisions_by_result = {result: route_decisions.labels(result=result) for result in ROUTE_RESULTS}
for result in USAGE_API_RESULTS:
    usage_api_events.labels(result=result)
gc_pauses_by_generation = [gc_pause_seconds.labels(generation=str(g)) for g in range(3)]
snapshot_rebuilds_by_change = {change: snapshot_rebuild_seconds.labels(change=change) for change in SNAPSHOT_CHANGES}

PROCESS_METRICS = (
    route_decisions,
    route_decision_seconds,
    route_answers_kept,
    snapshot_confirmed,
    snapshot_rebuild_seconds,
    refresh_held_seconds,
    usage_api_events,
    gc_pause_seconds,
)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, as prometheus_client decided when it was imported."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


class _ProcessMetrics(Collector):
    """The metrics above: from every process's file in multiprocess mode, else from memory."""

    def collect(self) -> Iterator[Metric]:
        if multiprocess_dir():
            source: Iterable[Metric] = MultiProcessCollector(None).collect()
        else:
            source = (family for metric in PROCESS_METRICS for family in metric.collect())
        for family in source:
            yield family
            if family.name == "llmhive_snapshot_confirmed_timestamp_seconds":
                yield from _snapshot_age(family)


def _snapshot_age(confirmed: Metric) -> Iterator[Metric]:
    stamps = [sample.value for sample in confirmed.samples if sample.value > 0]
    if stamps:  # 0: no worker has built a snapshot yet
        yield GaugeMetricFamily(
            "llmhive_snapshot_age_seconds",
            "Seconds since the routing snapshot was last confirmed current against the database.",
            value=max(0.0, time.time() - max(stamps)),
        )


def render(accept: str, *collectors: Collector) -> tuple[bytes, str]:
    """The exposition of the process metrics and of the collectors given, and its content type:
    in the format the scraper's Accept header asks for (prometheus_client's own negotiation;
    the text format 0.0.4 when it asks for none)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    for collector in collectors:
        registry.register(collector)
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
