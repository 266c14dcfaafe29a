"""gunicorn's worker class for LLMHive (gunicorn.conf.py: `worker_class`).

gunicorn's sync worker, telling this process's background refresh (core.versions' refresher)
when a request is in flight: from accepting its connection to the end of writing the answer
(gunicorn's `post_request`, before the worker lingers for the client to close). The refresh
steps aside meanwhile, so a request does not wait for the interpreter lock behind a rebuild of
the routing snapshot (tests/benchmarks/bench_refresh.py).

gunicorn's master imports this module to read the class, before any worker loads Django: it
imports nothing that needs the settings.
"""

from __future__ import annotations

from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

from core.versions import refresher


class SyncWorker(GunicornSyncWorker):
    def accept(self, listener) -> None:
        with refresher.serving():  # (ended also when no connection was there, or it failed)
            super().accept(listener)


def answered() -> None:
    """gunicorn's `post_request` hook: the answer is written."""
    refresher.request_finished()
