"""Keeping Python's cyclic garbage collector out of the answers' tail.

A web worker holds a large, long-lived heap: Django and every module it imported, then the
routing snapshot (the catalog, its arrays, the strategy memory). CPython's collector scans all
of it in each full collection, and a worker that rebuilds its snapshot a few times a second
(outcomes, cooldowns) triggers one every few seconds: 50-250 ms each in the route workers of
`tests/benchmarks/bench_route.py`, during which the worker answers nothing. Objects that live as
long as the process are moved out of the collector's sight (`gc.freeze()`) once they exist:
after the application and its URLconf are loaded (`llmhive_site.wsgi`), and after the worker's
first routing snapshot. What is built later (each snapshot replaces the last and is freed by
reference counting) is all a collection still scans.

Each freeze first collects what is garbage then (tens of milliseconds: once as a worker starts,
once in the request that builds its first snapshot), so nothing dead is kept for good. Objects
frozen and freed later are still freed by reference counting; only a cycle among them would stay,
and the snapshot has none (tests/routing/test_engine.py checks it).

Only serving processes do this (the WSGI module calls `serving()`), and only with
LLMHIVE_GC_FREEZE on (the default): tests and management commands keep Python's collector as
it is. Every pause is timed into `llmhive_gc_pause_seconds` (GET /api/v1/metrics).
"""

from __future__ import annotations

import gc
import time

from django.conf import settings

from core import metrics

_state = {"serving": False, "warm": False, "started": 0.0}


def _timed(phase: str, info: dict) -> None:
    if phase == "start":
        _state["started"] = time.perf_counter()
    elif _state["started"]:
        metrics.gc_pauses_by_generation[info["generation"]].observe(time.perf_counter() - _state["started"])


def _freeze() -> None:
    gc.collect()  # what is garbage now is freed, not kept for good with the rest
    gc.freeze()


def serving() -> None:
    """Called by the WSGI module once the application is loaded: time the collector's pauses,
    import the URLconf (and every view it names) now, and freeze what all that made."""
    from django.urls import get_resolver

    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)
    get_resolver().url_patterns  # noqa: B018 (loads the URLconf)
    if settings.LLMHIVE_GC_FREEZE:
        _state["serving"] = True
        _freeze()


def warmed_up() -> None:
    """Called when a process holds its first routing snapshot: a serving process freezes it
    too, once."""
    if _state["serving"] and not _state["warm"]:
        _state["warm"] = True
        _freeze()
