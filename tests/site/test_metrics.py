"""GET /api/v1/metrics: Prometheus' text format for keys with `metrics:read`, and figures that are
exact whichever gunicorn worker answers the scrape."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from catalog.sync import sync_catalog
from core.models import Scope
from tests.factories import CatalogModelFactory, RoleFactory, SyncRunFactory, ingest, usage_event
from tests.fake_openrouter import load_snapshot, requires_recorded
from tests.servers import ROOT, gunicorn

URL = "/api/v1/metrics"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}; fails on anything the official parser refuses."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def by_label(figures: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (sample, labels), value in figures.items() if sample == name}


def routed_setup() -> None:
    for n in range(3):
        CatalogModelFactory(id=f"acme/model-{n}")
    RoleFactory(slug="coder")


# What /route answers, and how each is counted.
CALLS = {
    "ok": ({"role": "coder"}, 200),
    "invalid": ({"role": ""}, 422),
    "no_eligible_model": ({"role": "coder", "min_context_length": 10**9}, 422),
    "unknown_role": ({"role": "nobody"}, 404),
    "unknown_category": ({"role": "coder", "category": "cooking"}, 422),
}


# --- In one process (the README's runserver) -------------------------------------------------------


@pytest.mark.django_db
def test_it_needs_a_key_with_the_metrics_scope(anon_client, make_api_key, client):
    response = anon_client.get(URL)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"]

    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {make_api_key(Scope.ROUTE, Scope.COSTS_READ)}"
    response = client.get(URL)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["code"] == "missing_scope"

    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {make_api_key(Scope.METRICS_READ)}"
    response = client.get(URL)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "llmhive_route_decisions",
        "llmhive_route_decision_seconds",
        "llmhive_route_answers_kept",
        "llmhive_sync_runs",
        "llmhive_usage_events",
        "llmhive_usage_api_events",
        "llmhive_task_queue_oldest_seconds",
    } <= names


def test_the_api_description_says_it_answers_text():
    from llmhive_site.api import api

    operation = api.get_openapi_schema()["paths"][URL]["get"]
    assert list(operation["responses"][200]["content"]) == ["text/plain"]
    assert operation["security"] == [{"ApiKeyAuth": []}]


@pytest.mark.django_db
def test_it_counts_route_calls_by_result_in_one_process(api_client):
    routed_setup()
    before = samples(api_client.get(URL).content.decode())
    for result, (body, status) in CALLS.items():
        for _ in range(2):
            assert api_client.post_json("/api/v1/route", body).status_code == status, result
    assert api_client.post_json("/api/v1/route", {"role": "coder"}, HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    after = samples(api_client.get(URL).content.decode())

    def delta(name: str, label: str) -> dict[str, float]:
        old = by_label(before, name, label)
        return {k: v - old.get(k, 0) for k, v in by_label(after, name, label).items() if v - old.get(k, 0)}

    assert delta("llmhive_route_decisions_total", "result") == {
        "ok": 2,
        "invalid": 2,
        "no_eligible_model": 2,
        "unknown_role": 2,
        "unknown_category": 2,
        "unauthorized": 1,
    }
    count = ("llmhive_route_decision_seconds_count", ())
    assert after[count] - before[count] == 11
    # The second "ok" call was the first one's request again: answered from the kept answer.
    kept = ("llmhive_route_answers_kept_total", ())
    assert after[kept] - before.get(kept, 0) == 1
    assert 0 <= after[("llmhive_snapshot_age_seconds", ())] < 5


@pytest.mark.django_db
def test_syncs_usage_and_the_queue_come_from_the_database(api_client):
    SyncRunFactory.create_batch(3)
    SyncRunFactory(status="failed")
    SyncRunFactory(status="running")  # not finished: not counted
    SyncRunFactory(kind="research", status="skipped")
    ingest(4)
    ingest(usage_event(occurred_at=timezone.now() - timedelta(days=40)))  # an older day's rollup
    figures = samples(api_client.get(URL).content.decode())
    runs = {labels: value for (name, labels), value in figures.items() if name == "llmhive_sync_runs_total"}
    assert runs == {
        (("kind", "sync"), ("result", "succeeded")): 3,
        (("kind", "sync"), ("result", "failed")): 1,
        (("kind", "research"), ("result", "skipped")): 1,
    }
    assert figures[("llmhive_usage_events_total", ())] == 5
    assert figures[("llmhive_task_queue_oldest_seconds", ())] == 0

    async_task("math.floor", 1.5)  # waits in the ORM broker: no worker runs in this test
    time.sleep(1.1)
    age = samples(api_client.get(URL).content.decode())[("llmhive_task_queue_oldest_seconds", ())]
    assert 1 <= age < 30


@pytest.mark.django_db
def test_cooldown_trips_and_the_models_out_come_from_the_database(api_client):
    """Three retryable failures within the window trip a model (routing.cooldowns): the trip is
    counted, and the model is out under the default policy until its time is up."""
    CatalogModelFactory(id="acme/flaky")
    figures = samples(api_client.get(URL).content.decode())
    assert figures[("llmhive_cooldown_trips_total", ())] == 0
    assert by_label(figures, "llmhive_cooldowns_open", "role") == {}

    now = timezone.now()
    errors = ["rate_limited", "timeout", "provider_error"]
    ingest(*[usage_event(model="acme/flaky", success=False, error=e, occurred_at=now) for e in errors])

    figures = samples(api_client.get(URL).content.decode())
    assert figures[("llmhive_cooldown_trips_total", ())] == 1
    assert by_label(figures, "llmhive_cooldowns_open", "role") == {"": 1}


# --- Under gunicorn, two workers -----------------------------------------------------------------


def call_concurrently(calls: list, threads: int = 4) -> list:
    """Run the callables from several threads at once, so that both workers answer."""
    results: list = [None] * len(calls)
    cursor = iter(range(len(calls)))
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            results[index] = calls[index]()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


@requires_recorded
@pytest.mark.django_db(transaction=True)
def test_counts_are_exact_across_two_gunicorn_workers_whichever_answers(make_api_key, tmp_path: Path):
    routed_setup()
    key = make_api_key(Scope.ROUTE, Scope.USAGE_WRITE, Scope.METRICS_READ)
    headers = {"Authorization": f"Bearer {key}"}
    plan = {"ok": 20, "invalid": 8, "no_eligible_model": 6, "unknown_role": 4}
    # The default directory, as deployed: one per server under var/metrics. One left by a server
    # that was killed (its pid is beyond any pid Linux gives) is swept when the next one starts.
    parent = ROOT / "var" / "metrics"
    left_behind = parent / "gunicorn-999999999"
    left_behind.mkdir(parents=True, exist_ok=True)
    (left_behind / "counter_1.db").write_bytes(b"")

    with gunicorn(workers=2) as base:
        metrics_dir = parent / f"gunicorn-{base.pid}"
        assert metrics_dir.is_dir()
        assert not left_behind.exists()

        def route(body: dict, auth: dict = headers):
            return lambda: httpx.post(f"{base}/api/v1/route", json=body, headers=auth, timeout=10).status_code

        def scrape():
            response = httpx.get(f"{base}{URL}", headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            return samples(response.text)

        calls = [route(CALLS[result][0]) for result, n in plan.items() for _ in range(n)]
        calls += [route({"role": "coder"}, {"Authorization": "Bearer lh_wrong"}) for _ in range(2)]
        statuses = Counter(call_concurrently(calls))
        assert statuses == {200: 20, 422: 14, 404: 4, 401: 2}
        expected = {**plan, "unauthorized": 2}

        def check(figures: dict) -> None:
            counted = {k: v for k, v in by_label(figures, "llmhive_route_decisions_total", "result").items() if v}
            assert counted == expected
            assert figures[("llmhive_route_decision_seconds_count", ())] == len(calls)
            assert figures[("llmhive_route_decision_seconds_bucket", (("le", "+Inf"),))] == len(calls)
            assert 0 <= figures[("llmhive_snapshot_age_seconds", ())] < 30

        for figures in call_concurrently([scrape] * 8, threads=2):
            check(figures)
        # The workers time their garbage collector's pauses (core.heap): each froze its heap with
        # a full collection when it loaded the application.
        assert figures[("llmhive_gc_pause_seconds_count", (("generation", "2"),))] >= 2
        # Each worker that answered /route built its first snapshot, and timed it.
        assert figures[("llmhive_snapshot_rebuild_seconds_count", (("change", "first"),))] >= 1
        assert figures[("llmhive_snapshot_rebuild_seconds_sum", (("change", "first"),))] > 0
        # Every worker wrote its own file: the scrape summed at least two processes.
        assert len({p.name for p in metrics_dir.glob("counter_*.db")}) >= 2

        # A usage batch, then the same batch again (all duplicates); a sync run by another
        # process (here the test's, as the django-q2 worker would), one that fails and one that
        # succeeds.
        events = [{**usage_event(), "occurred_at": timezone.now().isoformat()} for _ in range(3)]
        for _ in range(2):
            response = httpx.post(f"{base}/api/v1/usage", json={"events": events}, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
        with pytest.raises(CommandError, match="cannot read"):
            call_command("sync_catalog", "--from-file", str(tmp_path / "missing.json"), "--no-progress")
        saved = tmp_path / "models.json"
        saved.write_text(json.dumps({"data": load_snapshot("2026-01-29")["data"][:5]}))
        assert sync_catalog(from_file=saved, force=True).status == "succeeded"

        # A worker killed: its counts stay in the totals, and the new worker serves scrapes too.
        victim = base.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(set(base.worker_pids()) - {victim}) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)

        for figures in call_concurrently([scrape] * 8, threads=2):
            check(figures)
            assert figures[("llmhive_usage_events_total", ())] == 3
            assert by_label(figures, "llmhive_usage_api_events_total", "result") == {"stored": 3, "duplicate": 3}
            assert by_label(figures, "llmhive_sync_runs_total", "result") == {"failed": 1, "succeeded": 1}

    assert not metrics_dir.exists()  # removed when the server stopped
