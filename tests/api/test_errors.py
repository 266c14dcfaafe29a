"""Every error under /api/ is JSON in the API's shape — 400, 404, 405, 413 and 500 alike — while
the admin keeps Django's pages."""

from __future__ import annotations

import logging
from http import HTTPStatus

import pytest

from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


def assert_api_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize(
    "path", ["/api/nothing", "/api/v1/nothing/here", "/api/v2/models", "/api/v1/mod%00els", "/api/"]
)
def test_an_unknown_path_under_the_api_is_a_json_404(api_client, path):
    assert_api_error(api_client.get(path), HTTPStatus.NOT_FOUND, "not_found")


def test_a_path_outside_the_api_keeps_djangos_page(client, settings):
    settings.DEBUG = False
    response = client.get("/admin-nothing/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_method_the_operation_does_not_take_is_a_json_405_with_allow(api_client):
    body = assert_api_error(api_client.delete("/api/v1/models"), HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed")
    response = api_client.put("/api/v1/usage", data="{}", content_type="application/json")
    assert_api_error(response, HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed")
    assert response["Allow"] == "POST" and "POST" in response.json()["detail"]
    assert "GET" in body["detail"]


def test_a_body_over_the_limit_is_a_json_413_before_it_is_read(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_client.post(
        "/api/v1/usage", data=b'{"events": [' + b" " * 2000 + b"]}", content_type="application/json"
    )

    body = assert_api_error(response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large")
    assert "1,000 bytes" in body["detail"] and "LLMHIVE_MAX_BODY_BYTES" in body["detail"]


def test_the_default_limit_is_a_10_mb_body_refused_with_413(api_client):
    response = api_client.post("/api/v1/usage", data=b"x" * 10_000_000, content_type="application/json")
    assert_api_error(response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large")


def test_a_body_that_is_not_json_is_a_json_400(api_client):
    response = api_client.post("/api/v1/usage", data=b"{not json", content_type="application/json")
    assert_api_error(response, HTTPStatus.BAD_REQUEST, "bad_request")


def test_an_unhandled_exception_is_a_json_500_without_internals_and_logged(make_api_key, monkeypatch, caplog, settings):
    settings.DEBUG = False

    def broken(**filters):
        raise RuntimeError("secret internals: the database password is hunter2")

    monkeypatch.setattr("catalog.api.models_matching", broken)
    client = ApiClient(make_api_key("route"), raise_request_exception=False)

    with caplog.at_level(logging.ERROR, logger="llmhive.api"):
        response = client.get("/api/v1/models")

    body = assert_api_error(response, HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error")
    assert "hunter2" not in response.content.decode() and "Traceback" not in response.content.decode()
    assert set(body) == {"detail", "code"}
    [record] = [r for r in caplog.records if r.name == "llmhive.api"]
    assert "GET /api/v1/models" in record.getMessage()
    assert record.exc_info and "hunter2" in str(record.exc_info[1])


def test_an_unhandled_exception_still_reaches_djangos_signal(make_api_key, monkeypatch):
    """Error reporters listen to got_request_exception; the test client re-raises through it."""

    def broken(**filters):
        raise RuntimeError("boom")

    monkeypatch.setattr("catalog.api.models_matching", broken)
    with pytest.raises(RuntimeError, match="boom"):
        ApiClient(make_api_key("route")).get("/api/v1/models")


def test_the_docs_and_the_schema_are_not_touched(anon_client):
    assert anon_client.get("/api/openapi.json")["Content-Type"].startswith("application/json")
    assert anon_client.get("/api/docs").status_code == 200


def test_a_request_django_refuses_before_the_view_is_a_json_400(api_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    response = api_client.get("/api/v1/models?" + "&".join(f"q{i}=1" for i in range(20)))
    assert_api_error(response, HTTPStatus.BAD_REQUEST, "bad_request")
