"""A sync killed mid-run (SIGKILL: no `finally`, no cleanup) leaves its run "running" and the
catalog lock held. The next sync recognises the dead holder, marks its run abandoned, runs, and
says so, instead of being skipped until the lock expires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from catalog.models import AlertKind, CatalogModel, SyncRun, SyncStatus
from catalog.sync import sync_catalog
from core.models import Alert, Lock
from tests.catalog.test_sync import ten_models
from tests.servers import ROOT, project_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sync_after_a_killed_one_runs_and_marks_it_abandoned(fake_openrouter, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the killed process must share the test database (PostgreSQL)")
    fake_openrouter.set_models(ten_models())
    fake_openrouter.handler_delay = 60  # the first sync hangs in its fetch, holding the lock
    process = subprocess.Popen(
        [sys.executable, "manage.py", "sync_catalog", "--no-progress"],
        cwd=ROOT,
        env=project_env(OPENROUTER_BASE_URL=fake_openrouter.base_url, LLMHIVE_OPENROUTER_TIMEOUT="120"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: fake_openrouter.requests_to("/models"), 30, "the subprocess's fetch")
        lock = Lock.objects.get(name="catalog")
        assert lock.pid == process.pid and lock.holder.startswith("sync run #")
        killed_run = SyncRun.objects.get(status=SyncStatus.RUNNING)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    killed_at = time.monotonic()
    fake_openrouter.handler_delay = 0

    run = sync_catalog()
    took = time.monotonic() - killed_at

    killed_run.refresh_from_db()
    print(
        f"\nkilled sync: run #{killed_run.pk} (pid {process.pid}) SIGKILLed mid-fetch; the next sync "
        f"ran {took:.2f} s later: {run.status}, lock TTL {settings.LLMHIVE_SYNC_LOCK_SECONDS} s not waited for"
    )
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert CatalogModel.objects.count() == 10
    assert killed_run.status == SyncStatus.ABANDONED and killed_run.finished_at is not None
    assert f"pid {process.pid}" in killed_run.error and "no longer exists" in killed_run.error
    assert run.details["abandoned_runs"][0]["run"] == killed_run.pk
    assert f"marked abandoned: run #{killed_run.pk}" in run.summary()
    alert = Alert.objects.open().get(kind=AlertKind.RUN_ABANDONED)
    assert f"#{killed_run.pk}" in alert.message and f"#{run.pk}" in alert.message
    lock = Lock.objects.get(name="catalog")
    assert lock.holder == "" and lock.pid is None
