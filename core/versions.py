"""The per-process watch over the data versions (`core.models.DataVersion`)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection, connections

# How often a degraded watch tries the database again: the first request after it returns is
# at most this late to see it. A try that waited (an unreachable host: up to the connect
# timeout) spaces the next ones further, so that a worker spends at most a fifth of its time
# waiting on tries.
RETRY_SECONDS = 0.25
RETRY_BACKOFF = 4


class BackgroundRefresh:
    """One refresh at a time, in a thread of its own, for an in-process cache that goes on
    answering from what it holds meanwhile (the routing snapshot, the budget book): a change made
    by another process never makes a request wait for the rebuild."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.running = False

    def start(self, refresh: Callable[..., object], *args) -> None:
        with self._lock:
            if self.running:
                return
            self.running = True
        threading.Thread(target=self._run, args=(refresh, *args), name=self.name, daemon=True).start()

    def _run(self, refresh: Callable[..., object], *args) -> None:
        try:
            refresh(*args)
        except DatabaseError:
            pass  # (the cache marked the watch degraded; the next check tries again)
        finally:
            self.running = False
            connections.close_all()  # this thread's connections: it ends here

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait for a refresh under way to finish (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.001)


def drop_broken_connection() -> None:
    """Close this thread's database connection after a failure, so the next query reconnects.

    Django closes an unusable connection only at the start and end of a request; a request that
    tries the database again meanwhile would hit the same dead socket. Inside a transaction the
    connection is left to the transaction's own error handling.
    """
    if not connection.in_atomic_block:
        try:
            connection.close()
        except DatabaseError:
            pass


class VersionWatch:
    """What this process knows of the data versions, re-read at most every `interval` seconds.

    Every in-process cache (the routing snapshot, the API key cache, the budget book) asks
    `versions()`; the one query it costs is shared by all of them and made at most once per
    interval, so a change made anywhere is seen by every worker within that interval and a
    request between checks makes no query.

    When the database cannot be read, the watch keeps the versions it last read, so every cache
    keeps what it holds, and is `degraded` until a read succeeds again; it retries at most every
    RETRY_SECONDS (later after a try that waited). Only a process that has never read them raises.
    """

    def __init__(self, load: Callable[[], dict[str, int]], interval: float | None = None) -> None:
        self._load = load
        self._interval = interval
        self._lock = threading.Lock()
        self._versions: dict[str, int] | None = None
        self._checked_at = -math.inf  # due whatever the monotonic clock reads
        self.degraded = False
        self._retry = RETRY_SECONDS
        # Wall-clock time of the last successful read, for the snapshot's age in GET /metrics.
        self.loaded_at = 0.0
        # The values this process gave the versions it changed (expire() calls): caches rebuild
        # for those at once, in the request that follows, and for other processes' changes in
        # the background.
        self.local_values: dict[str, int] = {}

    @property
    def interval(self) -> float:
        if self._interval is not None:
            return self._interval
        return settings.LLMHIVE_SNAPSHOT_CHECK_SECONDS

    def _due(self, now: float) -> bool:
        wait = self._retry if self.degraded else self.interval
        return self._versions is None or now - self._checked_at >= wait

    def versions(self) -> dict[str, int]:
        if self._due(time.monotonic()):
            # While degraded, a request that finds another thread already retrying answers from
            # what is known instead of queueing behind it.
            blocking = not (self.degraded and self._versions is not None)
            if self._lock.acquire(blocking=blocking):
                try:
                    if self._due(time.monotonic()):
                        self._reload()
                finally:
                    self._lock.release()
        return self._versions

    def _reload(self) -> None:
        started = time.monotonic()
        try:
            versions = self._load()
        except DatabaseError:
            self.database_failed()
            self._retry = max(RETRY_SECONDS, RETRY_BACKOFF * (time.monotonic() - started))
            if self._versions is None:
                raise
            return
        self._versions, self._checked_at, self.degraded = versions, time.monotonic(), False
        self.loaded_at = time.time()

    def database_failed(self) -> None:
        """The database could not be read (here or by a cache rebuilding): degraded until a
        later check reads it again."""
        drop_broken_connection()
        self.degraded = True
        self._checked_at = time.monotonic()

    def poll_now(self) -> None:
        """Check on the next call, as the periodic check would (not after a change of this process)."""
        self._checked_at = -math.inf  # due whatever the monotonic clock reads

    def expire(self, values: dict[str, int] | None = None, *, committed: bool = False) -> None:
        """After a change made in this process, which gave the versions in `values` their new
        values: the caches see it on the next call. A committed change is known exactly and
        taken as it is; one made inside a transaction that may still roll back (or whose rows
        other threads cannot read yet) makes the next call read the versions again."""
        self.local_values.update(values or {})
        if committed and values and self._versions is not None:
            self._versions = {**self._versions, **values}
        else:
            self._checked_at = -math.inf  # due whatever the monotonic clock reads

    def changed_here(self, held: dict[str, int], current: dict[str, int]) -> bool:
        """Whether a version that moved between what a cache holds and what was read now moved
        by this process's own change (the cache must show it at once), rather than another's."""
        return any(value != held.get(name) and value == self.local_values.get(name) for name, value in current.items())
