"""Input no database column can hold — a NUL, a lone surrogate, a number past the column, a date
off the calendar — is a 422 naming where it was, before any query: in a body, a query parameter
or a path parameter of any endpoint."""

from __future__ import annotations

import json

import pytest

from tests.factories import CatalogModelFactory, RoleFactory

pytestmark = pytest.mark.django_db


def errors_of(response, status: int = 422) -> list[dict]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "invalid" and body["detail"]
    return body["errors"]


def raw_post(client, path: str, text: str):
    """POST a JSON text as written (json.dumps would escape what the test means to send)."""
    return client.post(path, data=text.encode(), content_type="application/json")


def test_a_nul_in_a_route_request_names_the_field(api_client):
    [error] = errors_of(api_client.post_json("/api/v1/route", {"role": "cod\u0000er"}))
    assert error == {
        "in": "body",
        "field": "role",
        "message": "must not contain a NUL character",
        "type": "unstorable_text",
    }


def test_a_nul_in_an_item_of_a_list_names_its_index(api_client):
    errors = errors_of(
        api_client.post_json("/api/v1/escalate", {"role": "coder", "failed_model": "a/b", "exclude": ["x/y", "\u0000"]})
    )
    assert [e["field"] for e in errors] == ["exclude.1"]


def test_a_lone_surrogate_is_refused_but_a_pair_is_a_character(api_client):
    [error] = errors_of(raw_post(api_client, "/api/v1/route", '{"role": "coder", "strategy": "a\\ud800b"}'))
    assert error["field"] == "strategy" and "surrogate" in error["message"]
    [error] = errors_of(raw_post(api_client, "/api/v1/route", '{"role": "coder", "strategy": "\\udc00"}'))
    assert error["field"] == "strategy"

    RoleFactory(slug="coder")
    CatalogModelFactory(id="acme/model")
    paired = raw_post(api_client, "/api/v1/route", '{"role": "coder", "strategy": "bee \\ud83d\\udc1d"}')
    assert not any(e.get("type") == "unstorable_text" for e in paired.json().get("errors", [])), paired.content


def test_a_nul_in_a_key_of_the_body_is_named_escaped(api_client):
    [error] = errors_of(api_client.post_json("/api/v1/route", {"role": "coder", "ro\u0000le": "x"}))
    assert error["field"] == "ro\\u0000le"


def test_a_body_in_utf16_is_checked_too(api_client):
    text = json.dumps({"role": "cod\u0000er"})
    response = api_client.post("/api/v1/route", data=text.encode("utf-16"), content_type="application/json")
    assert [e["field"] for e in errors_of(response)] == ["role"]


def test_a_nul_in_a_query_parameter_names_it(api_client):
    [error] = errors_of(api_client.get("/api/v1/models?q=gpt%00&limit=5"))
    assert error == {
        "in": "query",
        "field": "q",
        "message": "must not contain a NUL character",
        "type": "unstorable_text",
    }
    [error] = errors_of(api_client.get("/api/v1/models?capability=supports_tools&capability=x%00"))
    assert error["field"] == "capability"
    [error] = errors_of(api_client.get("/api/v1/families?what%00=1"))
    assert error["field"] == "what\\u0000"


def test_a_nul_in_a_path_parameter_names_it(api_client):
    [error] = errors_of(api_client.get("/api/v1/models/acme/a%00b"))
    assert (error["in"], error["field"]) == ("path", "model_id")
    [error] = errors_of(api_client.get("/api/v1/categories/x%00y/rankings"))
    assert (error["in"], error["field"]) == ("path", "slug")


def test_the_query_is_checked_before_the_key(anon_client):
    # Nothing reaches a view (or the key cache) with text the database cannot hold.
    assert errors_of(anon_client.get("/api/v1/models?q=%00"))[0]["field"] == "q"


@pytest.mark.parametrize(
    "query, field",
    [
        (f"offset={2**63}", "offset"),
        ("offset=1000001", "offset"),
        ("limit=501", "limit"),
        (f"min_context={2**63}", "min_context"),
        ("offset=-1", "offset"),
    ],
)
def test_paging_and_numbers_past_their_column_are_a_422(api_client, query, field):
    errors = errors_of(api_client.get(f"/api/v1/models?{query}"))
    assert [e["field"] for e in errors] == [field]


def test_the_last_page_within_the_bound_is_an_empty_page(api_client):
    CatalogModelFactory(id="acme/one")
    body = api_client.get("/api/v1/models?offset=1000000&limit=500").json()
    assert body == {"count": 1, "items": []}


@pytest.mark.parametrize(
    "path, field",
    [
        ("/api/v1/costs/daily?start=0001-01-01&end=0001-01-01", "start"),
        ("/api/v1/costs/summary?end=0001-01-05", "end"),
        ("/api/v1/telemetry/summary?start=9999-12-30&end=9999-12-31", "start"),
        ("/api/v1/costs/export.csv?end=9999-12-31", "end"),
        (f"/api/v1/rankings?min_samples={2**63}", "min_samples"),
    ],
)
def test_dates_off_the_calendar_and_huge_numbers_in_reports_are_a_422(api_client, path, field):
    assert field in [e["field"] for e in errors_of(api_client.get(path))]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"role": "coder", "min_context_length": 2**63}, "min_context_length"),
        ({"role": "coder", "max_cost_usd": "1e400"}, "max_cost_usd"),
        ({"role": "coder", "estimated_input_tokens": 2**70}, "estimated_input_tokens"),
    ],
)
def test_huge_numbers_in_a_route_request_are_a_422(api_client, body, field):
    assert [e["field"] for e in errors_of(api_client.post_json("/api/v1/route", body))] == [field]


@pytest.mark.parametrize("depth", [50, 900, 5000])
def test_deep_nesting_is_never_a_server_error(api_client, depth):
    text = '{"role": ' + "[" * depth + '"a\\u0000"' + "]" * depth + "}"
    response = raw_post(api_client, "/api/v1/route", text)
    assert response.status_code in (400, 422), response.content
    assert response["Content-Type"].startswith("application/json")
    if response.status_code == 422 and depth == 50:
        assert response.json()["errors"][0]["field"] == "role" + ".0" * depth


def test_a_nul_in_a_key_is_named(api_client):
    errors = errors_of(api_client.post_json("/api/v1/route", {"role": "coder", "a\u0000": 1}))
    assert errors[0]["message"] == "a name must not contain a NUL character"
