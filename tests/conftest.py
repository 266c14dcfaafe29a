from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client

from catalog.models import Category, CategoryRanking
from core.models import Scope
from tests.factories import ApiKeyFactory, CatalogModelFactory, CategoryFactory, RoleFactory, SyncRunFactory

pytest_plugins = ["tests.fake_openrouter"]


@pytest.fixture(scope="session", autouse=True)
def stop_refresher_at_the_end(django_db_setup, django_db_blocker):
    """The background refresher keeps a database connection between refreshes: closed before
    the test database is dropped (PostgreSQL refuses to drop a database in use)."""
    from core.versions import refresher

    yield
    refresher.stop()


@pytest.fixture(autouse=True)
def fresh_routing_snapshot():
    """Each test starts from no routing snapshot, catalog prices, cooldown policies or category
    sightings, and reloads the budget state. Production never needs this: a process reads
    only new memory rows on a stats change (routing.snapshot.OutcomeBook), which is right as
    committed rows are never removed but by a rebuild; a test's rolled-back rows are."""
    from catalog.categories import sightings
    from core.alerts import forget_raised_once
    from costs.budgets import budget_book
    from costs.pricing import catalog_prices
    from routing.cooldowns import forget_policies
    from routing.snapshot import holder

    holder.clear()
    budget_book.invalidate()
    catalog_prices.clear()
    forget_policies()
    sightings.clear()
    forget_raised_once()
    yield


@pytest.fixture
def not_at_midnight():
    """For tests on the real clock that must not straddle UTC midnight (a day budget's window
    ends there: e.g. one whose last cent goes within seconds, 8.64 s to go at $99.99/day):
    started in the last 15 seconds of a UTC day, wait for the new day instead."""
    now = datetime.now(UTC)
    left = (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()
    if left < 15:
        time.sleep(left + 0.5)


class ApiClient(Client):
    """A test client that sends a bearer key and JSON."""

    def __init__(self, raw_key: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.raw_key = raw_key

    def _base_environ(self, **request):
        environ = super()._base_environ(**request)
        if self.raw_key and "HTTP_AUTHORIZATION" not in request:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {self.raw_key}"
        return environ

    def post_json(self, path: str, data, **kwargs):
        return self.post(path, data=data, content_type="application/json", **kwargs)


@pytest.fixture
def make_api_key(db):
    """make_api_key("route", "catalog:sync") -> the raw key."""

    def make(*scopes: str, name: str = "test key") -> str:
        return ApiKeyFactory(name=name, scopes=list(scopes) or [Scope.ROUTE]).raw_key

    return make


@pytest.fixture
def api_client(make_api_key) -> ApiClient:
    """A client whose key has every scope."""
    return ApiClient(make_api_key(*Scope.values))


@pytest.fixture
def anon_client() -> ApiClient:
    return ApiClient()


@pytest.fixture
def ranked_trio(db):
    """Three models ranked in programming, dear first: one cheap for a long prompt, one cheap per
    token, one dear; tools on all but a model named "no-tools"; a role `coder`."""
    CategoryFactory(slug="programming")
    models = {
        name: CatalogModelFactory(
            id=f"acme/{name}",
            price_prompt=Decimal(prompt),
            price_completion=Decimal(completion),
            supports_tools=name != "no-tools",
        )
        for name, prompt, completion in (
            ("prompt-cheap", "0.0000001", "0.00004"),
            ("per-token-cheap", "0.000002", "0.000002"),
            ("dear", "0.00001", "0.00004"),
        )
    }
    category = Category.objects.get(slug="programming")
    run = SyncRunFactory(kind="research")
    for rank, key in enumerate(["dear", "per-token-cheap", "prompt-cheap"], start=1):
        CategoryRanking.objects.create(
            category=category, model=models[key], rank=rank, run=run, observed_at=run.started_at
        )
    RoleFactory(slug="coder")
    return models
