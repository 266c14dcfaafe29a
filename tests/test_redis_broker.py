"""With LLMHIVE_REDIS_URL set, django-q2 uses Redis as its broker: a task queued by one process
is run by a real qcluster in another (the Redis on 127.0.0.1:6379, a database of its own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from catalog.models import CatalogModel, SyncRun, SyncStatus, SyncTrigger
from tests.servers import database_url

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("LLMHIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_url():
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


def test_a_task_queued_on_redis_is_run_by_a_qcluster(fake_openrouter, redis_url):
    fake_openrouter.set_models(
        [
            {
                "id": "acme/via-redis",
                "name": "Via Redis",
                "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                "supported_parameters": [],
            }
        ]
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmhive_site.settings",
        "DATABASE_URL": database_url(),
        "OPENROUTER_BASE_URL": fake_openrouter.base_url,
        "LLMHIVE_REDIS_URL": redis_url,
        "LLMHIVE_Q_NAME": f"llmhive-test-{uuid.uuid4().hex[:8]}",  # a queue of its own
        "LLMHIVE_Q_WORKERS": "1",
    }
    broker = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings; from django_q.brokers import get_broker; "
            "from catalog.tasks import queue_catalog_job; "
            "print(type(get_broker()).__name__, queue_catalog_job('sync', trigger='api'))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broker.returncode == 0, broker.stderr
    assert broker.stdout.split()[0] == "Redis"
    assert not SyncRun.objects.exists()  # queued, not run: nothing consumes that queue yet

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
        while time.monotonic() < deadline and cluster.poll() is None and run is None:
            run = SyncRun.objects.filter(trigger=SyncTrigger.API).exclude(status=SyncStatus.RUNNING).first()
            time.sleep(0.3)
    finally:
        cluster.send_signal(signal.SIGTERM)  # the main process stops its workers
        try:
            output = cluster.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            output = cluster.communicate()[0].decode(errors="replace")

    assert run is not None, f"the queued sync did not run; qcluster said:\n{output[-3000:]}"
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert CatalogModel.objects.filter(id="acme/via-redis").exists()
