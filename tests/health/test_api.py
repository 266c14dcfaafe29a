"""GET /api/v1/health/models (scope `route`) and GET /api/v1/health (no key): the task queue and
the catalog's age."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.utils import timezone

from catalog.models import SyncRun
from health.checks import run_health_checks
from tests.conftest import ApiClient
from tests.factories import SyncRunFactory
from tests.fake_openrouter import status
from tests.health.conftest import DOWN

pytestmark = pytest.mark.django_db


def test_health_models_needs_a_key_with_the_route_scope(make_api_key):
    assert ApiClient().get("/api/v1/health/models").status_code == HTTPStatus.UNAUTHORIZED
    forbidden = ApiClient(make_api_key("costs:read")).get("/api/v1/health/models")
    assert forbidden.status_code == HTTPStatus.FORBIDDEN and forbidden.json()["code"] == "missing_scope"
    assert ApiClient(make_api_key("route")).get("/api/v1/health/models").json() == []


def test_health_models_gives_the_latest_check_and_reliability_of_each_model(acme, fake_openrouter, keyed, make_api_key):
    run_health_checks(model_ids=["acme/m0", "acme/m1"])
    fake_openrouter.set_endpoints("acme/m1", [DOWN])
    run_health_checks(model_ids=["acme/m1"])
    fake_openrouter.script("/chat/completions", status(503))
    run_health_checks(model_ids=["acme/m0"])

    rows = ApiClient(make_api_key("route")).get("/api/v1/health/models").json()

    assert [r["model_id"] for r in rows] == ["acme/m0", "acme/m1"]
    m0, m1 = rows
    assert (m0["ok"], m0["pinged"], m0["ping_ok"], m0["error_code"]) == (False, True, False, "servererror:503")
    assert (
        m0["consecutive_failures"] == 1 and m0["checks_count"] == 2 and m0["last_error"].startswith("servererror:503")
    )
    assert m0["ping_cost_usd"] is None and m0["last_ok_at"] is not None
    assert (m1["ok"], m1["endpoints_up"], m1["endpoints_total"], m1["best_uptime"]) == (False, 0, 1, 40.0)
    assert m1["pinged"] is False and m1["error_code"] == "no_endpoint_up"
    assert 0 < m1["reliability"] < 0.5


def test_health_models_gives_money_as_strings(acme, fake_openrouter, keyed, make_api_key):
    run_health_checks(model_ids=["acme/m0"])

    row = ApiClient(make_api_key("route")).get("/api/v1/health/models").json()[0]

    assert row["ping_cost_usd"] == "0.0000125" and Decimal(row["ping_cost_usd"]) == Decimal("0.0000125")
    assert (row["ok"], row["ping_ok"], row["reliability"]) == (True, True, 0.5)
    assert isinstance(row["latency_ms"], int)


# --- GET /health ---------------------------------------------------------------------------------


@pytest.fixture
def private_cache(settings, tmp_path):
    """A cache of this test's own: django-q2 keeps its cluster statistics in the cache, and a
    qcluster that a colleague's test runs must not count as our worker."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }


def fresh_catalog(age: timedelta = timedelta(minutes=5)) -> None:
    finished = timezone.now() - age
    SyncRunFactory(started_at=finished, finished_at=finished)  # a successful sync


def a_worker_reports_in() -> None:
    """What a running qcluster writes every guard cycle: its status, in the shared cache, for
    three seconds (django_q.status.Stat.save)."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.signing import SignedPackage
    from django_q.status import Stat, Status

    stat = Status(pid=os.getpid(), cluster_id="test-cluster")
    stat.status, stat.workers, stat.tob = Conf.IDLE, [os.getpid()], timezone.now()
    get_broker().set_stat(Stat.get_key(stat.cluster_id), SignedPackage.dumps(stat, True), 3)


def test_health_reports_no_worker_and_the_oldest_queued_task_as_degraded(anon_client, private_cache):
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    fresh_catalog()
    async_task("health.tasks.run_health_checks_task")
    async_task("health.tasks.run_health_checks_task")
    OrmQ.objects.filter(pk=OrmQ.objects.order_by("id").first().pk).update(lock=timezone.now() - timedelta(minutes=7))

    response = anon_client.get("/api/v1/health")

    assert response.status_code == HTTPStatus.OK  # a missing worker is degraded, not down
    body = response.json()
    queue = body["checks"]["task_queue"]
    assert (queue["status"], queue["workers"], queue["clusters"], queue["broker"]) == ("no_worker", 0, 0, "orm")
    assert queue["queued"] == 2 and 7 * 60 <= queue["oldest_queued_seconds"] < 8 * 60
    assert body["checks"]["catalog"]["status"] == "ok" and body["checks"]["database"]["status"] == "ok"
    assert body["status"] == "degraded"


def test_health_is_ok_with_a_live_worker_and_a_fresh_catalog(anon_client, private_cache):
    fresh_catalog()
    a_worker_reports_in()

    body = anon_client.get("/api/v1/health").json()

    queue = body["checks"]["task_queue"]
    assert (queue["status"], queue["clusters"], queue["workers"], queue["queued"]) == ("ok", 1, 1, 0)
    assert queue["oldest_queued_seconds"] is None
    assert body["status"] == "ok"


def test_a_catalog_older_than_its_schedule_plus_the_grace_is_degraded(anon_client, private_cache, settings):
    settings.LLMHIVE_SYNC_INTERVAL_HOURS = 6
    settings.LLMHIVE_CATALOG_GRACE_MINUTES = 60
    a_worker_reports_in()
    fresh_catalog(age=timedelta(hours=6, minutes=50))

    body = anon_client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["checks"]["catalog"]["stale_after_seconds"] == 7 * 3600

    SyncRun.objects.all().delete()
    fresh_catalog(age=timedelta(hours=7, minutes=10))
    body = anon_client.get("/api/v1/health").json()
    catalog = body["checks"]["catalog"]
    assert (catalog["status"], body["status"]) == ("stale", "degraded")
    assert catalog["age_seconds"] >= 7 * 3600 + 600 and catalog["last_run"]["status"] == "succeeded"


def test_a_catalog_never_synced_is_degraded(anon_client, private_cache):
    a_worker_reports_in()

    body = anon_client.get("/api/v1/health").json()

    assert body["checks"]["catalog"]["status"] == "stale" and body["checks"]["catalog"]["age_seconds"] is None
    assert body["status"] == "degraded"
