"""The per-process watch over the data versions (`core.models.DataVersion`)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection, connections

logger = logging.getLogger(__name__)

# How often a degraded watch tries the database again: the first request after it returns is
# at most this late to see it. A try that waited (an unreachable host: up to the connect
# timeout) spaces the next ones further, so that a worker spends at most a fifth of its time
# waiting on tries.
RETRY_SECONDS = 0.25
RETRY_BACKOFF = 4
# A version read on the refresh thread (VersionWatch.poll_in_background) still unanswered after
# this long: the database has stopped answering (a frozen host, a hung disk), and the watch is
# degraded until the read returns. (A read takes milliseconds; a new connection gives up after
# LLMHIVE_DATABASE_CONNECT_TIMEOUT, 2 s by default, and fails as a cut would.)
STALLED_SECONDS = 2.0


class Refresher:
    """The thread that runs this process's background refreshes (the routing snapshot, the budget
    book), one after another, on a database connection it keeps between them.

    A thread per refresh opened a connection per refresh: at ten usage batches a second that was
    a new PostgreSQL backend for every worker several times a second (5-10 ms each, and the
    backend's own start on the same cores). One refresh at a time also keeps a worker's
    refreshes from competing with each other for the cores its requests need. The connection is
    closed after IDLE_SECONDS without work (so a quiet process holds none), when it is obsolete
    or unusable (as Django does at the start of a request), and after a database error.
    """

    IDLE_SECONDS = 5.0
    # The longest a pause waits for the requests in flight to finish (see pause): a worker that
    # is never idle still refreshes, at most this much later per pause.
    HOLD_SECONDS = 0.005

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._serving: set[int] = set()  # the threads answering a request now (request_started)
        self._idle = threading.Condition(threading.Lock())  # notified when the last one finishes
        self._queue: dict[str, tuple[Callable[..., object], tuple]] = {}  # by name, in order
        self._running: str | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False
        self._ident: int | None = None  # the thread's, while it runs

    def submit(self, name: str, refresh: Callable[..., object], *args) -> bool:
        """Queue `refresh(*args)` unless a refresh of that name is already queued or running."""
        with self._cond:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._pid, self._thread, self._queue, self._running = os.getpid(), None, {}, None
                self._ident = None
            if name in self._queue or self._running == name:
                return False
            self._queue[name] = (refresh, args)
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._loop, name="llmhive-refresh", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return True

    def request_started(self) -> None:
        """The calling thread begins answering a request (from accepting its connection): the
        refresh steps aside at its next pause until it is answered (request_finished)."""
        self._serving.add(threading.get_ident())

    def request_finished(self) -> None:
        """The calling thread has answered its request (calling this again does nothing)."""
        if self._serving:
            with self._idle:
                self._serving.discard(threading.get_ident())
                if not self._serving:
                    self._idle.notify_all()

    @contextmanager
    def serving(self) -> Iterator[None]:
        self.request_started()
        try:
            yield
        finally:
            self.request_finished()

    def pause(self) -> None:
        """Called by a refresh between steps of its work: lets the requests of this process go
        first.

        A request gives the interpreter lock up at each read and write of its socket and database
        and must take it back after; while this thread computes, it gets it back only when this
        thread lets it go, which the interpreter forces every `sys.getswitchinterval()` (5 ms).
        So a request overlapping a refresh waited after each of its reads: up to 5 ms each with
        no pauses, one step of the refresh each (up to a millisecond) with pauses that only
        yield the lock. Here, while a request is in flight (request_started, marked by the
        gunicorn worker: llmhive_site.workers), the refresh waits without the lock until it is
        answered, at most HOLD_SECONDS, so such a request waits for at most the one step under
        way when it arrived (tests/benchmarks/bench_refresh.py); otherwise it yields the lock
        to a thread that waits for it. A no-op on any other thread (a request building its own
        snapshot would only hand the lock to the refresh)."""
        if threading.get_ident() != self._ident:
            return
        if not self._serving:
            time.sleep(0)  # releases the lock and takes it back: a waiting thread goes first
            return
        started = time.perf_counter()
        with self._idle:
            self._idle.wait_for(lambda: not self._serving, self.HOLD_SECONDS)
        from core import metrics  # (not at import: gunicorn's master imports this for its worker class)

        metrics.refresh_held_seconds.inc(time.perf_counter() - started)

    def busy(self, name: str) -> bool:
        return name in self._queue or self._running == name

    def on_its_thread(self) -> bool:
        """Whether the caller is this process's refresh thread."""
        return threading.get_ident() == self._ident

    def _loop(self) -> None:
        self._ident = threading.get_ident()
        try:
            while True:
                with self._cond:
                    if not self._queue and not self._stopping:
                        self._cond.wait(self.IDLE_SECONDS)
                    if self._stopping:
                        return
                    if not self._queue:
                        connections.close_all()  # this thread's: idle, it holds none
                        continue
                    name = next(iter(self._queue))
                    refresh, args = self._queue.pop(name)
                    self._running = name
                try:
                    for conn in connections.all(initialized_only=True):
                        conn.close_if_unusable_or_obsolete()
                    refresh(*args)
                except DatabaseError:
                    drop_broken_connection()  # (the cache marked the watch degraded: the next check tries again)
                except Exception:
                    logger.exception("Background refresh %s failed", name)
                finally:
                    with self._cond:
                        self._running = None
                        self._cond.notify_all()
        finally:
            self._ident = None  # (a later thread may be given the same id)
            connections.close_all()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (its connection closed); the next submit starts another. For tests
        that drop the database the thread may still be connected to."""
        with self._cond:
            thread, self._stopping = self._thread, True
            self._queue.clear()
            self._cond.notify_all()
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)


refresher = Refresher()


def pause() -> None:
    """In this process's background refresh, let a waiting request have the interpreter lock
    (Refresher.pause); elsewhere nothing."""
    refresher.pause()


class BackgroundRefresh:
    """One refresh at a time of an in-process cache that goes on answering from what it holds
    meanwhile (the routing snapshot, the budget book), run by this process's `refresher`: a
    change made by another process never makes a request wait for the rebuild."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def running(self) -> bool:
        return refresher.busy(self.name)

    def start(self, refresh: Callable[..., object], *args) -> None:
        refresher.submit(self.name, refresh, *args)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait for a refresh queued or under way to finish (for tests and benchmarks)."""
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

    In a gunicorn worker the periodic read runs on the process's refresh thread
    (`poll_in_background`): a request that finds it due starts it and answers from the versions
    held, so no request waits for a round trip to the database (two, with Django's connection
    health check) for it. The first read, and the read a change of this process asks for
    (`expire` inside a transaction), are still made by the caller.
    """

    def __init__(self, load: Callable[[], dict[str, int]], interval: float | None = None) -> None:
        self._load = load
        self._interval = interval
        self._lock = threading.Lock()
        self._versions: dict[str, int] | None = None
        self._checked_at = -math.inf  # due whatever the monotonic clock reads
        self.degraded = False
        self._retry = RETRY_SECONDS
        # Whether the next read is the caller's to make (the first one, or one this process's
        # own change asks for), even when the periodic read runs in the background.
        self._forced = True
        self._in_background = False
        self._polling_since: float | None = None  # when the read on the refresh thread began
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

    def poll_in_background(self, enabled: bool = True) -> None:
        """Make the periodic read on this process's refresh thread (`refresher`) from now on,
        started by the first call that finds it due; that call and those until the read is made
        answer from the versions held. For gunicorn's workers (llmhive_site.workers.ready), where
        the read in a request was one request in a hundred at 300 req/s, paying one or two round
        trips to a database busy with the usage flow: a tenth of a millisecond on a quiet one,
        several at the tail (tests/benchmarks/bench_route.py). A change is seen at most a
        refresh later than the interval: the thread runs one refresh at a time."""
        self._in_background = enabled

    @property
    def in_background(self) -> bool:
        """Whether this process's requests leave their reads and records to its refresh thread
        (poll_in_background): a gunicorn worker."""
        return self._in_background

    def versions(self) -> dict[str, int]:
        if self._due(time.monotonic()):
            if self._in_background and not self._forced and not refresher.on_its_thread():
                refresher.submit("llmhive-versions", self._poll)
                since = self._polling_since
                if since is not None and time.monotonic() - since > STALLED_SECONDS:
                    self.degraded = True  # (until the read returns: _reload)
                return self._versions
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

    def _poll(self) -> None:
        """The periodic read, on the refresh thread."""
        with self._lock:
            if self._due(time.monotonic()):
                self._polling_since = time.monotonic()
                try:
                    self._reload()
                finally:
                    self._polling_since = None

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
        self._forced = False
        self.loaded_at = time.time()

    def database_failed(self) -> None:
        """The database could not be read (here or by a cache rebuilding): degraded until a
        later check reads it again."""
        drop_broken_connection()
        self.degraded = True
        self._checked_at = time.monotonic()

    def poll_now(self) -> None:
        """Read the versions on the next call, in the caller (not after a change of this process)."""
        self._checked_at, self._forced = -math.inf, True  # due whatever the monotonic clock reads

    def expire(self, values: dict[str, int] | None = None, *, committed: bool = False) -> None:
        """After a change made in this process, which gave the versions in `values` their new
        values: the caches see it on the next call. A committed change is known exactly and
        taken as it is; one made inside a transaction that may still roll back (or whose rows
        other threads cannot read yet) makes the next call read the versions again."""
        self.local_values.update(values or {})
        if committed and values and self._versions is not None:
            self._versions = {**self._versions, **values}
        else:
            self._checked_at, self._forced = -math.inf, True  # due whatever the monotonic clock reads

    def changed_here(self, held: dict[str, int], current: dict[str, int]) -> bool:
        """Whether a version that moved between what a cache holds and what was read now moved
        by this process's own change (the cache must show it at once), rather than another's."""
        return bool(self.moved_here(held, current))

    def moved_here(self, held: dict[str, int], current: dict[str, int]) -> frozenset[str]:
        """The versions that moved between what a cache holds and what was read now by this
        process's own change."""
        return frozenset(
            name for name, value in current.items() if value != held.get(name) and value == self.local_values.get(name)
        )
