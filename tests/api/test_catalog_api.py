"""The catalog API over the real 2025-12-18 catalog: every filter checked against the snapshot
file itself, exact decimal prices, ids with '/' and ':', auth and scopes on every endpoint, the
OpenAPI document, constant queries, and create_api_key."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import CatalogModel
from core.models import ApiKey
from tests.conftest import ApiClient
from tests.factories import ApiKeyFactory
from tests.fake_openrouter import load_snapshot, requires_recorded, snapshot_path

pytestmark = [pytest.mark.django_db, requires_recorded]

DATE = "2025-12-18"
CATALOG_ENDPOINTS = [
    "/api/v1/models",
    "/api/v1/models/openai/gpt-4o",
    "/api/v1/families",
    "/api/v1/categories",
    "/api/v1/categories/programming/rankings",
]


@pytest.fixture
def snapshot() -> dict[str, dict]:
    return {entry["id"]: entry for entry in load_snapshot(DATE)["data"]}


@pytest.fixture
def synced(db, snapshot):
    call_command("sync_catalog", "--from-file", str(snapshot_path(DATE)), "--no-progress", stdout=io.StringIO())
    return snapshot


@pytest.fixture
def client(make_api_key) -> ApiClient:
    return ApiClient(make_api_key("route"))


def every(client: ApiClient, query: str) -> list[dict]:
    items, offset = [], 0
    while True:
        page = client.get(f"/api/v1/models?{query}&limit=500&offset={offset}").json()
        items += page["items"]
        offset += 500
        if offset >= page["count"]:
            assert len(items) == page["count"]
            return items


def params(entry) -> set[str]:
    return set(entry.get("supported_parameters") or [])


def inputs(entry) -> set[str]:
    return set((entry.get("architecture") or {}).get("input_modalities") or [])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", lambda e: True),
        ("capability=supports_tools", lambda e: "tools" in params(e)),
        ("capability=supports_tools&capability=supports_reasoning", lambda e: {"tools", "reasoning"} <= params(e)),
        ("capability=supports_multimodal_image", lambda e: "image" in inputs(e)),
        ("capability=supports_file_pdf", lambda e: "file" in inputs(e)),
        ("author=anthropic", lambda e: e["id"].split("/")[0] == "anthropic"),
        ("min_context=1000000", lambda e: (e.get("context_length") or 0) >= 1_000_000),
        ("q=flash", lambda e: "flash" in e["id"].lower() or "flash" in (e.get("name") or "").lower()),
        ("family=claude-4.5", lambda e: re.fullmatch(r"anthropic/claude-.*-4\.5.*", e["id"]) is not None),
        ("status=active&enabled=true", lambda e: True),
        ("status=missing", lambda e: False),
    ],
)
def test_each_filter_returns_exactly_the_models_that_satisfy_it(client, synced, query, expected):
    got = {item["id"] for item in every(client, query)}
    assert got == {model_id for model_id, entry in synced.items() if expected(entry)}


def test_family_none_lists_the_unclassified(client, synced):
    got = {item["id"] for item in every(client, "family=none")}
    assert got == set(CatalogModel.objects.filter(family__isnull=True).values_list("id", flat=True)) and got


def test_prices_are_the_snapshots_decimal_strings_and_routers_are_variable(client, synced):
    items = {item["id"]: item for item in every(client, "")}
    checked = 0
    for model_id, entry in synced.items():
        raw = entry["pricing"]["prompt"]
        if raw == "-1":
            assert items[model_id]["variable_pricing"] is True and items[model_id]["pricing"]["prompt"] is None
        elif Decimal(raw) > 0:
            assert Decimal(items[model_id]["pricing"]["prompt"]) == Decimal(raw)
            assert "e" not in items[model_id]["pricing"]["prompt"].lower()
            checked += 1
    assert checked > 200


def test_one_model_by_an_id_with_a_slash_and_a_colon(client, synced):
    model_id = next(m for m in synced if ":" in m)
    body = client.get(f"/api/v1/models/{model_id}").json()
    assert body["id"] == model_id and body["name"] == synced[model_id]["name"]
    assert {"endpoints", "price_history", "rankings", "health"} <= set(body)

    missing = client.get("/api/v1/models/nobody/nothing:free")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_families_and_categories(client, synced):
    families = {f["slug"]: f for f in client.get("/api/v1/families").json()}
    assert families["claude-4.5"]["model_count"] == CatalogModel.objects.filter(family__slug="claude-4.5").count() > 0
    categories = [c["slug"] for c in client.get("/api/v1/categories").json()]
    assert "programming" in categories
    assert client.get("/api/v1/categories/programming/rankings").status_code == 200
    assert client.get("/api/v1/categories/no-such-thing/rankings").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=501", "limit"),
        ("offset=-3", "offset"),
        ("capability=supports_teleport", "capability"),
        ("status=gone", "status"),
        ("min_context=big", "min_context"),
    ],
)
def test_bad_filters_are_a_422_naming_the_parameter(client, db, query, field):
    response = client.get(f"/api/v1/models?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid" and body["errors"][0]["in"] == "query"
    assert body["errors"][0]["field"].split(".")[0] == field


def test_the_list_takes_the_same_queries_for_35_models_as_for_349(client, synced, settings):
    settings.LLMHIVE_SNAPSHOT_CHECK_SECONDS = 60  # no version poll inside a measurement

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/v1/models?limit=500").status_code == 200
        return len(ctx)

    queries()  # the first request of a process loads the key cache and the data versions
    large = queries()
    CatalogModel.objects.exclude(id__in=sorted(synced)[:35]).delete()
    assert CatalogModel.objects.count() == 35
    queries()  # the deletion moved the catalog version: this request re-reads it
    assert queries() == large


@pytest.mark.parametrize("path", CATALOG_ENDPOINTS)
def test_every_catalog_endpoint_needs_a_live_key_with_the_route_scope(db, make_api_key, path):
    anonymous = ApiClient().get(path)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Bearer"
    assert set(anonymous.json()) == {"detail", "code"}
    assert ApiClient("lh_not_a_key").get(path).status_code == 401
    assert ApiClient().get(path, HTTP_AUTHORIZATION="Basic Zm9vOmJhcg==").status_code == 401
    wrong = ApiClient(make_api_key("usage:write")).get(path)
    assert wrong.status_code == 403 and wrong.json()["code"] == "missing_scope"
    key = ApiKeyFactory(name="soon revoked", scopes=["route"])
    assert ApiClient(key.raw_key).get(path).status_code in (200, 404)
    key.revoked_at = timezone.now()
    key.save()
    assert ApiClient(key.raw_key).get(path).status_code == 401


def test_sync_endpoints_need_the_catalog_sync_scope(db, make_api_key):
    assert ApiClient(make_api_key("route")).get("/api/v1/catalog/runs").status_code == 403
    assert ApiClient(make_api_key("route")).post_json("/api/v1/catalog/sync", {}).status_code == 403
    syncer = ApiClient(make_api_key("catalog:sync"))
    queued = syncer.post_json("/api/v1/catalog/sync", {})
    assert queued.status_code == 202, queued.content
    assert syncer.get("/api/v1/catalog/runs").status_code == 200


def test_keys_are_hashed_at_rest_and_last_used_is_recorded(db, make_api_key):
    raw = make_api_key("route")
    key = ApiKey.objects.get()
    assert raw not in str(list(ApiKey.objects.values()))
    assert key.last_used_at is None
    ApiClient(raw).get("/api/v1/families")
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_the_openapi_document_declares_bearer_security_on_every_operation_but_health(client):
    schema = ApiClient().get("/api/openapi.json").json()
    assert ApiClient().get("/api/docs").status_code == 200
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path == "/api/v1/health":
                assert not operation.get("security")
            else:
                assert operation.get("security"), f"{method.upper()} {path} declares no security"
    for path in [
        "/api/v1/models",
        "/api/v1/models/{model_id}",
        "/api/v1/families",
        "/api/v1/categories",
        "/api/v1/categories/{slug}/rankings",
        "/api/v1/catalog/sync",
        "/api/v1/catalog/runs",
        "/api/v1/route",
        "/api/v1/escalate",
        "/api/v1/usage",
        "/api/v1/costs/daily",
        "/api/v1/costs/summary",
        "/api/v1/costs/export.csv",
        "/api/v1/budgets",
        "/api/v1/telemetry/summary",
        "/api/v1/rankings",
        "/api/v1/health/models",
        "/api/v1/health",
    ]:
        assert path in schema["paths"], path


def test_create_api_key_prints_a_working_secret_once_and_stores_its_hash(db):
    out = io.StringIO()
    call_command("create_api_key", "--name", "orchestrator", "--scopes", "route", "costs:read", stdout=out)
    secret = re.search(r"lh_\S+", out.getvalue()).group(0)
    key = ApiKey.objects.get(name="orchestrator")
    assert sorted(key.scopes) == ["costs:read", "route"] and secret not in str(list(ApiKey.objects.values()))
    assert ApiClient(secret).get("/api/v1/families").status_code == 200
    assert ApiClient(secret).post_json("/api/v1/usage", {"events": []}).status_code == 403

    with pytest.raises(CommandError) as error:
        call_command("create_api_key", "--name", "x", "--scopes", "root", stdout=io.StringIO())
    assert "root" in str(error.value) and "\n" not in str(error.value).strip()
