"""The version watch while the database cannot be read: it keeps what it knew, says it is
degraded, and tries again soon (later after a try that waited). The end-to-end behaviour, with
PostgreSQL really cut under gunicorn, is tests/faults/test_database_cut.py."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError

from core.versions import RETRY_BACKOFF, RETRY_SECONDS, VersionWatch
from tests.servers import wait_for


class Database:
    """The versions table as the watch sees it: readable, or failing (after `wait` seconds)."""

    def __init__(self) -> None:
        self.versions = {"catalog": 1}
        self.down = False
        self.wait = 0.0
        self.reads = 0
        self.readers: list[int] = []  # the thread of each read

    def load(self) -> dict[str, int]:
        self.reads += 1
        self.readers.append(threading.get_ident())
        if self.down:
            time.sleep(self.wait)
            raise OperationalError("connection refused")
        return dict(self.versions)


def test_it_keeps_the_last_versions_and_is_degraded_until_the_database_answers_again():
    db = Database()
    watch = VersionWatch(db.load, interval=0.0)
    assert watch.versions() == {"catalog": 1} and not watch.degraded

    db.down, db.versions = True, {"catalog": 2}
    assert watch.versions() == {"catalog": 1} and watch.degraded

    db.down = False
    time.sleep(RETRY_SECONDS)
    assert watch.versions() == {"catalog": 2} and not watch.degraded


def test_a_degraded_watch_tries_the_database_at_most_every_retry_interval():
    db = Database()
    watch = VersionWatch(db.load, interval=0.0)
    watch.versions()
    db.down = True
    watch.versions()
    reads = db.reads
    for _ in range(100):
        watch.versions()
    assert db.reads == reads  # within RETRY_SECONDS of the failed try: no new one
    time.sleep(RETRY_SECONDS)
    watch.versions()
    assert db.reads == reads + 1


def test_a_try_that_waited_spaces_the_next_ones_further():
    db = Database()
    watch = VersionWatch(db.load, interval=0.0)
    watch.versions()
    db.down, db.wait = True, 0.1
    watch.versions()
    reads = db.reads
    time.sleep(RETRY_SECONDS + 0.05)
    watch.versions()
    assert db.reads == reads, "retried before RETRY_BACKOFF times the wait"
    time.sleep(RETRY_BACKOFF * db.wait)
    watch.versions()
    assert db.reads == reads + 1


def test_a_watch_that_never_read_the_versions_raises():
    db = Database()
    db.down = True
    watch = VersionWatch(db.load, interval=0.0)
    with pytest.raises(OperationalError):
        watch.versions()


def test_a_committed_change_of_this_process_is_known_without_a_read_and_told_from_anothers():
    db = Database()
    watch = VersionWatch(db.load, interval=3600)
    held = watch.versions()
    reads = db.reads

    # Committed here: the new value is taken as it is (no read), and is this process's own.
    db.versions = {"catalog": 7}
    watch.expire({"catalog": 7}, committed=True)
    assert watch.versions() == {"catalog": 7} and db.reads == reads
    assert watch.changed_here(held, watch.versions())

    # Inside a transaction that may roll back: the next call reads the versions again.
    db.versions = {"catalog": 7, "stats": 3}
    watch.expire({"stats": 3})
    assert watch.versions() == {"catalog": 7, "stats": 3} and db.reads == reads + 1

    # Another process moved a version this one never wrote: not this process's change.
    held = watch.versions()
    db.versions = {"catalog": 7, "stats": 3, "health": 9}
    watch.poll_now()
    assert not watch.changed_here(held, watch.versions())


@pytest.mark.django_db(transaction=True)
def test_the_refresher_runs_refreshes_one_at_a_time_on_a_connection_it_keeps(monkeypatch):
    """Background refreshes run in one thread per process, on one database connection kept
    between them (a connection per refresh was a new PostgreSQL backend several times a second
    per worker); it is closed once the thread has been idle a while."""

    from django.db import connection

    from core.versions import BackgroundRefresh, Refresher

    refresher = Refresher()
    monkeypatch.setattr(refresher, "IDLE_SECONDS", 0.3)
    monkeypatch.setattr("core.versions.refresher", refresher)
    seen, running, overlap = [], [], []
    lock = threading.Lock()

    def refresh(tag: str) -> None:
        with lock:
            overlap.append(len(running))
            running.append(tag)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT 1")
            seen.append((threading.get_ident(), id(connection.connection), cursor.fetchone()[0]))
        time.sleep(0.02)
        with lock:
            running.remove(tag)

    first, second = BackgroundRefresh("first"), BackgroundRefresh("second")
    first.start(refresh, "a")
    second.start(refresh, "b")
    first.start(refresh, "a again")  # "first" is queued or running: not queued twice
    first.wait_idle()
    second.wait_idle()
    assert len(seen) == 2 and overlap == [0, 0]  # one after the other
    assert seen[0][0] == seen[1][0]  # the same thread
    if connection.vendor == "postgresql":  # (SQLite's connections are not kept: CONN_MAX_AGE 0)
        assert seen[0][1:] == seen[1][1:]  # the same connection, the same backend
    time.sleep(0.6)  # idle: the connection is closed
    first.start(refresh, "later")
    first.wait_idle()
    if connection.vendor == "postgresql":
        assert seen[2][2] != seen[1][2]  # a new backend
    refresher.stop()
    assert not refresher.busy("first")


def test_a_refresh_that_pauses_lets_a_request_thread_have_the_interpreter_lock_at_once(monkeypatch):
    """A request gives the interpreter lock up at each socket or database read and must take it
    back after. While the refresh thread computes, that waits for the interpreter's forced
    switch (`sys.getswitchinterval()`, 5 ms) unless the refresh pauses between steps of its work
    (Refresher.pause): here it computes with pauses while this thread (the request) reads and
    takes the lock back, over and over. (Without the pauses the waits are the switch interval on
    an idle machine; on a busy one the scheduler's own delays blur that, so it is not asserted.)"""
    import statistics
    import sys

    from core.versions import BackgroundRefresh, Refresher

    refresher = Refresher()
    monkeypatch.setattr("core.versions.refresher", refresher)

    def compute(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sum(range(300))  # Python work, holding the lock
            refresher.pause()

    job = BackgroundRefresh("compute")
    job.start(compute, 0.4)
    time.sleep(0.02)  # under way
    waits = []
    while job.running and len(waits) < 40:
        started = time.perf_counter()
        time.sleep(0.0005)  # a read: the lock given up, then taken back
        waits.append(time.perf_counter() - started - 0.0005)
    job.wait_idle()
    refresher.stop()
    assert len(waits) >= 20
    assert statistics.median(waits) < sys.getswitchinterval() / 5, waits
    refresher.pause()  # on any other thread: nothing (no error, no wait)


def test_a_refresh_steps_aside_while_a_request_is_in_flight(monkeypatch):
    """While a request is in flight in the process (marked by the gunicorn worker class:
    llmhive_site.workers), a refresh that pauses waits without the interpreter lock until it is
    answered, so the request does not wait for the refresh after each of its reads; it waits at
    most Refresher.HOLD_SECONDS a pause, so a worker that is never idle still refreshes."""
    from core import metrics
    from core.versions import BackgroundRefresh, Refresher

    refresher = Refresher()
    monkeypatch.setattr("core.versions.refresher", refresher)
    steps = []

    def compute(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sum(range(300))  # a step of Python work, holding the lock
            steps.append(1)
            refresher.pause()

    def reads() -> tuple[int, float]:
        """A request's forty socket reads: the refresh's steps meanwhile, and how long they took."""
        before, started = len(steps), time.perf_counter()
        for _ in range(40):
            time.sleep(0.0005)  # the lock given up, then taken back
        return len(steps) - before, time.perf_counter() - started

    held_before = metrics.refresh_held_seconds._value.get()
    job = BackgroundRefresh("compute")
    job.start(compute, 0.5)
    time.sleep(0.02)  # under way
    between, _ = reads()  # not marked in flight: the refresh computes between the reads
    with refresher.serving():
        during, elapsed = reads()
    after, _ = reads()
    refresher.stop()
    job.wait_idle()
    # In flight: a step per HOLD_SECONDS (the one under way when each hold ran out), where
    # outside a request the refresh took hundreds.
    assert during <= elapsed / Refresher.HOLD_SECONDS + 2, (during, elapsed)
    assert during >= 1, "a refresh that steps aside for a request still goes on"
    assert min(between, after) > 10 * during, (between, during, after)
    assert metrics.refresh_held_seconds._value.get() > held_before
    refresher.request_finished()  # (no request in flight: nothing)


def test_a_watch_polling_in_the_background_never_reads_in_the_callers_thread_once_it_holds_versions(monkeypatch):
    """In a gunicorn worker (llmhive_site.workers.ready) the periodic read runs on the refresh
    thread: a request that finds it due answers from the versions held and starts it. The first
    read, and the one a change of this process made inside a transaction asks for, are still
    the caller's (it must see its own change in its next request)."""

    from core.versions import Refresher

    refresher = Refresher()
    monkeypatch.setattr("core.versions.refresher", refresher)
    db = Database()
    watch = VersionWatch(db.load, interval=0.05)
    watch.poll_in_background()
    here = threading.get_ident()
    try:
        assert watch.versions() == {"catalog": 1} and db.readers == [here]  # the first read: the caller's

        db.versions = {"catalog": 2}
        time.sleep(0.06)  # due
        assert watch.versions() == {"catalog": 1}  # answered from what is held, the read started
        wait_for(lambda: watch.versions() == {"catalog": 2})
        assert here not in db.readers[1:] and len(db.readers) >= 2

        # Another process's change: seen within the interval plus the read, by no caller's read.
        db.versions = {"catalog": 3}
        calls_until_seen = 0
        deadline = time.monotonic() + 2
        while watch.versions() != {"catalog": 3} and time.monotonic() < deadline:
            calls_until_seen += 1
            time.sleep(0.001)
        assert watch.versions() == {"catalog": 3} and calls_until_seen > 0
        assert db.readers.count(here) == 1

        # This process's own change inside a transaction: its next call reads in the caller.
        db.versions = {"catalog": 3, "stats": 4}
        watch.expire({"stats": 4})
        assert watch.versions() == {"catalog": 3, "stats": 4} and db.readers[-1] == here

        # The database away and back: degraded, then recovered by the background read.
        db.down = True
        time.sleep(0.06)
        watch.versions()
        wait_for(lambda: watch.degraded)
        db.down, db.versions = False, {"catalog": 5, "stats": 4}
        wait_for(lambda: watch.versions() == {"catalog": 5, "stats": 4} and not watch.degraded)
        assert db.readers.count(here) == 2
    finally:
        refresher.stop()


@pytest.mark.django_db(transaction=True)
def test_a_background_poll_reads_the_data_versions_on_the_refresh_threads_connection(monkeypatch):
    """With the real table: a due check makes no query in the calling thread (no version read,
    no connection health check), and the refresh thread's read brings a change made meanwhile."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.models import DataVersion
    from core.versions import Refresher

    refresher = Refresher()
    monkeypatch.setattr("core.versions.refresher", refresher)
    watch = VersionWatch(DataVersion.current, interval=0.05)
    watch.poll_in_background()
    try:
        DataVersion.bump("catalog")
        before = watch.versions()["catalog"]
        DataVersion.objects.filter(name="catalog").update(version=before + 1)  # another process's bump
        time.sleep(0.06)
        with CaptureQueriesContext(connection) as queries:
            assert watch.versions()["catalog"] == before
        assert len(queries) == 0
        wait_for(lambda: watch.versions()["catalog"] == before + 1)
    finally:
        refresher.stop()


def test_a_background_read_that_hangs_makes_the_watch_degraded_until_it_returns(monkeypatch):
    """The database stops answering (a frozen host): the read on the refresh thread waits; after
    STALLED_SECONDS the watch says it is degraded, and calls still answer at once from what it
    holds. When the read returns, it is current and no longer degraded."""

    from core.versions import Refresher

    refresher = Refresher()
    monkeypatch.setattr("core.versions.refresher", refresher)
    monkeypatch.setattr("core.versions.STALLED_SECONDS", 0.2)
    answering = threading.Event()
    answering.set()
    db = Database()

    def load() -> dict[str, int]:
        answering.wait()
        return db.load()

    watch = VersionWatch(load, interval=0.05)
    watch.poll_in_background()
    try:
        watch.versions()
        answering.clear()
        db.versions = {"catalog": 2}
        time.sleep(0.06)
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            assert watch.versions() == {"catalog": 1}
            time.sleep(0.01)
        assert watch.degraded  # the read has hung longer than STALLED_SECONDS
        answering.set()
        wait_for(lambda: watch.versions() == {"catalog": 2} and not watch.degraded)
    finally:
        answering.set()
        refresher.stop()


@pytest.mark.django_db(transaction=True)
def test_a_keys_use_recorded_later_is_written_by_the_refresh_thread(monkeypatch):
    """In a gunicorn worker a key's use (at most once a minute) is written by the refresh thread:
    authenticating makes no query in the request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.models import ApiKey
    from core.versions import Refresher

    refresher = Refresher()
    monkeypatch.setattr("core.versions.refresher", refresher)
    monkeypatch.setattr("core.models.refresher", refresher)
    key, _ = ApiKey.issue(name="later", scopes=["route"])
    try:
        with CaptureQueriesContext(connection) as queries:
            key.touch(later=True)
            key.touch(later=True)  # within the minute: nothing more
        assert len(queries) == 0 and key.last_used_at is not None
        wait_for(lambda: ApiKey.objects.get(pk=key.pk).last_used_at == key.last_used_at)
    finally:
        refresher.stop()
