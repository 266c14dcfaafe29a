"""Runs a dead process left "running": how the catalog lock recognises a dead holder (its
process gone on this host, or no heartbeat until its lock expired) and what the next run does."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import AlertKind, SyncRun, SyncStatus
from catalog.sync import sync_catalog
from core.locks import HOST, LockBusy, hold_lock
from core.models import Alert, Lock
from tests.catalog.test_sync import ten_models

pytestmark = pytest.mark.django_db


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def left_running(*, host: str, pid: int, expires_in: timedelta, started_ago: timedelta = timedelta(0)) -> SyncRun:
    run = SyncRun.objects.create(started_at=timezone.now() - started_ago)
    Lock.objects.update_or_create(
        name="catalog",
        defaults={
            "holder": f"sync run #{run.pk} (deadbeef)",
            "host": host,
            "pid": pid,
            "locked_until": timezone.now() + expires_in,
        },
    )
    return run


def test_a_holder_whose_process_is_gone_on_this_host_is_taken_over_at_once(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    old = left_running(host=HOST, pid=dead_pid(), expires_in=timedelta(minutes=10))

    run = sync_catalog()

    old.refresh_from_db()
    assert run.status == SyncStatus.SUCCEEDED
    assert old.status == SyncStatus.ABANDONED
    assert "no longer exists" in old.error and f"run #{run.pk}" in old.error
    assert Alert.objects.open().filter(kind=AlertKind.RUN_ABANDONED).count() == 1


def test_a_holder_on_another_host_is_dead_once_its_heartbeat_lapses(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    old = left_running(host="elsewhere", pid=1, expires_in=-timedelta(seconds=5))

    run = sync_catalog()

    old.refresh_from_db()
    assert run.status == SyncStatus.SUCCEEDED
    assert old.status == SyncStatus.ABANDONED and "expired" in old.error
    [recorded] = run.details["abandoned_runs"]
    assert recorded["run"] == old.pk and "expired" in recorded["reason"]


def test_a_live_holder_still_skips_the_run_and_is_left_alone(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    old = left_running(host="elsewhere", pid=1, expires_in=timedelta(minutes=10))

    run = sync_catalog()

    old.refresh_from_db()
    assert run.status == SyncStatus.SKIPPED and "another catalog run is in progress" in run.error
    assert old.status == SyncStatus.RUNNING
    assert not Alert.objects.filter(kind=AlertKind.RUN_ABANDONED).exists()


def test_a_run_left_running_without_the_lock_is_abandoned_once_older_than_the_lock(fake_openrouter, settings):
    fake_openrouter.set_models(ten_models())
    stale = SyncRun.objects.create(
        started_at=timezone.now() - timedelta(seconds=settings.LLMHIVE_SYNC_LOCK_SECONDS + 1)
    )
    recent = SyncRun.objects.create()  # another run that is about to take the lock: not ours to judge

    run = sync_catalog()

    stale.refresh_from_db()
    recent.refresh_from_db()
    assert run.status == SyncStatus.SUCCEEDED
    assert stale.status == SyncStatus.ABANDONED and recent.status == SyncStatus.RUNNING


def test_the_heartbeat_pushes_the_lock_expiry_ahead():
    with hold_lock("catalog", holder="test", ttl_seconds=60) as lock:
        Lock.objects.filter(name="catalog").update(locked_until=timezone.now() + timedelta(seconds=1))
        lock.refresh(force=True)
        row = Lock.objects.get(name="catalog")
        assert row.locked_until > timezone.now() + timedelta(seconds=50)
        assert (row.host, row.pid) == (HOST, os.getpid())
        with pytest.raises(LockBusy):  # our own process is alive: never taken for dead
            with hold_lock("catalog", holder="other", ttl_seconds=60):
                pass
    assert Lock.objects.get(name="catalog").holder == ""
