"""Schedules: created idempotently, and fired by a real django-q2 cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from catalog.models import CatalogModel, SyncRun, SyncStatus, SyncTrigger
from llmhive_site.schedules import PREFIX
from tests.servers import database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_setup_schedules_is_idempotent_and_keeps_the_timetable():
    first = call_command("setup_schedules")
    sync = Schedule.objects.get(name=f"{PREFIX}catalog sync")
    next_run = sync.next_run
    second = call_command("setup_schedules")

    assert "4 created" in first
    assert "0 created, 0 updated, 4 unchanged" in second
    assert Schedule.objects.filter(name__startswith=PREFIX).count() == 4
    sync.refresh_from_db()
    assert sync.next_run == next_run
    assert sync.func == "catalog.tasks.sync_catalog_task" and sync.minutes == 360


@pytest.mark.django_db
def test_setup_schedules_repairs_an_edited_schedule_and_removes_stale_ones():
    call_command("setup_schedules")
    Schedule.objects.filter(name=f"{PREFIX}catalog sync").update(minutes=5)
    Schedule.objects.create(name=f"{PREFIX}retired job", func="catalog.tasks.sync_catalog_task")

    summary = call_command("setup_schedules")

    assert "1 updated" in summary and "1 removed" in summary
    assert Schedule.objects.get(name=f"{PREFIX}catalog sync").minutes == 360


@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_fires_the_sync_schedule(fake_openrouter):
    fake_openrouter.set_models(
        [
            {
                "id": "acme/scheduled-model",
                "name": "Scheduled",
                "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                "supported_parameters": [],
            }
        ]
    )
    call_command("setup_schedules")
    Schedule.objects.filter(name=f"{PREFIX}catalog sync").update(next_run=timezone.now() - timedelta(seconds=5))
    Schedule.objects.filter(name=f"{PREFIX}catalog research").update(next_run=timezone.now() + timedelta(days=1))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmhive_site.settings",
        "DATABASE_URL": database_url(),
        "OPENROUTER_BASE_URL": fake_openrouter.base_url,
        "LLMHIVE_Q_GUARD_CYCLE": "30",  # run the scheduler at start-up
        "LLMHIVE_Q_POLL": "0.2",
        "LLMHIVE_Q_WORKERS": "1",
        "LLMHIVE_REDIS_URL": "",
    }
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        run = None
        while time.monotonic() < deadline and cluster.poll() is None:
            run = SyncRun.objects.filter(trigger=SyncTrigger.SCHEDULE).exclude(status=SyncStatus.RUNNING).first()
            if run:
                break
            time.sleep(0.5)
    finally:
        # SIGTERM to the cluster's main process only: it stops its workers itself. Signalling the
        # whole group makes every child handle the signal too, and the stop hangs ~30 s.
        os.kill(cluster.pid, signal.SIGTERM)
        try:
            output = cluster.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            output = cluster.communicate()[0].decode(errors="replace")

    assert run is not None, f"the schedule did not run; qcluster said:\n{output[-3000:]}"
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert CatalogModel.objects.filter(id="acme/scheduled-model").exists()
    assert Schedule.objects.get(name=f"{PREFIX}catalog sync").next_run > timezone.now()
    assert settings.Q_CLUSTER.get("orm") == "default"


@pytest.mark.django_db
def test_the_cost_reconciliation_runs_hourly_and_skips_in_one_line_without_a_key(settings, caplog):
    from django.utils.module_loading import import_string

    settings.OPENROUTER_API_KEY = ""
    call_command("setup_schedules")
    schedule = Schedule.objects.get(name=f"{PREFIX}cost reconciliation")

    result = import_string(schedule.func)()

    assert schedule.schedule_type == Schedule.HOURLY and schedule.repeats == -1
    assert result == (
        "cost reconciliation skipped: no OpenRouter key is configured (OPENROUTER_API_KEY): nothing can be reconciled"
    )
    assert "cost reconciliation skipped" in caplog.text
