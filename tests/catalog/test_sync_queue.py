"""POST /catalog/sync queues at most one run of each kind: while one is queued or running, the
answer names it (never a growing queue); once it has ended, the next post queues a new one."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from catalog.models import SyncKind, SyncRun, SyncStatus, SyncTrigger
from core.models import Lock
from tests.conftest import ApiClient
from tests.factories import ApiKeyFactory
from tests.servers import gunicorn

POSTS = 16


def queued_tasks() -> list[dict]:
    return [q.task for q in OrmQ.objects.order_by("id")]


def run_queued_task_like_a_worker() -> str:
    """What a django-q worker does with the queued job: call its function, then drop it."""
    [queued] = OrmQ.objects.all()
    task = queued.task
    result = import_string(task["func"])(*task["args"], **task["kwargs"])
    queued.delete()
    return result


@pytest.fixture
def syncer(make_api_key) -> ApiClient:
    return ApiClient(make_api_key("catalog:sync"))


@pytest.mark.django_db
def test_many_posts_queue_one_job_and_each_answer_names_it(syncer, fake_openrouter, settings):
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1
    answers = [syncer.post_json("/api/v1/catalog/sync", {}) for _ in range(POSTS)]

    assert {a.status_code for a in answers} == {202}
    first, *repeats = [a.json() for a in answers]
    assert first["already_queued"] is False and first["status"] == "queued" and first["task_id"]
    assert all(r["already_queued"] and r["task_id"] == first["task_id"] for r in repeats)
    assert len(queued_tasks()) == 1
    # A research run is another kind: it gets its own single job.
    research = syncer.post_json("/api/v1/catalog/sync", {"kind": "research"}).json()
    assert research["already_queued"] is False and research["task_id"] != first["task_id"]
    [research_job] = [q for q in OrmQ.objects.all() if q.task["func"] == "catalog.tasks.research_catalog_task"]
    research_job.delete()

    fake_openrouter.set_models([])  # the run ends (refused: an empty list), which is all we need
    run_queued_task_like_a_worker()
    assert SyncRun.objects.get(kind=SyncKind.SYNC).status != SyncStatus.RUNNING

    again = syncer.post_json("/api/v1/catalog/sync", {}).json()
    assert again["already_queued"] is False and again["task_id"] != first["task_id"]
    assert len(queued_tasks()) == 1


@pytest.mark.django_db
def test_a_run_in_progress_answers_instead_of_a_new_job(syncer):
    running = SyncRun.objects.create(kind=SyncKind.SYNC, trigger=SyncTrigger.SCHEDULE, status=SyncStatus.RUNNING)

    answer = syncer.post_json("/api/v1/catalog/sync", {}).json()
    assert answer == {"task_id": "", "kind": "sync", "status": "running", "already_queued": True, "run_id": running.pk}
    assert queued_tasks() == []

    # A run left "running" by a killed process long ago does not block a new one.
    SyncRun.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(days=1))
    assert syncer.post_json("/api/v1/catalog/sync", {}).json()["already_queued"] is False
    assert len(queued_tasks()) == 1


@pytest.mark.django_db
def test_a_stale_claim_lapses(syncer, settings):
    settings.LLMHIVE_SYNC_LOCK_SECONDS = 60
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 90}
    first = syncer.post_json("/api/v1/catalog/sync", {}).json()
    Lock.objects.filter(name="catalog queue:sync").update(locked_until=timezone.now() - timedelta(seconds=1))
    second = syncer.post_json("/api/v1/catalog/sync", {}).json()
    assert second["already_queued"] is False and second["task_id"] != first["task_id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_to_two_gunicorn_workers_queue_one_job():
    key = ApiKeyFactory(name="syncer", scopes=["catalog:sync"]).raw_key
    with gunicorn(workers=2, threads=4) as base:
        barrier = threading.Barrier(POSTS)
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def post() -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
                barrier.wait()
                response = http.post("/api/v1/catalog/sync", json={})
                with lock:
                    answers.append(response)

        threads = [threading.Thread(target=post) for _ in range(POSTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert [a.status_code for a in answers] == [202] * POSTS, [a.text for a in answers if a.status_code != 202]
    bodies = [a.json() for a in answers]
    assert sum(not b["already_queued"] for b in bodies) == 1
    assert len({b["task_id"] for b in bodies}) == 1
    assert len(queued_tasks()) == 1
    print(f"\n{POSTS} concurrent posts over 2 workers: {len(queued_tasks())} job queued")
