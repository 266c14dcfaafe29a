"""gunicorn's worker classes for LLMHive (gunicorn.conf.py: `worker_class`).

gunicorn's workers, telling this process's background refresh (core.versions' refresher) when a
request is in flight, so that the refresh steps aside meanwhile and a request does not wait for
the interpreter lock behind a rebuild of the routing snapshot (tests/benchmarks/bench_refresh.py):

- SyncWorker (gunicorn.conf.py's): gunicorn's sync worker, one request at a time, from accepting
  its connection to the end of writing the answer (`post_request`, before the worker lingers for
  the client to close).
- ThreadWorker: gunicorn's gthread worker, a thread per request in flight and connections kept
  open between requests. A request is in flight from gunicorn's `pre_request` (its head read) to
  `post_request` (its answer written), in the thread answering it.

gunicorn's master imports this module to read the class, before any worker loads Django: it
imports nothing that needs the settings.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

from core.versions import refresher


class ThreadWorker(GunicornThreadWorker):
    def handle(self, conn):
        try:
            return super().handle(conn)
        finally:
            refresher.request_finished()  # (also when no request came, or it failed)


class SyncWorker(GunicornSyncWorker):
    def accept(self, listener) -> None:
        with refresher.serving():  # (ended also when no connection was there, or it failed)
            super().accept(listener)


def ready() -> None:
    """gunicorn's `post_worker_init` hook: the application is loaded; the worker builds its routing
    snapshot before it takes its first request (routing.snapshot.prewarm)."""
    from routing.snapshot import prewarm  # (needs the settings: the worker has loaded them by now)

    prewarm()


def started() -> None:
    """gunicorn's `pre_request` hook: a request's head is read, its answer is being made."""
    refresher.request_started()


def answered() -> None:
    """gunicorn's `post_request` hook: the answer is written."""
    refresher.request_finished()
