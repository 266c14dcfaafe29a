from __future__ import annotations

import pytest
from django.test import Client

from core.models import Scope
from tests.factories import ApiKeyFactory

pytest_plugins = ["tests.fake_openrouter"]


@pytest.fixture(autouse=True)
def fresh_routing_snapshot():
    """Each test starts from no routing snapshot, catalog prices, cooldown policies or category
    sightings, and reloads the budget state. Production never needs this: a process reads
    only new memory rows on a stats change (routing.snapshot.OutcomeBook), which is right as
    committed rows are never removed but by a rebuild; a test's rolled-back rows are."""
    from catalog.categories import sightings
    from costs.budgets import budget_book
    from costs.pricing import catalog_prices
    from routing.cooldowns import forget_policies
    from routing.snapshot import holder

    holder.clear()
    budget_book.invalidate()
    catalog_prices.clear()
    forget_policies()
    sightings.clear()
    yield


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
