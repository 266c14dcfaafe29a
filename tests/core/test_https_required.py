"""With HTTPS on, an API call over plain HTTP is refused with JSON, never redirected after the key
crossed in clear; the health check stays reachable for load balancers; a TLS-terminating proxy's
header is honoured. Checked with the test client and with a real gunicorn."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ApiClient
from tests.factories import ApiKeyFactory
from tests.servers import gunicorn


@pytest.mark.django_db
def test_an_api_call_over_http_is_refused_with_json_not_redirected(settings, make_api_key):
    settings.SECURE_SSL_REDIRECT = True
    client = ApiClient(make_api_key("route"))

    response = client.get("/api/v1/families")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "https_required"
    assert "Location" not in response

    assert client.get("/api/v1/families", secure=True).status_code == 200
    assert client.get("/api/v1/health").status_code in (200, 503)
    # Outside the API the usual redirect to https:// stays.
    assert client.get("/admin/login/").status_code == 301


@pytest.mark.django_db
def test_with_https_off_plain_http_is_served(settings, make_api_key):
    settings.SECURE_SSL_REDIRECT = False
    assert ApiClient(make_api_key("route")).get("/api/v1/families").status_code == 200


@pytest.mark.django_db
def test_the_proxys_https_header_counts_as_https(settings, make_api_key):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = ApiClient(make_api_key("route"))
    assert client.get("/api/v1/families", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    assert client.get("/api/v1/families", HTTP_X_FORWARDED_PROTO="http").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_gunicorn_with_https_on_refuses_plain_http_api_calls_and_answers_health():
    key = ApiKeyFactory(name="https", scopes=["route"]).raw_key
    with gunicorn(workers=1, LLMHIVE_HTTPS="true", SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO") as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
            refused = [http.get("/api/v1/families"), http.post("/api/v1/route", json={"role": "x"})]
            for response in refused:
                assert response.status_code == 403, response.text
                assert response.headers["content-type"].startswith("application/json")
                assert response.json()["code"] == "https_required"
                assert "location" not in response.headers

            assert http.get("/api/v1/health").status_code in (200, 503)
            behind_proxy = http.get("/api/v1/families", headers={"X-Forwarded-Proto": "https"})
            assert behind_proxy.status_code == 200, behind_proxy.text
            assert http.get("/admin/login/").status_code == 301
