"""`GET /generation?id=`: the parser on OpenRouter's published example and on odd input, and the
client against the fake OpenRouter server (which answers in the published shape, held here to
the published schema). No mocks, no database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema_rs
import pytest

from openrouter import (
    AsyncOpenRouterClient,
    OpenRouterAuthError,
    OpenRouterBadResponse,
    OpenRouterClient,
    OpenRouterServerError,
)
from openrouter.parsing import parse_generation
from tests.fake_openrouter import (
    FakeOpenRouter,
    Reply,
    openapi_document,
    published_generation,
    requires_recorded,
    status,
)

SCHEMAS = ("openrouter_openapi_2026-08-22.yaml",)
KEY = "sk-or-v1-test"


@pytest.fixture
def fake():
    with FakeOpenRouter() as server:
        yield server


def client_for(fake: FakeOpenRouter, **options) -> OpenRouterClient:
    return OpenRouterClient(
        fake.base_url, **{"api_key": KEY, "timeout": 2.0, "max_retries": 2, "backoff": 0.01, **options}
    )


def published_example(filename: str) -> dict:
    return openapi_document(filename)["paths"]["/generation"]["get"]["responses"]["200"]["content"]["application/json"][
        "example"
    ]


def generation_validator(filename: str):
    document = openapi_document(filename)
    return jsonschema_rs.Draft202012Validator(
        {"$ref": "#/components/schemas/GenerationResponse", "components": document["components"]}
    )


# --- The published shape -------------------------------------------------------------------------


@requires_recorded
@pytest.mark.parametrize("filename", SCHEMAS)
def test_the_published_example_parses_to_exact_money_and_native_counts(filename):
    generation = parse_generation(published_example(filename), "gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG")

    assert generation.id == "gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG"
    assert generation.model == "sao10k/l3-stheno-8b"
    assert generation.provider_name == "Infermatic"
    assert generation.created_at == datetime(2024, 7, 15, 23, 33, 19, 433273, tzinfo=UTC)
    # yaml reads 0.0015 as a float: its shortest repr is the decimal OpenRouter wrote.
    assert generation.total_cost == Decimal("0.0015") and generation.usage == Decimal("0.0015")
    assert generation.upstream_inference_cost == Decimal("0.0012")
    assert generation.cache_discount is None
    assert (generation.tokens_prompt, generation.tokens_completion) == (10, 25)
    assert (
        generation.native_tokens_prompt,
        generation.native_tokens_completion,
        generation.native_tokens_reasoning,
        generation.native_tokens_cached,
    ) == (10, 25, 5, 3)
    assert generation.is_byok is False and generation.cancelled is False


@requires_recorded
@pytest.mark.parametrize("filename", SCHEMAS)
def test_what_the_fake_answers_is_valid_for_the_published_schema(fake, filename):
    validator = generation_validator(filename)
    fake.set_generation("gen-a", total_cost=0.00001255, native_tokens_prompt=1200, native_tokens_reasoning=0)
    fake.set_generation("gen-b", cache_discount=-0.0002, upstream_inference_cost=None)
    fake.set_generation("gen-c")
    with client_for(fake) as client:
        answers = [client._send(client._generation_call(gid)) for gid in ("gen-a", "gen-b", "gen-c")]

    for answer in answers:
        errors = [error.message for error in validator.iter_errors(_as_json_numbers(answer))]
        assert errors == []
    # ...and the fake's default record is the schema's published example itself.
    schema_example = openapi_document(filename)["components"]["schemas"]["GenerationResponse"]["example"]
    assert published_generation("gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG") == schema_example["data"]


def _as_json_numbers(value):
    """The client reads JSON numbers as Decimal; the schema validator wants plain numbers."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _as_json_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_json_numbers(item) for item in value]
    return value


# --- Odd input -----------------------------------------------------------------------------------


def test_strings_nulls_and_missing_fields_are_read_leniently():
    generation = parse_generation(
        {
            "data": {
                "id": "gen-1",
                "total_cost": "0.000012345678901234",  # a string, past 14 decimals
                "usage": None,
                "upstream_inference_cost": "free",
                "native_tokens_prompt": "120",
                "native_tokens_completion": 7.0,
                "native_tokens_reasoning": None,
                "native_tokens_cached": -3,
                "tokens_prompt": True,
                "created_at": "not a date",
                "provider_name": 42,
                "is_byok": "yes",
            }
        },
        "gen-1",
    )

    assert generation.total_cost == Decimal("0.00001234567890")  # half even to 14 decimals
    assert generation.usage is None and generation.upstream_inference_cost is None
    assert generation.native_tokens_prompt == 120 and generation.native_tokens_completion == 7
    assert generation.native_tokens_reasoning is None and generation.native_tokens_cached is None
    assert generation.tokens_prompt is None and generation.created_at is None
    assert generation.provider_name is None and generation.model == "" and generation.is_byok is False


@pytest.mark.parametrize(
    "value",
    [Decimal("1E+400"), "1e400", "NaN", "Infinity", "-Infinity", 10**30, "1000000000", [], {}],
)
def test_a_cost_that_is_no_usable_amount_is_absent(value):
    generation = parse_generation({"data": {"id": "gen-1", "total_cost": value, "native_tokens_prompt": 10**40}})

    assert generation.total_cost is None
    assert generation.native_tokens_prompt is None


def test_a_negative_cache_discount_and_an_exact_small_cost_are_kept():
    generation = parse_generation(
        {"data": {"id": "gen-1", "total_cost": Decimal("1.255E-5"), "cache_discount": Decimal("-0.0002")}}
    )

    assert generation.total_cost == Decimal("0.00001255")
    assert generation.cache_discount == Decimal("-0.0002")


@pytest.mark.parametrize("payload", [None, [], {"data": None}, {"data": []}, {"result": {"id": "gen-1"}}, "gen-1"])
def test_a_payload_without_a_data_object_is_a_bad_response(payload):
    with pytest.raises(OpenRouterBadResponse, match="generation gen-1 has no `data` dict"):
        parse_generation(payload, "gen-1")


def test_an_answer_about_another_generation_is_a_bad_response():
    with pytest.raises(OpenRouterBadResponse, match="with another one"):
        parse_generation({"data": {"id": "gen-2", "total_cost": 1}}, "gen-1")


# --- The client against the fake -----------------------------------------------------------------


def test_the_client_reads_a_json_number_cost_exactly(fake):
    fake.set_generation("gen-1", total_cost=1.255e-05, upstream_inference_cost=0.00001, native_tokens_prompt=99)
    with client_for(fake) as client:
        generation = client.generation("gen-1")

    assert generation.total_cost == Decimal("0.00001255")
    assert generation.upstream_inference_cost == Decimal("0.00001")
    assert generation.native_tokens_prompt == 99
    (request,) = fake.requests_to("/generation")
    assert request.query == {"id": "gen-1"} and request.headers["authorization"] == f"Bearer {KEY}"


def test_an_id_with_reserved_characters_is_sent_encoded(fake):
    odd = "gen-1&id=gen-2 #x"
    fake.set_generation(odd, total_cost=0.5)
    with client_for(fake) as client:
        assert client.generation(odd).total_cost == Decimal("0.5")
    assert fake.requests_to("/generation")[0].query == {"id": odd}


def test_an_unknown_generation_is_a_404_not_retried(fake):
    with client_for(fake) as client, pytest.raises(OpenRouterBadResponse) as raised:
        client.generation("gen-unknown")

    assert raised.value.status_code == 404
    assert "Generation gen-unknown not found" in str(raised.value)
    assert len(fake.requests_to("/generation")) == 1


def test_a_refused_key_is_an_auth_error(fake):
    fake.api_key = "sk-or-v1-the-right-one"
    with client_for(fake) as client, pytest.raises(OpenRouterAuthError, match="401"):
        client.generation("gen-1")


def test_no_key_is_an_auth_error_before_any_request(fake):
    with client_for(fake, api_key="") as client, pytest.raises(OpenRouterAuthError, match="OPENROUTER_API_KEY"):
        client.generation("gen-1")
    assert fake.requests == []


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_id_is_refused_before_any_request(fake, blank):
    with client_for(fake) as client, pytest.raises(ValueError, match="generation id"):
        client.generation(blank)
    assert fake.requests == []


def test_a_500_is_retried_and_a_lasting_one_is_a_server_error(fake):
    fake.set_generation("gen-1", total_cost=0.25)
    fake.script("/generation?id=gen-1", status(500))
    fake.script("/generation?id=gen-2", *[status(502)] * 3)
    with client_for(fake) as client:
        assert client.generation("gen-1").total_cost == Decimal("0.25")
        with pytest.raises(OpenRouterServerError, match="after 3 attempts"):
            client.generation("gen-2")


def test_the_async_client_reads_the_same_record(fake):
    fake.set_generation("gen-1", total_cost=0.003, native_tokens_completion=40)

    async def ask():
        async with AsyncOpenRouterClient(fake.base_url, api_key=KEY, timeout=2.0) as client:
            return await client.generation("gen-1")

    generation = asyncio.run(ask())
    assert (generation.total_cost, generation.native_tokens_completion) == (Decimal("0.003"), 40)


def test_a_whole_body_can_be_scripted(fake):
    fake.set_generation("gen-1", Reply(json={"data": {"id": "gen-1", "total_cost": "7"}}))
    with client_for(fake) as client:
        assert client.generation("gen-1").total_cost == Decimal("7")
