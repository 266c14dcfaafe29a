"""The OpenRouter client against the fake OpenRouter server and the recorded responses.

No mocks: every request goes over a socket to tests/fake_openrouter.py. No database either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest

from catalog.client import openrouter_client
from openrouter import (
    PRICE_KEYS,
    AsyncOpenRouterClient,
    ChatCompletion,
    MalformedEntry,
    OpenRouterAuthError,
    OpenRouterBadResponse,
    OpenRouterClient,
    OpenRouterError,
    OpenRouterPaymentRequired,
    OpenRouterRateLimited,
    OpenRouterServerError,
    OpenRouterUnreachable,
    parse_model,
    parse_models_payload,
    parse_retry_after,
)
from tests.fake_openrouter import (
    SNAPSHOT_DATES,
    Reply,
    drop,
    empty_list,
    error_body,
    html_error,
    load_recorded,
    load_snapshot,
    rate_limited,
    recorded_dir,
    requires_recorded,
    status,
    timeout,
    truncated,
)

# OpenRouter pads non-streamed completion bodies with whitespace before the JSON; the recordings
# had it stripped, so the fake puts it back.
PADDING = "\n         \n\n"


def entry(model_id: str = "acme/model", prompt="0.000001", completion="0.000002", **extra) -> dict:
    """A minimal model entry in OpenRouter's shape."""
    data = {
        "id": model_id,
        "canonical_slug": model_id,
        "name": "Model",
        "created": 1760000000,
        "description": "",
        "context_length": 128000,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
        },
        "pricing": {"prompt": prompt, "completion": completion},
        "top_provider": {"context_length": 128000, "max_completion_tokens": 4096, "is_moderated": False},
        "supported_parameters": ["max_tokens", "tools"],
        "default_parameters": {},
    }
    data.update(extra)
    return data


def client_for(fake, **options) -> OpenRouterClient:
    options = {"timeout": 2.0, "max_retries": 2, "backoff": 0.01, **options}
    return OpenRouterClient(fake.base_url, **options)


def floats_in(value) -> list:
    """Every float inside a typed result, except the pass-through `raw` and `default_parameters`."""
    if isinstance(value, float):
        return [value]
    if dataclasses.is_dataclass(value):
        return [
            f
            for fld in dataclasses.fields(value)
            if fld.name not in ("raw", "default_parameters")
            for f in floats_in(getattr(value, fld.name))
        ]
    if isinstance(value, dict):
        return [f for item in value.values() for f in floats_in(item)]
    if isinstance(value, (list, tuple)):
        return [f for item in value for f in floats_in(item)]
    return []


def recorded_chat(name: str) -> dict:
    return load_recorded(f"chat_completions/{name}.json")


# --- Parsing the recorded snapshots -----------------------------------------------------------


@requires_recorded
def test_the_snapshot_dates_are_the_recorded_files_in_date_order():
    files = sorted(p.name for p in (recorded_dir() / "models").glob("openrouter_models_*.json"))
    assert [f"openrouter_models_{d}.json" for d in SNAPSHOT_DATES] == files
    assert list(SNAPSHOT_DATES) == sorted(SNAPSHOT_DATES)


@requires_recorded
@pytest.mark.parametrize("date_str", SNAPSHOT_DATES)
def test_every_recorded_snapshot_parses_every_entry_with_exact_prices(date_str):
    payload = load_snapshot(date_str)

    models = parse_models_payload(payload)

    assert models.skipped == []
    assert models.ids == [raw["id"] for raw in payload["data"]]
    for model, raw in zip(models.entries, payload["data"], strict=True):
        assert tuple(model.pricing) == PRICE_KEYS
        assert all(price is None or isinstance(price, Decimal) for price in model.pricing.values())
        assert floats_in(model) == [], model.id
        assert model.created is not None and model.created.tzinfo is not None
        assert model.raw is raw


@requires_recorded
@pytest.mark.parametrize("date_str", SNAPSHOT_DATES)
def test_the_routers_priced_at_minus_one_are_flagged_variable_with_no_price(date_str):
    payload = load_snapshot(date_str)
    routers = {raw["id"] for raw in payload["data"] if "-1" in raw["pricing"].values()}

    models = parse_models_payload(payload)

    assert {m.id for m in models.entries if m.variable_pricing} == routers
    assert {"openrouter/auto"} <= routers
    for model in models.entries:
        if model.variable_pricing:
            assert model.pricing["prompt"] is None and model.pricing["completion"] is None
        else:
            assert model.pricing["prompt"] >= 0 and model.pricing["completion"] >= 0


@requires_recorded
def test_a_14_decimal_price_round_trips_exactly():
    gemma = next(m for m in parse_models_payload(load_snapshot("2025-12-18")).entries if m.id == "google/gemma-3-4b-it")

    assert gemma.raw["pricing"]["prompt"] == "0.00000001703012"
    assert gemma.pricing["prompt"] == Decimal("0.00000001703012")
    assert format(gemma.pricing["prompt"], "f") == "0.00000001703012"


@requires_recorded
def test_a_price_with_float_noise_past_14_decimals_is_rounded_to_what_the_catalog_stores():
    flash = next(
        m for m in parse_models_payload(load_snapshot("2026-01-29")).entries if m.id == "google/gemini-2.5-flash"
    )

    assert flash.raw["pricing"]["input_cache_write"] == "0.00000008333333333333334"
    assert flash.pricing["input_cache_write"] == Decimal("0.00000008333333")


@requires_recorded
@pytest.mark.parametrize("date_str", SNAPSHOT_DATES)
def test_a_null_max_completion_tokens_becomes_none(date_str):
    payload = load_snapshot(date_str)
    nulls = sum(1 for raw in payload["data"] if raw["top_provider"].get("max_completion_tokens") is None)

    models = parse_models_payload(payload)

    assert nulls > 0
    assert sum(1 for m in models.entries if m.max_completion_tokens is None) == nulls
    assert all(m.max_completion_tokens is None or isinstance(m.max_completion_tokens, int) for m in models.entries)


@requires_recorded
def test_fields_that_appeared_in_2026_are_tolerated_and_kept_in_raw():
    models = {m.id: m for m in parse_models_payload(load_snapshot("2026-06-29")).entries}
    alias = models["~anthropic/claude-sonnet-latest"]

    assert alias.author == "anthropic"
    # A key OpenRouter documented in 2026 has its own price now, not only a place in raw.
    assert alias.pricing["input_cache_write_1h"] == Decimal("0.000006")
    assert alias.extra_prices == {}
    assert alias.pricing["input_cache_write"] == Decimal("0.00000375")
    assert any("benchmarks" in m.raw for m in models.values())
    assert any(isinstance(m.expiration_date, date) for m in models.values())


@requires_recorded
def test_dropping_zero_optional_prices_in_january_2026_is_not_a_price_change():
    before = {m.id: m for m in parse_models_payload(load_snapshot("2026-01-15")).entries}
    after = {m.id: m for m in parse_models_payload(load_snapshot("2026-01-29")).entries}
    both = before.keys() & after.keys()
    # Models whose only difference is that zero-valued optional keys went missing.
    only_zeros_dropped = [
        model_id
        for model_id in both
        if before[model_id].raw["pricing"] != after[model_id].raw["pricing"]
        and {k: v for k, v in before[model_id].raw["pricing"].items() if v != "0" or k in ("prompt", "completion")}
        == after[model_id].raw["pricing"]
    ]

    assert len(only_zeros_dropped) > 100
    assert all(before[i].pricing == after[i].pricing for i in only_zeros_dropped)


@requires_recorded
def test_free_models_keep_a_zero_prompt_and_completion_price():
    free = [m for m in parse_models_payload(load_snapshot("2026-01-29")).entries if m.id.endswith(":free")]

    assert free
    assert all(m.pricing["prompt"] == Decimal("0") and m.pricing["completion"] == Decimal("0") for m in free)
    assert all(m.pricing["prompt"] is not None for m in free)


# --- Parsing rules on hand-made entries -------------------------------------------------------


def test_an_optional_price_of_zero_and_an_absent_one_both_become_none():
    with_zeros = parse_model(
        entry(pricing={"prompt": "0.000001", "completion": "0.000002", "request": "0", "image": "0"})
    )
    without = parse_model(entry(pricing={"prompt": "0.000001", "completion": "0.000002"}))

    assert with_zeros.pricing == without.pricing
    assert with_zeros.pricing["request"] is None and with_zeros.pricing["image"] is None


def test_it_reads_the_typed_fields_of_an_entry():
    model = parse_model(
        entry(
            "~acme/model-latest:free",
            architecture={
                "modality": "text+image->text",
                "input_modalities": ["text", "image"],
                "output_modalities": ["text"],
                "tokenizer": "GPT",
            },
            expiration_date="2026-03-02",
            unknown_field={"anything": [1, 2]},
        )
    )

    assert model.author == "acme"
    assert model.created == datetime(2025, 10, 9, 8, 53, 20, tzinfo=UTC)
    assert model.expiration_date == date(2026, 3, 2)
    assert model.input_modalities == ("text", "image")
    assert model.max_completion_tokens == 4096
    assert model.supported_parameters == ("max_tokens", "tools")
    assert model.raw["unknown_field"] == {"anything": [1, 2]}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (entry(prompt="cheap"), "pricing.prompt is not a number"),
        (entry(prompt="-0.5"), "pricing.prompt is negative"),
        (entry(prompt="NaN"), "pricing.prompt is not a number"),
        (entry(pricing={"prompt": "0.1", "completion": "0.1", "image": "-2"}), "pricing.image is negative"),
        (entry(pricing={"completion": "0.1"}), "pricing.prompt is missing"),
        (entry(pricing={"prompt": "0.1"}), "pricing.completion is missing"),
        (entry(""), "id is missing or empty"),
        ({"pricing": {"prompt": "0", "completion": "0"}}, "id is missing or empty"),
        (entry(pricing=None), "pricing is missing"),
        ("not an object", "entry is not an object"),
    ],
)
def test_a_malformed_entry_raises_with_a_readable_reason(raw, reason):
    with pytest.raises(MalformedEntry) as failure:
        parse_model(raw)

    assert reason in str(failure.value)


def test_malformed_entries_are_skipped_with_their_index_and_reason():
    payload = {"data": [entry("acme/a"), entry("acme/bad", prompt="cheap"), "nope", entry("acme/b"), entry("")]}

    models = parse_models_payload(payload)

    assert models.ids == ["acme/a", "acme/b"]
    assert [(s.index, s.id) for s in models.skipped] == [(1, "acme/bad"), (2, None), (4, None)]
    assert "not a number: 'cheap'" in models.skipped[0].reason


def test_a_duplicate_id_keeps_the_first_and_reports_the_rest():
    payload = {"data": [entry("acme/a", prompt="0.1"), entry("acme/b"), entry("acme/a", prompt="0.2")]}

    models = parse_models_payload(payload)

    assert models.ids == ["acme/a", "acme/b"]
    assert models.entries[0].pricing["prompt"] == Decimal("0.1")
    assert [(s.index, s.id) for s in models.skipped] == [(2, "acme/a")]
    assert "duplicate" in models.skipped[0].reason


@pytest.mark.parametrize("payload", [[], {"models": []}, {"data": {}}, "data", None])
def test_a_payload_without_a_data_list_is_a_bad_response(payload):
    with pytest.raises(OpenRouterBadResponse):
        parse_models_payload(payload)


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


# --- Talking to the fake server ---------------------------------------------------------------


def test_it_lists_models_and_a_category_from_the_server(fake_openrouter):
    fake_openrouter.set_models([entry("acme/a"), entry("acme/b")])
    fake_openrouter.set_category_models("programming", [entry("acme/b")])

    with client_for(fake_openrouter) as client:
        everything = client.list_models()
        programming = client.list_models(category="programming")

    assert everything.ids == ["acme/a", "acme/b"]
    assert programming.ids == ["acme/b"]
    assert [r.query for r in fake_openrouter.requests] == [{}, {"category": "programming"}]


def test_it_sends_the_app_headers_and_the_key_only_when_one_is_set(fake_openrouter):
    with client_for(fake_openrouter) as anonymous, client_for(fake_openrouter, api_key="sk-or-test") as keyed:
        anonymous.list_models()
        keyed.list_models()

    without, with_key = fake_openrouter.requests
    assert "authorization" not in without.headers
    assert with_key.headers["Authorization"] == "Bearer sk-or-test"
    assert without.headers["X-Title"] == "LLMHive" and without.headers["HTTP-Referer"]


def test_openrouter_client_reads_the_django_settings(fake_openrouter, settings):
    settings.OPENROUTER_API_KEY = "sk-or-from-settings"
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 3.5
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1

    with openrouter_client(backoff=0.01) as client:
        client.list_models()

    assert (client.base_url, client.api_key, client.timeout, client.max_retries) == (
        fake_openrouter.base_url,
        "sk-or-from-settings",
        3.5,
        1,
    )
    assert fake_openrouter.requests[0].headers["authorization"] == "Bearer sk-or-from-settings"


def test_it_retries_a_500_then_succeeds(fake_openrouter):
    fake_openrouter.set_models([entry()])
    fake_openrouter.script("/models", status(500))

    with client_for(fake_openrouter) as client:
        models = client.list_models()

    assert models.ids == ["acme/model"]
    assert len(fake_openrouter.requests) == 2


def test_it_gives_up_on_5xx_after_the_retries_with_a_server_error(fake_openrouter):
    fake_openrouter.script("/models", status(503), status(503), status(503), status(503))

    with client_for(fake_openrouter, max_retries=2) as client, pytest.raises(OpenRouterServerError) as failure:
        client.list_models()

    assert failure.value.status_code == 503
    assert len(fake_openrouter.requests) == 3  # the first attempt and two retries
    assert "after 3 attempts" in str(failure.value)


def test_it_backs_off_exponentially_between_retries(fake_openrouter):
    fake_openrouter.script("/models", status(500), status(500))

    with client_for(fake_openrouter, backoff=0.1) as client:
        client.list_models()

    times = [r.time for r in fake_openrouter.requests]
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.2


def test_it_waits_for_retry_after_before_retrying_a_429(fake_openrouter):
    fake_openrouter.set_models([entry()])
    fake_openrouter.script("/models", rate_limited(retry_after=1))

    with client_for(fake_openrouter) as client:
        models = client.list_models()

    first, second = fake_openrouter.requests
    assert models.ids == ["acme/model"]
    assert 1.0 <= second.time - first.time < 2.0  # Retry-After, not the 0.01 s backoff


def test_it_caps_a_long_retry_after(fake_openrouter):
    fake_openrouter.script("/models", rate_limited(retry_after=3600))

    with client_for(fake_openrouter, max_retry_after=0.1) as client:
        client.list_models()

    first, second = fake_openrouter.requests
    assert 0.1 <= second.time - first.time < 1.0


def test_a_429_after_the_retries_is_rate_limited_with_openrouters_message(fake_openrouter):
    fake_openrouter.script("/models", rate_limited(retry_after=7))

    with client_for(fake_openrouter, max_retries=0) as client, pytest.raises(OpenRouterRateLimited) as failure:
        client.list_models()

    assert failure.value.status_code == 429
    assert failure.value.retry_after == 7.0
    assert "Rate limit exceeded" in str(failure.value)


def test_a_slow_answer_times_out_as_unreachable(fake_openrouter):
    fake_openrouter.script("/models", timeout(2))

    with (
        client_for(fake_openrouter, timeout=0.2, max_retries=0) as client,
        pytest.raises(OpenRouterUnreachable) as failure,
    ):
        client.list_models()

    assert failure.value.status_code is None
    assert "within 0.2 s" in str(failure.value)


def test_a_slow_answer_is_retried_and_the_retry_succeeds(fake_openrouter):
    fake_openrouter.set_models([entry()])
    fake_openrouter.script("/models", timeout(2))

    with client_for(fake_openrouter, timeout=0.3, max_retries=1) as client:
        models = client.list_models()

    assert models.ids == ["acme/model"]
    assert len(fake_openrouter.requests) == 2


def test_a_dropped_connection_is_retried_then_unreachable(fake_openrouter):
    fake_openrouter.script("/models", drop(), drop())

    with client_for(fake_openrouter, max_retries=1) as client, pytest.raises(OpenRouterUnreachable) as failure:
        client.list_models()

    assert len(fake_openrouter.requests) == 2
    assert "closed the connection" in str(failure.value)


def test_a_dropped_connection_then_an_answer_succeeds(fake_openrouter):
    fake_openrouter.set_models([entry()])
    fake_openrouter.script("/models", drop())

    with client_for(fake_openrouter) as client:
        assert client.list_models().ids == ["acme/model"]


def test_a_refused_connection_is_unreachable():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with OpenRouterClient(f"http://127.0.0.1:{port}/api/v1", max_retries=1, backoff=0.01) as client:
        with pytest.raises(OpenRouterUnreachable) as failure:
            client.list_models()

    assert "after 2 attempts" in str(failure.value)


def test_an_html_502_page_is_retried_then_raised_as_a_server_error(fake_openrouter):
    fake_openrouter.script("/models", html_error(502), html_error(502))

    with client_for(fake_openrouter, max_retries=1) as client, pytest.raises(OpenRouterServerError) as failure:
        client.list_models()

    assert failure.value.status_code == 502
    assert "HTML page" in str(failure.value)
    assert len(fake_openrouter.requests) == 2


def test_an_html_page_served_as_200_is_a_bad_response(fake_openrouter):
    fake_openrouter.script(
        "/models", Reply(body="<html><body>Maintenance</body></html>", headers={"Content-Type": "text/html"})
    )

    with client_for(fake_openrouter) as client, pytest.raises(OpenRouterBadResponse) as failure:
        client.list_models()

    assert "HTML page" in str(failure.value)


def test_truncated_json_is_a_bad_response_and_is_not_retried(fake_openrouter):
    fake_openrouter.set_models([entry(f"acme/m{i}") for i in range(20)])
    fake_openrouter.script("/models", truncated())

    with client_for(fake_openrouter) as client, pytest.raises(OpenRouterBadResponse) as failure:
        client.list_models()

    assert "truncated JSON" in str(failure.value)
    assert len(fake_openrouter.requests) == 1


def test_a_body_of_the_wrong_shape_is_a_bad_response(fake_openrouter):
    fake_openrouter.script("/models", Reply(json={"models": []}))

    with client_for(fake_openrouter) as client, pytest.raises(OpenRouterBadResponse) as failure:
        client.list_models()

    assert "no `data` list" in str(failure.value)


def test_an_empty_list_is_returned_for_the_caller_to_judge(fake_openrouter):
    fake_openrouter.script("/models", empty_list())

    with client_for(fake_openrouter) as client:
        models = client.list_models()

    assert models.entries == [] and models.skipped == []


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, OpenRouterAuthError),
        (403, OpenRouterAuthError),
        (402, OpenRouterPaymentRequired),
        (400, OpenRouterBadResponse),
        (404, OpenRouterBadResponse),
    ],
)
def test_a_4xx_maps_to_its_exception_without_a_retry(fake_openrouter, code, error):
    body = {"error": {"code": code, "message": f"OpenRouter says {code}", "metadata": None}}
    fake_openrouter.script("/models", status(code, body))

    with client_for(fake_openrouter) as client, pytest.raises(error) as failure:
        client.list_models()

    assert failure.value.status_code == code
    assert f"OpenRouter says {code}" in str(failure.value)
    assert len(fake_openrouter.requests) == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (402, OpenRouterPaymentRequired),
        (429, OpenRouterRateLimited),
        (502, OpenRouterServerError),
        (400, OpenRouterBadResponse),
    ],
)
def test_a_200_with_an_error_body_raises_by_the_error_code(fake_openrouter, code, error):
    fake_openrouter.script("/models", error_body(code, "Provider returned error"))

    with client_for(fake_openrouter) as client, pytest.raises(error) as failure:
        client.list_models()

    assert failure.value.error_code == code
    assert "Provider returned error" in str(failure.value)
    assert len(fake_openrouter.requests) == 1


def test_error_messages_are_one_line_even_when_openrouters_are_not(fake_openrouter):
    fake_openrouter.script(
        "/models", status(400, {"error": {"code": 400, "message": "bad\nrequest:\n  model is required"}})
    )

    with client_for(fake_openrouter) as client, pytest.raises(OpenRouterError) as failure:
        client.list_models()

    assert "\n" not in str(failure.value)
    assert "bad request: model is required" in str(failure.value)


# --- Endpoints, key and chat completions ------------------------------------------------------


ENDPOINT_2026 = {
    "name": "OpenAI: GPT-4o",
    "model_id": "openai/gpt-4o",
    "model_name": "GPT-4o",
    "context_length": 128000,
    "pricing": {"prompt": "0.0000025", "completion": "0.00001", "request": "0", "discount": 0, "overrides": []},
    "provider_name": "OpenAI",
    "tag": "openai",
    "quantization": None,
    "max_completion_tokens": 16384,
    "max_prompt_tokens": None,
    "supported_parameters": ["tools", "max_tokens"],
    "status": 0,
    "uptime_last_30m": 99.5,
    "uptime_last_5m": 100,
    "uptime_last_1d": 99.8,
    "latency_last_30m": {"p50": 410.5, "p75": 520.0, "p90": 700.0, "p99": 1200.0},
    "throughput_last_30m": {"p50": 45.2, "p75": 38.5, "p90": 28.3, "p99": 15.1},
    "supports_implicit_caching": True,
    "a_field_from_the_future": True,
}
# The shape of late 2025: no percentiles, and a degraded status.
ENDPOINT_2025 = {
    "name": "Azure: GPT-4o",
    "model_name": "GPT-4o",
    "context_length": 128000,
    "pricing": {"prompt": "0.0000025", "completion": "0.00001"},
    "provider_name": "Azure",
    "tag": "azure",
    "quantization": "unknown",
    "max_completion_tokens": None,
    "max_prompt_tokens": None,
    "supported_parameters": ["max_tokens"],
    "status": -2,
    "uptime_last_30m": None,
}


def test_it_parses_a_models_endpoints(fake_openrouter):
    fake_openrouter.set_endpoints("openai/gpt-4o", [ENDPOINT_2026, ENDPOINT_2025])

    with client_for(fake_openrouter) as client:
        result = client.list_endpoints("openai/gpt-4o")

    openai, azure = result.endpoints
    assert result.id == "openai/gpt-4o"
    assert (openai.provider_name, openai.tag, openai.quantization, openai.status) == ("OpenAI", "openai", None, 0)
    assert (openai.context_length, openai.max_completion_tokens, openai.max_prompt_tokens) == (128000, 16384, None)
    assert openai.pricing == {
        "prompt": Decimal("0.0000025"),
        "completion": Decimal("0.00001"),
        "request": Decimal("0"),
        "discount": Decimal("0"),
    }
    assert (openai.uptime_last_30m, openai.latency_last_30m, openai.throughput_last_30m) == (99.5, 410.5, 45.2)
    assert openai.supported_parameters == ("tools", "max_tokens")
    assert (azure.status, azure.uptime_last_30m, azure.latency_last_30m, azure.max_completion_tokens) == (
        -2,
        None,
        None,
        None,
    )


def test_it_asks_for_the_endpoints_of_a_variant_id_with_a_colon(fake_openrouter):
    fake_openrouter.set_endpoints("meta-llama/llama-4-maverick:free", [ENDPOINT_2025])

    with client_for(fake_openrouter) as client:
        result = client.list_endpoints("meta-llama/llama-4-maverick:free")

    assert len(result.endpoints) == 1
    assert fake_openrouter.requests[0].path == "/models/meta-llama/llama-4-maverick:free/endpoints"


def test_the_endpoints_of_an_unknown_model_are_a_bad_response(fake_openrouter):
    with client_for(fake_openrouter) as client, pytest.raises(OpenRouterBadResponse) as failure:
        client.list_endpoints("acme/nothing")

    assert failure.value.status_code == 404


def test_a_model_id_without_an_author_is_refused_before_any_request(fake_openrouter):
    with client_for(fake_openrouter) as client, pytest.raises(ValueError):
        client.list_endpoints("gpt-4o")

    assert fake_openrouter.requests == []


def test_the_key_reads_money_as_exact_decimals(fake_openrouter):
    fake_openrouter.set_key(
        {
            "label": "sk-or-v1-au7...890",
            "limit": 100,
            "limit_remaining": 74.5,
            "limit_reset": "monthly",
            "usage": 25.5,
            "usage_daily": 0.1,
            "usage_weekly": 1.23456789012345,
            "usage_monthly": 25.5,
            "is_free_tier": False,
            "is_management_key": False,
            "expires_at": "2027-12-31T23:59:59Z",
        }
    )

    with client_for(fake_openrouter, api_key="sk-or-test") as client:
        key = client.get_key()

    assert key.label == "sk-or-v1-au7...890"
    assert (key.limit, key.limit_remaining, key.usage) == (Decimal("100"), Decimal("74.5"), Decimal("25.5"))
    assert key.usage_daily == Decimal("0.1") and key.usage_weekly == Decimal("1.23456789012345")
    assert key.expires_at == datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert key.is_free_tier is False and key.limit_reset == "monthly"
    assert floats_in(key) == []
    assert key.raw["usage"] == 25.5  # raw is plain JSON, ready for a JSONField


def test_the_key_without_an_api_key_is_an_auth_error_without_a_request(fake_openrouter):
    with client_for(fake_openrouter) as client, pytest.raises(OpenRouterAuthError):
        client.get_key()

    assert fake_openrouter.requests == []


def test_a_rejected_key_is_an_auth_error(fake_openrouter):
    fake_openrouter.script("/key", status(401, {"error": {"code": 401, "message": "User not found."}}))

    with client_for(fake_openrouter, api_key="sk-or-revoked") as client, pytest.raises(OpenRouterAuthError) as failure:
        client.get_key()

    assert "User not found." in str(failure.value)


@requires_recorded
def test_the_recorded_gpt_5_completion_parses_with_its_exact_cost(fake_openrouter):
    recorded = recorded_chat("chat_completion_2025-10-21_openai-gpt-5")
    fake_openrouter.set_chat("openai/gpt-5", PADDING + json.dumps(recorded["response"]["body"]))
    request = recorded["request"]["body"]

    with client_for(fake_openrouter, api_key="sk-or-test") as client:
        completion = client.chat_completion(request["model"], request["messages"], max_tokens=4000)

    assert isinstance(completion, ChatCompletion)
    assert (completion.model, completion.provider, completion.content) == ("openai/gpt-5", "OpenAI", "Oi! (or Olá!)")
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens, usage.cached_tokens) == (
        19,
        77,
        64,
        0,
    )
    # gpt-5 at $1.25 / $10 per million tokens; reasoning tokens are billed inside completion_tokens.
    assert usage.cost == Decimal("0.00079375") == 19 * Decimal("0.00000125") + 77 * Decimal("0.00001")
    assert floats_in(completion) == []
    sent = fake_openrouter.requests[0].json()
    assert (sent["model"], sent["messages"], sent["max_tokens"]) == ("openai/gpt-5", request["messages"], 4000)


@requires_recorded
def test_the_streamed_gpt_5_recording_served_whole_costs_0_00074375(fake_openrouter):
    events = recorded_chat("chat_completion_stream_2025-10-21_openai-gpt-5")["response"]["sse_events"]
    chunks = [event for event in events if isinstance(event, dict)]
    body = {
        "id": chunks[0]["id"],
        "model": chunks[0]["model"],
        "provider": chunks[0]["provider"],
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks),
                },
            }
        ],
        "usage": next(c["usage"] for c in chunks if c.get("usage")),
    }
    fake_openrouter.set_chat(None, PADDING + json.dumps(body))

    with client_for(fake_openrouter, api_key="sk-or-test") as client:
        completion = client.chat_completion("openai/gpt-5", [{"role": "user", "content": "Say hi in Portuguese"}])

    assert completion.usage.cost == Decimal("0.00074375") == 19 * Decimal("0.00000125") + 72 * Decimal("0.00001")
    assert completion.usage.reasoning_tokens == 64
    assert completion.content


@requires_recorded
def test_gpt_5_4_nano_answers_with_its_canonical_slug_and_an_exponent_cost(fake_openrouter):
    recorded = recorded_chat("chat_completion_2026-04-27_openai-gpt-5.4-nano")
    fake_openrouter.set_chat("openai/gpt-5.4-nano", PADDING + json.dumps(recorded["response"]["body"]))

    with client_for(fake_openrouter, api_key="sk-or-test") as client:
        completion = client.chat_completion(
            "openai/gpt-5.4-nano", [{"role": "user", "content": "Say hi in Portuguese"}]
        )

    assert completion.model == "openai/gpt-5.4-nano-20260317"
    # recorded as the JSON number 1.255e-05
    assert completion.usage.cost == Decimal("0.00001255")
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (19, 7)


@requires_recorded
def test_the_recorded_gemini_completion_names_its_provider(fake_openrouter):
    recorded = recorded_chat("chat_completion_2025-11-19_google-gemini-3-pro-preview")
    fake_openrouter.set_chat(None, PADDING + json.dumps(recorded["response"]["body"]))

    with client_for(fake_openrouter, api_key="sk-or-test") as client:
        completion = client.chat_completion("google/gemini-3-pro-preview", [{"role": "user", "content": "hi"}])

    assert completion.provider == "Google AI Studio"
    assert "Oi" in completion.content
    assert isinstance(completion.usage.cost, Decimal)


def test_a_chat_completion_sends_reasoning_and_extra_fields(fake_openrouter):
    with client_for(fake_openrouter, api_key="sk-or-test") as client:
        completion = client.chat_completion(
            "acme/model",
            [{"role": "user", "content": "ping"}],
            max_tokens=5,
            reasoning={"effort": "minimal"},
            extra={"provider": {"allow_fallbacks": False}},
        )

    sent = fake_openrouter.requests[0].json()
    assert sent["reasoning"] == {"effort": "minimal"} and sent["max_tokens"] == 5
    assert sent["provider"] == {"allow_fallbacks": False} and sent["stream"] is False
    assert completion.content == "pong"


def test_a_completion_out_of_credits_in_a_200_body_is_payment_required(fake_openrouter):
    fake_openrouter.set_chat(
        None, error_body(402, "Insufficient credits. Add more using https://openrouter.ai/credits")
    )

    with (
        client_for(fake_openrouter, api_key="sk-or-test") as client,
        pytest.raises(OpenRouterPaymentRequired) as failure,
    ):
        client.chat_completion("acme/model", [{"role": "user", "content": "ping"}])

    assert "Insufficient credits" in str(failure.value)


def test_a_completion_without_choices_is_a_bad_response(fake_openrouter):
    fake_openrouter.set_chat(None, {"id": "gen-1", "model": "acme/model", "choices": []})

    with client_for(fake_openrouter, api_key="sk-or-test") as client, pytest.raises(OpenRouterBadResponse):
        client.chat_completion("acme/model", [{"role": "user", "content": "ping"}])


# --- The async client -------------------------------------------------------------------------


def test_twenty_concurrent_endpoint_calls_stay_within_the_semaphore(fake_openrouter):
    ids = [f"acme/model-{i}" for i in range(20)]
    for model_id in ids:
        fake_openrouter.set_endpoints(model_id, [ENDPOINT_2026])
    fake_openrouter.handler_delay = 0.2

    async def check_all():
        semaphore = asyncio.Semaphore(10)
        async with AsyncOpenRouterClient(fake_openrouter.base_url, timeout=5, backoff=0.01) as client:

            async def one(model_id):
                async with semaphore:
                    return await client.list_endpoints(model_id)

            return await asyncio.gather(*(one(model_id) for model_id in ids))

    results = asyncio.run(check_all())

    assert [r.id for r in results] == ids
    assert len(fake_openrouter.requests) == 20
    assert 2 <= fake_openrouter.max_in_flight <= 10


def test_the_async_client_retries_and_maps_failures_like_the_blocking_one(fake_openrouter):
    fake_openrouter.set_endpoints("acme/model", [ENDPOINT_2026])
    fake_openrouter.script("/models/acme/model/endpoints", status(500), drop())
    fake_openrouter.script("/chat/completions", status(402))

    async def run():
        async with AsyncOpenRouterClient(fake_openrouter.base_url, api_key="sk-or-test", backoff=0.01) as client:
            endpoints = await client.list_endpoints("acme/model")
            key = await client.get_key()
            with pytest.raises(OpenRouterPaymentRequired):
                await client.chat_completion("acme/model", [{"role": "user", "content": "ping"}])
            return endpoints, key

    endpoints, key = asyncio.run(run())

    assert endpoints.endpoints[0].provider_name == "OpenAI"
    assert key.usage == Decimal("0")
    assert [r.path for r in fake_openrouter.requests] == ["/models/acme/model/endpoints"] * 3 + [
        "/key",
        "/chat/completions",
    ]


def test_the_async_client_from_the_settings_times_out_as_unreachable(fake_openrouter, settings):
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 0.2
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 0
    fake_openrouter.script("/models/acme/model/endpoints", timeout(2))

    async def run():
        async with openrouter_client(AsyncOpenRouterClient) as client:
            await client.list_endpoints("acme/model")

    with pytest.raises(OpenRouterUnreachable):
        asyncio.run(run())
