"""Discovered categories: from OpenRouter's documented list (research), from /route requests and
from usage reports; proposed, alerted once, adopted or retired in the admin."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog import categories
from catalog.categories import record_categories, sightings
from catalog.models import AlertKind, Category, CategorySource, CategoryState, SyncStatus
from catalog.research import discover_categories, research_catalog
from core.models import Alert
from openrouter.types import DOCUMENTED_CATEGORIES
from tests.conftest import ApiClient
from tests.factories import CatalogModelFactory, RoleFactory
from tests.fake_openrouter import openapi_document, requires_recorded

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:catalog_category_changelist"


@pytest.fixture(autouse=True)
def fresh_sightings():
    """The per-process memory of sightings outlives a test's rolled-back rows."""
    sightings.clear()
    yield
    sightings.clear()


@pytest.fixture
def coder(db):
    CatalogModelFactory(
        id="acme/model",
        price_prompt=Decimal("0.000001"),
        price_completion=Decimal("0.000002"),
        supports_tools=True,
    )
    return RoleFactory(slug="coder")


def route(client, category: str):
    return client.post_json("/api/v1/route", {"role": "coder", "category": category})


def category_queries(context: CaptureQueriesContext) -> list[str]:
    table = Category._meta.db_table
    return [q["sql"] for q in context.captured_queries if table in q["sql"]]


def category_writes(context: CaptureQueriesContext) -> list[str]:
    return [sql for sql in category_queries(context) if sql.startswith("INSERT")]


def new_category_alerts(slug: str) -> list[Alert]:
    return list(Alert.objects.filter(kind=AlertKind.NEW_CATEGORY, key=f"{AlertKind.NEW_CATEGORY}:{slug}"))


def test_an_unknown_category_asked_of_route_is_proposed_and_alerted_once(api_client, coder):
    first = route(api_client, "legal/contracts")
    again = route(api_client, "legal/contracts")

    assert first.status_code == again.status_code == 422
    assert first.json()["code"] == "unknown_category"
    proposed = Category.objects.get(slug="legal/contracts")
    assert (proposed.state, proposed.source, proposed.active) == (CategoryState.PROPOSED, CategorySource.ROUTE, False)
    assert proposed.name == "Legal: Contracts"
    assert proposed.first_seen_at is not None and proposed.last_seen_at == proposed.first_seen_at
    # The second call came within the minute: not written again.
    assert proposed.seen_count == 1
    [alert] = new_category_alerts("legal/contracts")
    assert alert.times == 1 and "legal/contracts" in alert.message


def test_a_proposed_category_is_counted_again_after_a_minute_and_never_alerted_twice(api_client, coder, monkeypatch):
    route(api_client, "gardening")
    monkeypatch.setattr(categories, "RECORD_INTERVAL_SECONDS", 0.0)

    route(api_client, "gardening")
    route(api_client, "gardening")

    proposed = Category.objects.get(slug="gardening")
    assert proposed.seen_count == 3 and proposed.last_seen_at > proposed.first_seen_at
    assert len(new_category_alerts("gardening")) == 1


def test_a_known_category_costs_route_no_category_query(api_client, coder):
    route(api_client, "programming")  # builds the routing snapshot

    with CaptureQueriesContext(connection) as context:
        response = route(api_client, "programming")

    assert response.status_code == 200, response.content
    assert category_queries(context) == []


def test_a_retired_category_is_refused_but_never_proposed_again_and_then_costs_no_query(api_client, coder):
    Category.objects.filter(slug="trivia").update(active=False)

    with CaptureQueriesContext(connection) as first:
        assert route(api_client, "trivia").status_code == 422
    with CaptureQueriesContext(connection) as later:
        assert record_categories(["trivia"], CategorySource.ROUTE) == []
    sightings.clear()
    with CaptureQueriesContext(connection):
        record_categories(["trivia"], CategorySource.ROUTE)

    trivia = Category.objects.get(slug="trivia")
    assert (trivia.state, trivia.seen_count, trivia.last_seen_at) == (CategoryState.RETIRED, 0, None)
    assert new_category_alerts("trivia") == []
    assert len(category_writes(first)) == 1  # the one upsert that learns it is retired
    assert category_queries(later) == []


def test_a_malformed_category_is_refused_and_not_recorded(api_client, coder):
    assert route(api_client, "Not A Slug!").status_code == 422
    assert route(api_client, "-x").status_code == 422

    assert not Category.objects.filter(proposed=True).exists()


def test_the_number_of_proposed_categories_is_capped(monkeypatch):
    monkeypatch.setattr(categories, "MAX_PROPOSED", 2)

    assert record_categories(["one", "two"], CategorySource.ROUTE) == ["one", "two"]
    assert record_categories(["three"], CategorySource.ROUTE) == []

    assert set(Category.objects.filter(proposed=True).values_list("slug", flat=True)) == {"one", "two"}
    assert new_category_alerts("three") == []
    # A slug refused by the cap is not remembered as known: it is tried again later.
    Category.objects.filter(slug="one").delete()
    monkeypatch.setattr(categories, "RECORD_INTERVAL_SECONDS", 0.0)
    assert record_categories(["three", "two"], CategorySource.ROUTE) == ["three"]
    assert Category.objects.get(slug="two").seen_count == 2


def usage_event(n: int, category: str) -> dict:
    return {
        "request_id": f"req-{n}",
        "occurred_at": datetime(2026, 3, 10, 12, tzinfo=UTC).isoformat(),
        "model": "acme/model",
        "role": "coder",
        "category": category,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "success": True,
    }


def test_usage_with_a_new_category_proposes_it_in_one_query_and_known_ones_cost_none(make_api_key, coder):
    writer = ApiClient(make_api_key("usage:write"))

    with CaptureQueriesContext(connection) as first:
        response = writer.post_json(
            "/api/v1/usage",
            {"events": [usage_event(1, "programming"), usage_event(2, "poetry"), usage_event(3, "poetry")]},
        )
    with CaptureQueriesContext(connection) as later:
        again = writer.post_json("/api/v1/usage", {"events": [usage_event(4, "programming")]})

    assert response.status_code == again.status_code == 200, response.content
    poetry = Category.objects.get(slug="poetry")
    assert (poetry.state, poetry.source, poetry.seen_count) == (CategoryState.PROPOSED, CategorySource.USAGE, 1)
    assert len(new_category_alerts("poetry")) == 1
    assert len(category_writes(first)) == 1
    # "programming" turned out to be active in that statement: never asked about again.
    assert category_queries(later) == []
    assert not Category.objects.get(slug="programming").proposed
    listed = {c["slug"]: c for c in ApiClient(make_api_key("route")).get("/api/v1/categories").json()}
    assert (listed["poetry"]["state"], listed["poetry"]["source"], listed["poetry"]["seen_count"]) == (
        "proposed",
        "usage",
        1,
    )
    assert (listed["programming"]["state"], listed["programming"]["source"]) == ("active", "seed")


def test_research_proposes_the_categories_openrouter_documents_that_the_catalog_lacks(fake_openrouter, settings):
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1
    Category.objects.filter(slug__in=["trivia", "academia"]).delete()
    Category.objects.filter(slug="legal").update(active=False)  # retired: not proposed again
    fake_openrouter.set_models(
        [
            {
                "id": "acme/model",
                "name": "Model",
                "created": 1760000000,
                "context_length": 8192,
                "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                "top_provider": {},
                "supported_parameters": [],
            }
        ]
    )

    run = research_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.details["discovered_categories"] == ["trivia", "academia"]
    assert set(run.details["proposed_categories"]) == {"trivia", "academia"}
    found = Category.objects.filter(slug__in=["trivia", "academia"])
    assert {(c.slug, c.state, c.source) for c in found} == {
        ("trivia", CategoryState.PROPOSED, CategorySource.OPENROUTER),
        ("academia", CategoryState.PROPOSED, CategorySource.OPENROUTER),
    }
    assert len(new_category_alerts("trivia")) == len(new_category_alerts("academia")) == 1
    assert Category.objects.get(slug="legal").state == CategoryState.RETIRED
    # Proposed categories are not ranked until adopted.
    assert not [r for r in fake_openrouter.requests if r.query.get("category") == "trivia"]
    assert [r for r in fake_openrouter.requests if r.query.get("category") == "programming"]
    assert discover_categories() == []


@requires_recorded
def test_the_documented_categories_are_those_of_openrouters_api_description():
    spec = openapi_document("openrouter_openapi_2026-08-22.yaml")
    [category] = [p for p in spec["paths"]["/models"]["get"]["parameters"] if p.get("name") == "category"]

    assert tuple(category["schema"]["enum"]) == DOCUMENTED_CATEGORIES


def test_the_admin_lists_proposed_categories_and_adopts_or_retires_them(admin_client, api_client, coder):
    for slug in ("poetry", "gardening", "knitting"):
        record_categories([slug], CategorySource.USAGE)

    listing = admin_client.get(reverse(CHANGELIST), {"state": CategoryState.PROPOSED})
    assert listing.status_code == HTTPStatus.OK
    assert {c.slug for c in listing.context["cl"].result_list} == {"poetry", "gardening", "knitting"}
    assert b"Proposed" in listing.content

    ids = lambda *slugs: [str(pk) for pk in Category.objects.filter(slug__in=slugs).values_list("pk", flat=True)]  # noqa: E731
    adopted = admin_client.post(
        reverse(CHANGELIST), {"action": "adopt_categories", "_selected_action": ids("poetry")}, follow=True
    )
    retired = admin_client.post(
        reverse(CHANGELIST), {"action": "retire_categories", "_selected_action": ids("gardening")}, follow=True
    )

    assert b"Adopted 1 category." in adopted.content
    assert b"Retired 1 category." in retired.content
    states = {c.slug: c.state for c in Category.objects.filter(slug__in=["poetry", "gardening", "knitting"])}
    assert states == {
        "poetry": CategoryState.ACTIVE,
        "gardening": CategoryState.RETIRED,
        "knitting": CategoryState.PROPOSED,
    }
    # Their alerts are answered; the one still waiting stays open.
    assert all(a.acknowledged_at is not None for a in new_category_alerts("poetry") + new_category_alerts("gardening"))
    assert new_category_alerts("knitting")[0].acknowledged_at is None
    # Adopted: /route takes it at once. Retired: still refused, and never proposed again.
    assert route(api_client, "poetry").status_code == 200
    sightings.clear()
    assert route(api_client, "gardening").status_code == 422
    assert Category.objects.get(slug="gardening").state == CategoryState.RETIRED


def test_ticking_active_on_a_proposed_category_adopts_it(admin_client):
    record_categories(["poetry"], CategorySource.ROUTE)
    poetry = Category.objects.get(slug="poetry")

    response = admin_client.post(
        reverse("admin:catalog_category_change", args=[poetry.pk]),
        {"slug": "poetry", "name": "Poetry", "active": "on"},
    )

    assert response.status_code == HTTPStatus.FOUND
    poetry.refresh_from_db()
    assert (poetry.active, poetry.proposed, poetry.state) == (True, False, CategoryState.ACTIVE)
