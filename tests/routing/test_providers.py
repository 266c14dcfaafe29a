"""Provider preferences per role: edited in the admin, sent back by /route as OpenRouter's
`provider` object (held to OpenRouter's published schema), endpoints in the snapshot, models
with no endpoint meeting the role's demands (or too slow for its ceiling) left out."""

from __future__ import annotations

import time
from decimal import Decimal
from functools import cache

import jsonschema_rs
import pytest
import yaml
from django.core.exceptions import ValidationError
from django.urls import reverse

from catalog.models import CATALOG_VERSION, CatalogModel, ModelEndpoint
from catalog.research import refresh_endpoints
from core.models import DataVersion
from routing.api import RouteOut
from routing.models import QUANTIZATIONS, Role
from routing.providers import max_price
from routing.snapshot import _load_endpoints, build_snapshot
from tests.factories import CatalogModelFactory, ModelEndpointFactory, RoleFactory
from tests.fake_openrouter import published_endpoint, recorded_dir, requires_recorded
from tests.routing.test_routing_admin import role_form

pytestmark = pytest.mark.django_db

PER_MILLION = Decimal(1_000_000)
SCHEMAS = ("openrouter_openapi_2025-12-16.yaml", "openrouter_openapi_2026-08-22.yaml")


@pytest.fixture
def catalog(db):
    """Three tool models: one served by DeepInfra (fp8, slow) and Together (fp16, quick), one only
    by OpenAI (slowest), one whose endpoints research has not recorded."""
    models = {
        "open": CatalogModelFactory(
            id="acme/open", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000004"), supports_tools=True
        ),
        "closed": CatalogModelFactory(
            id="acme/closed",
            price_prompt=Decimal("0.000002"),
            price_completion=Decimal("0.000008"),
            supports_tools=True,
        ),
        "unknown": CatalogModelFactory(
            id="acme/unknown",
            price_prompt=Decimal("0.000003"),
            price_completion=Decimal("0.000012"),
            supports_tools=True,
        ),
    }
    ModelEndpointFactory(
        model=models["open"],
        provider_name="DeepInfra",
        tag="deepinfra/fp8",
        quantization="fp8",
        latency_last_30m=900.0,
        throughput_last_30m=80.0,
    )
    ModelEndpointFactory(
        model=models["open"],
        provider_name="Together",
        quantization="fp16",
        latency_last_30m=400,
        throughput_last_30m=40,
    )
    ModelEndpointFactory(model=models["closed"], provider_name="OpenAI", latency_last_30m=3000, throughput_last_30m=20)
    DataVersion.bump(CATALOG_VERSION)  # endpoints are written in bulk by research, which bumps it
    return models


def make_role(**fields) -> Role:
    role = RoleFactory(slug="coder", required_capabilities=["supports_tools"], **fields)
    role.full_clean()
    return role


def route(client, **body):
    response = client.post_json("/api/v1/route", {"role": "coder", **body})
    if response.status_code == 200:  # every answer keeps the documented schema
        RouteOut.model_validate_json(response.content)
    return response


def rejected(client, **body) -> dict:
    """The count rejected per reason, every eligible model excluded."""
    response = route(client, exclude=["acme/open", "acme/closed", "acme/unknown"], **body)
    assert response.status_code == 422, response.content
    return response.json()["rejected"]


def candidates(client, **body) -> set[str]:
    response = route(client, **body)
    assert response.status_code == 200, response.content
    return {c["model"] for c in response.json()["candidates"]}


# --- The admin -----------------------------------------------------------------------------------


def test_the_admin_edits_provider_preferences_and_route_answers_with_them(admin_client, api_client, catalog):
    page = admin_client.get(reverse("admin:routing_role_add")).content.decode()
    assert "Provider preferences" in page
    assert 'type="checkbox" name="provider_quantizations" value="mxfp4"' in page

    response = admin_client.post(
        reverse("admin:routing_role_add"),
        role_form(
            provider_sort="",
            provider_order="together,  deepinfra",
            provider_only="together deepinfra",
            provider_ignore="",
            provider_allow_fallbacks="on",
            provider_require_parameters="on",
            provider_data_collection="deny",
            provider_zdr="on",
            provider_quantizations=["fp16", "fp8"],
            max_latency_ms="1500",
        ),
    )

    assert response.status_code == 302, response.context["errors"] if response.context else response
    role = Role.objects.get(slug="coder")
    assert (role.provider_order, role.provider_only, role.provider_ignore) == (
        ["together", "deepinfra"],
        ["together", "deepinfra"],
        [],
    )
    assert role.provider_quantizations == ["fp8", "fp16"]  # the schema's order
    change = admin_client.get(reverse("admin:routing_role_change", args=[role.pk])).content.decode()
    assert 'value="together, deepinfra"' in change

    body = route(api_client).json()
    assert body["model"] == "acme/open"  # the others have no endpoint there, or none recorded…
    assert body["provider"] == {
        "order": ["together", "deepinfra"],
        "only": ["together", "deepinfra"],
        "require_parameters": True,
        "data_collection": "deny",
        "zdr": True,
        "quantizations": ["fp8", "fp16"],
        "preferred_max_latency": 1.5,
    }


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"provider_only": "Deep Infra!"}, "provider_only", "Not a provider slug: Deep"),
        ({"provider_only": "together", "provider_ignore": "together openai"}, "provider_ignore", "Both allowed"),
        ({"provider_order": "openai", "provider_ignore": "openai"}, "provider_order", "Ordered but ignored: openai"),
        ({"provider_order": "openai", "provider_only": "together"}, "provider_order", "not among the allowed"),
        ({"provider_order": "openai", "provider_sort": "price"}, "provider_sort", "choose an order or a sort"),
        ({"provider_ignore": "openai openai"}, "provider_ignore", "Each provider once"),
        ({"provider_quantizations": ["fp7"]}, "provider_quantizations", "fp7 is not one of the available choices"),
    ],
)
def test_the_admin_refuses_preferences_openrouter_would_not_take(admin_client, catalog, fields, field, message):
    response = admin_client.post(reverse("admin:routing_role_add"), role_form(provider_allow_fallbacks="on", **fields))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, [])), errors
    assert not Role.objects.filter(slug="coder").exists()


def test_role_clean_checks_what_other_writers_store_too():
    role = Role(slug="x", provider_quantizations=["fp7"], provider_only="openai")
    with pytest.raises(ValidationError) as caught:
        role.full_clean()
    assert caught.value.message_dict == {
        "provider_only": ["A list of provider slugs."],
        "provider_quantizations": [f"Unknown quantizations: fp7. Known: {', '.join(QUANTIZATIONS)}."],
    }
    Role(slug="y", provider_only=["amazon-bedrock", "deepinfra/turbo"], provider_quantizations=["fp8"]).full_clean()


# --- The provider object -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"provider_sort": "throughput"}, {"sort": "throughput"}),
        (
            {"provider_ignore": ["openai"], "provider_allow_fallbacks": False},
            {"ignore": ["openai"], "allow_fallbacks": False},
        ),
        ({"provider_data_collection": "allow", "provider_zdr": False}, {"data_collection": "allow"}),
        ({"max_latency_ms": 5000}, {"preferred_max_latency": 5.0}),
    ],
)
def test_the_provider_object_holds_only_what_the_role_sets(api_client, catalog, fields, expected):
    make_role(**fields)

    assert route(api_client).json()["provider"] == expected


def test_a_cost_cap_adds_a_max_price_that_keeps_any_endpoint_within_it(api_client, catalog):
    make_role(provider_sort="price")
    for cap, tokens_in, tokens_out in [("0.01", 1000, 500), ("0.003", 2000, 10), ("0.0009", 10, 200), ("1", 0, 700)]:
        body = route(
            api_client,
            accuracy="high",
            max_cost_usd=cap,
            estimated_input_tokens=tokens_in,
            estimated_output_tokens=tokens_out,
        ).json()
        chosen = catalog[body["model"].split("/")[1]]
        ceiling = {key: Decimal(value) for key, value in body["provider"]["max_price"].items()}
        assert body["provider"]["sort"] == "price"
        # The chosen model is within them (its own endpoints stay usable)…
        assert ceiling["prompt"] >= chosen.price_prompt * PER_MILLION
        assert ceiling["completion"] >= chosen.price_completion * PER_MILLION
        # …and an endpoint priced at the ceilings costs at most the cap, by a hair.
        worst = (ceiling["prompt"] * tokens_in + ceiling["completion"] * tokens_out) / PER_MILLION + ceiling["request"]
        assert Decimal(cap) * Decimal("0.999999") <= worst <= Decimal(cap), (cap, body["provider"])


def test_max_price_shares_the_cap_for_a_free_model_and_counts_a_request_fee(catalog):
    snap = build_snapshot(DataVersion.current())
    free = snap.models["acme/open"]
    free.prices = dict(free.prices, prompt=Decimal(0), completion=Decimal(0))

    assert max_price(free, Decimal("0.003"), 1000, 2000) == {"prompt": "1", "completion": "1", "request": "0"}

    fee = snap.models["acme/closed"]
    fee.prices = dict(fee.prices, request=Decimal("0.001"))
    # estimate: 0.002 + 0.008 + 0.001 = 0.011; the cap 0.022 doubles every price.
    assert max_price(fee, Decimal("0.022"), 1000, 1000) == {"prompt": "4", "completion": "16", "request": "0.002"}


def test_a_cap_far_above_the_estimate_gives_exact_ceilings_not_a_500(api_client, db):
    """The ceilings grow as cap / estimate: the largest cap the API takes over a model whose
    completion price is a billionth of its prompt price gives ceilings past 10^18, once past the
    precision of decimal's default context (a 500 from quantize)."""
    CatalogModelFactory(id="acme/lopsided", price_prompt=Decimal("0.00001"), price_completion=Decimal("1e-14"))
    RoleFactory(slug="coder")
    response = route(
        api_client, max_cost_usd="1000000000", estimated_input_tokens=0, estimated_output_tokens=1, accuracy="economy"
    )
    assert response.status_code == 200, response.content
    ceiling = response.json()["provider"]["max_price"]
    # scale = 1e9 / 1e-14 = 1e23: prompt 1e-5 × 1e23 × 1e6 per million, completion 1e-14 × 1e23 × 1e6.
    assert ceiling == {"prompt": "1" + "0" * 24, "completion": "1" + "0" * 15, "request": "0"}


def test_a_bootstrap_answer_keeps_the_roles_provider_demands(api_client, settings, db):
    make_role(provider_zdr=True, provider_data_collection="deny")
    settings.BOOTSTRAP_FALLBACK_MODELS = ["boot/a", "boot/b"]

    body = route(api_client, max_cost_usd="0.01").json()

    assert body["source"] == "bootstrap"
    assert body["provider"] == {"data_collection": "deny", "zdr": True}


@cache
def openrouter_document(filename: str) -> dict:
    # libyaml's loader: the pure-Python one takes seconds over OpenRouter's 30,000 lines.
    return yaml.load((recorded_dir() / "reference" / filename).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def openrouter_schema(filename: str):
    document = openrouter_document(filename)
    schema = {"$ref": "#/components/schemas/ProviderPreferences", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema), document


@requires_recorded
@pytest.mark.parametrize("filename", SCHEMAS)
def test_every_provider_object_is_valid_for_openrouters_published_schema(api_client, catalog, filename):
    validator, document = openrouter_schema(filename)
    quantizations = document["components"]["schemas"]["Quantization"]["enum"]
    settings = [
        {"provider_sort": "latency", "provider_quantizations": ["fp8", "fp16"], "max_latency_ms": 2000},
        {"provider_order": ["together", "deepinfra/fp8"], "provider_allow_fallbacks": False},
        {"provider_only": ["together", "deepinfra"], "provider_require_parameters": True, "provider_zdr": True},
        {"provider_ignore": ["openai"], "provider_data_collection": "deny", "provider_quantizations": quantizations},
    ]
    checked = 0
    for fields in settings:
        Role.objects.filter(slug="coder").delete()
        make_role(**fields)
        for cap in (None, "0.05"):
            provider = route(api_client, max_cost_usd=cap).json()["provider"]
            errors = [e.message for e in validator.iter_errors(provider)]
            assert errors == [], (provider, errors)
            checked += 1
    assert checked == 8
    # The validator does hold objects to the schema: OpenRouter's max_price values are strings.
    assert not validator.is_valid({"sort": "fastest"})
    assert not validator.is_valid({"max_price": {"prompt": 1.5}})


@requires_recorded
def test_the_quantizations_offered_are_openrouters():
    _, document = openrouter_schema(SCHEMAS[-1])
    assert set(QUANTIZATIONS) == set(document["components"]["schemas"]["Quantization"]["enum"])


# --- Endpoints: the snapshot and the candidates ---------------------------------------------------


def test_the_snapshot_holds_each_models_endpoints_latency_and_throughput(catalog):
    ModelEndpointFactory(model=catalog["closed"], provider_name="Azure", status=-2, latency_last_30m=10)

    snap = build_snapshot(DataVersion.current())

    open_ = snap.models["acme/open"]
    assert [(e.provider, e.tag, e.quantization) for e in open_.endpoints] == [
        ("deepinfra", "deepinfra/fp8", "fp8"),
        ("together", "together", "fp16"),
    ]
    assert (open_.latency_ms, open_.throughput) == (650.0, 60.0)  # the median of the endpoints up
    closed = snap.models["acme/closed"]
    assert closed.latency_ms == 3000  # Azure is degraded (status -2): not typical of what serves
    assert snap.models["acme/unknown"].endpoints == () and snap.models["acme/unknown"].latency_ms is None


def test_endpoints_load_in_one_query(catalog, django_assert_num_queries):
    snap = build_snapshot(DataVersion.current())
    with django_assert_num_queries(1):
        _load_endpoints(snap.models)


@pytest.mark.parametrize(
    ("fields", "eligible"),
    [
        ({"provider_only": ["deepinfra"]}, {"acme/open", "acme/unknown"}),
        ({"provider_only": ["deepinfra/fp8"]}, {"acme/open", "acme/unknown"}),
        ({"provider_only": ["deepinfra/turbo"]}, {"acme/unknown"}),
        ({"provider_ignore": ["openai"]}, {"acme/open", "acme/unknown"}),
        ({"provider_ignore": ["together", "deepinfra"]}, {"acme/closed", "acme/unknown"}),
        ({"provider_quantizations": ["fp8"]}, {"acme/open", "acme/unknown"}),
        ({"provider_quantizations": ["bf16"]}, {"acme/unknown"}),
        # Without fallbacks only the ordered providers serve.
        ({"provider_order": ["openai"], "provider_allow_fallbacks": False}, {"acme/closed", "acme/unknown"}),
        ({"provider_order": ["openai"]}, {"acme/open", "acme/closed", "acme/unknown"}),
        # Data collection and ZDR: the catalog knows no provider's policy; OpenRouter enforces them.
        ({"provider_zdr": True, "provider_data_collection": "deny"}, {"acme/open", "acme/closed", "acme/unknown"}),
    ],
)
def test_a_model_with_no_endpoint_meeting_the_roles_demands_is_not_a_candidate(api_client, catalog, fields, eligible):
    make_role(**fields)

    assert candidates(api_client) == eligible
    left_out = 3 - len(eligible)
    assert rejected(api_client).get("no_matching_endpoint", 0) == left_out


def test_a_slug_meets_a_provider_named_otherwise(api_client, catalog):
    ModelEndpointFactory(model=catalog["unknown"], provider_name="Amazon Bedrock", tag="")
    DataVersion.bump(CATALOG_VERSION)
    make_role(provider_only=["amazon-bedrock"])

    assert candidates(api_client) == {"acme/unknown"}


def test_a_model_known_to_be_slower_than_the_roles_ceiling_is_too_slow(api_client, catalog):
    make_role(max_latency_ms=1000)
    assert candidates(api_client) == {"acme/open", "acme/unknown"}
    assert rejected(api_client) == {"excluded": 2, "too_slow": 1}

    # Only DeepInfra may serve: its 900 ms is over a 500 ms ceiling, Together's 400 ms no longer counts.
    Role.objects.filter(slug="coder").update(provider_only=["deepinfra"], max_latency_ms=500)
    DataVersion.bump("routing")
    assert candidates(api_client) == {"acme/unknown"}
    assert rejected(api_client) == {"excluded": 1, "no_matching_endpoint": 1, "too_slow": 1}

    # An endpoint of unknown latency may be quick: the model stays.
    ModelEndpointFactory(model=catalog["open"], provider_name="DeepInfra", tag="deepinfra/turbo")
    DataVersion.bump(CATALOG_VERSION)
    assert candidates(api_client) == {"acme/open", "acme/unknown"}


def test_endpoints_research_records_reach_the_next_decision(api_client, catalog, fake_openrouter):
    make_role(provider_only=["fireworks"])
    assert candidates(api_client) == {"acme/unknown"}

    fake_openrouter.set_endpoints(
        "acme/closed", [published_endpoint("Fireworks", quantization="fp8", tag="fireworks/fp8")]
    )
    assert refresh_endpoints(["acme/closed"], errors=(errors := [])) == 1 and errors == []

    assert candidates(api_client) == {"acme/closed", "acme/unknown"}


def test_a_large_catalogs_endpoints_load_quickly(db):
    """3,490 models with three endpoints each: the loader's share of a catalog rebuild."""
    models = [CatalogModelFactory.build(id=f"bulk/model-{i}") for i in range(3490)]
    CatalogModel.objects.bulk_create(models)
    ModelEndpoint.objects.bulk_create(
        ModelEndpoint(model_id=m.id, provider_name=p, tag=p.lower(), quantization="fp8", latency_last_30m=300.0)
        for m in models
        for p in ("Alpha", "Beta", "Gamma")
    )
    snap = build_snapshot(DataVersion.current())

    start = time.perf_counter()
    _load_endpoints(snap.models)
    elapsed = time.perf_counter() - start

    assert all(len(m.endpoints) == 3 for m in snap.models.values())
    assert elapsed < 1.0, f"{elapsed * 1000:.0f} ms"  # tens of ms; a bound loose enough for a busy CI runner


def test_the_role_list_shows_the_provider_object_and_a_misspelt_slug_is_warned_of(admin_client, catalog):
    response = admin_client.post(
        reverse("admin:routing_role_add"),
        role_form(provider_only="together opneai", provider_data_collection="deny"),
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert any("No endpoint research recorded is served by opneai:" in m for m in messages), messages
    page = admin_client.get(reverse("admin:routing_role_changelist")).content.decode()
    assert "only: together, opneai; allow fallbacks: false; data collection: deny" in page

    fine = admin_client.post(
        reverse("admin:routing_role_change", args=[Role.objects.get(slug="coder").pk]),
        role_form(provider_only="together amazon-bedrock openai", provider_allow_fallbacks="on"),
        follow=True,
    )
    assert [str(m) for m in fine.context["messages"] if "No endpoint" in str(m)] == [
        "No endpoint research recorded is served by amazon-bedrock: check the spelling against OpenRouter's "
        "provider list (a misspelt 'only' leaves out every model whose endpoints are known)."
    ]
