"""Each gunicorn worker builds its routing snapshot as it starts (gunicorn.conf.py's
`post_worker_init`, routing.snapshot.prewarm): no request waits for it, and a worker that has
routed nothing yet still answers from memory while the database is away. A worker started with
the database away starts anyway, says why in its log, and routes once the database is back."""

from __future__ import annotations

import time

import httpx
import pytest
from django.db import connection

from routing.snapshot import current_snapshot, holder, prewarm
from tests.factories import ApiKeyFactory, CatalogModelFactory, RoleFactory
from tests.faults.tcp_proxy import TcpProxy
from tests.servers import gunicorn, snapshots_built

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def coder():
    CatalogModelFactory(id="acme/first", supports_tools=True)
    CatalogModelFactory(id="acme/second", supports_tools=True)
    RoleFactory(slug="coder", required_capabilities=["supports_tools"])
    return ApiKeyFactory(name="prewarm", scopes=["route", "metrics:read"]).raw_key


def test_every_worker_holds_its_snapshot_before_its_first_request(coder):
    with gunicorn(workers=2) as base:
        # Only GET /metrics meanwhile (it builds none), until both workers have started.
        deadline = time.monotonic() + 20
        while (before := snapshots_built(base, coder)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        answer = httpx.post(
            f"{base}/api/v1/route", json={"role": "coder"}, headers={"Authorization": f"Bearer {coder}"}, timeout=10
        )
        after = snapshots_built(base, coder)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] in {"acme/first", "acme/second"}
    assert (before, after) == (2, 2)


def test_with_prewarm_off_a_worker_builds_its_snapshot_in_its_first_route_request(coder):
    with gunicorn(workers=2, LLMHIVE_ROUTING_PREWARM="false") as base:
        time.sleep(1)  # both workers started
        before = snapshots_built(base, coder)
        answer = httpx.post(
            f"{base}/api/v1/route", json={"role": "coder"}, headers={"Authorization": f"Bearer {coder}"}, timeout=10
        )
        after = snapshots_built(base, coder)
    assert answer.status_code == 200, answer.text
    assert (before, after) == (0, 1)


def test_a_pool_that_only_takes_usage_builds_none(coder, settings):
    holder.clear()
    settings.LLMHIVE_ROUTING_PREWARM = False
    assert prewarm() is False and not holder.holds()
    settings.LLMHIVE_ROUTING_PREWARM = True
    assert prewarm() is True and holder.holds()
    assert "acme/first" in current_snapshot().models


def test_a_worker_started_while_the_database_is_away_routes_once_it_is_back(coder):
    if connection.vendor != "postgresql":
        pytest.skip("cutting the database needs PostgreSQL over TCP (set DATABASE_URL)")
    db = connection.settings_dict
    auth = {"Authorization": f"Bearer {coder}"}
    with TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)) as proxy:
        url = f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"
        proxy.cut()
        with gunicorn(workers=1, DATABASE_URL=url, LLMHIVE_SNAPSHOT_CHECK_SECONDS="0.5") as base:
            away = httpx.post(f"{base}/api/v1/route", json={"role": "coder"}, headers=auth, timeout=10)
            proxy.restore()
            restored = time.monotonic()
            while True:
                back = httpx.post(f"{base}/api/v1/route", json={"role": "coder"}, headers=auth, timeout=10)
                if back.status_code == 200 or time.monotonic() > restored + 5:
                    break
                time.sleep(0.05)
            took = time.monotonic() - restored
            log = base.output()
    # With no snapshot and no database, nothing to route from: a 503 to retry, not a 500.
    assert away.status_code == 503, away.text
    assert away.json()["code"] == "unavailable" and away.headers["Retry-After"].isdigit()
    assert "routing snapshot not built as the worker started: the database is unreachable" in log
    assert back.status_code == 200, back.text
    assert back.json()["degraded"] is False and back.json()["model"] in {"acme/first", "acme/second"}
    assert took < 2.0, took
