"""`"optimize": "latency"` weighs the expected wall time of the call: OpenRouter's endpoint time to
first token plus the output at the endpoint's throughput, or, where the ledger has seen the model
for this role and category, the whole call as the orchestrator observed it (no generation term on
top: the observed time already includes it). A role's latency ceiling leaves out a model every
usable endpoint of which is known to be over it. Each candidate's parts show the figure and its
source."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import CATALOG_VERSION
from core.models import DataVersion
from routing.api import RouteOut
from routing.models import Role
from tests.factories import CatalogModelFactory, ModelEndpointFactory, RoleFactory, ingest

pytestmark = pytest.mark.django_db

OUTPUT_TOKENS = 400


def model(name: str, prompt: str = "0.000001", **endpoint) -> str:
    """A model with tools; with one endpoint (up) when its latency or throughput is given."""
    made = CatalogModelFactory(
        id=f"acme/{name}",
        price_prompt=Decimal(prompt),
        price_completion=Decimal(prompt) * 4,
        supports_tools=True,
    )
    if endpoint:
        ModelEndpointFactory(
            model=made,
            provider_name="Together",
            latency_last_30m=endpoint.get("latency"),
            throughput_last_30m=endpoint.get("throughput"),
        )
    return made.id


def route(client, status: int = 200, **body) -> dict:
    response = client.post_json(
        "/api/v1/route",
        {"role": "coder", "estimated_output_tokens": OUTPUT_TOKENS, "fallback_count": 5, **body},
    )
    assert response.status_code == status, response.content
    if status == 200:
        RouteOut.model_validate_json(response.content)
    return response.json()


def parts(answer: dict) -> dict[str, dict]:
    return {c["model"]: c["parts"] for c in answer["candidates"]}


def test_optimize_latency_weighs_endpoint_latency_and_throughput(api_client, db):
    """The expected time is the endpoint's time to first token plus the output at its throughput:
    the quickest first token is not the quickest answer when its throughput is low."""
    # The dearest is the quickest answer: balanced picks the cheap one, latency the quick one.
    quick = model("quick", "0.00001", latency=250.0, throughput=200.0)  # 250 + 400/200 s = 2,250 ms
    slow = model("slow", "0.0000001", latency=900.0, throughput=40.0)  # 900 + 400/40 s = 10,900 ms
    snappy = model("snappy", "0.000001", latency=100.0, throughput=10.0)  # 100 + 400/10 s = 40,100 ms
    DataVersion.bump(CATALOG_VERSION)
    RoleFactory(slug="coder")

    assert route(api_client)["model"] == slow
    fast = route(api_client, optimize="latency")

    assert fast["model"] == quick
    assert [c["model"] for c in fast["candidates"]] == [quick, slow, snappy]
    seen = parts(fast)
    assert {m: p["latency_source"] for m, p in seen.items()} == dict.fromkeys(seen, "endpoints")
    assert seen[quick]["expected_latency_ms"] == 250 + OUTPUT_TOKENS * 1000 / 200 == 2250
    assert seen[slow]["expected_latency_ms"] == 900 + OUTPUT_TOKENS * 1000 / 40 == 10900
    assert seen[snappy]["expected_latency_ms"] == 100 + OUTPUT_TOKENS * 1000 / 10 == 40100
    assert (seen[quick]["latency_score"], seen[snappy]["latency_score"]) == (1.0, 0.0)
    assert seen[quick]["weights"]["latency"] > 0


def test_the_latency_seen_in_the_ledger_is_the_whole_call_with_no_generation_term_on_top(api_client, db):
    """A model the ledger knows is compared on the mean latency reported for the role and category
    (the whole call, first token to last), not on that plus its endpoint's output time: the order
    follows the true expected wall times against a model known only by its endpoint."""
    # Its endpoint says 300 ms to first token at 50 tokens/s, but the ledger saw 2,000 ms calls.
    ledgered = model("ledgered", latency=300.0, throughput=50.0)
    # Known only by its endpoint: 500 + 400/100 s = 4,500 ms.
    endpointed = model("endpointed", latency=500.0, throughput=100.0)
    DataVersion.bump(CATALOG_VERSION)
    RoleFactory(slug="coder")
    before = parts(route(api_client, optimize="latency"))
    assert before[ledgered]["latency_source"] == "endpoints"
    assert before[ledgered]["expected_latency_ms"] == 300 + OUTPUT_TOKENS * 1000 / 50 == 8300

    # The ranking made above is updated for the models that moved (routing.scoring._updated).
    ingest(
        *({"latency_ms": ms} for ms in (1800, 2200, 1900, 2100)),
        model=ledgered,
        role="coder",
        category="",
        completion_tokens=OUTPUT_TOKENS,
    )
    # As many outcomes for the other (none reporting a latency), so quality does not tip the scale.
    ingest(4, model=endpointed, role="coder", category="", completion_tokens=OUTPUT_TOKENS)

    fast = route(api_client, optimize="latency")

    seen = parts(fast)
    assert seen[ledgered]["latency_source"] == "ledger"
    assert seen[ledgered]["expected_latency_ms"] == 2000  # the mean observed, nothing added
    assert seen[endpointed]["latency_source"] == "endpoints"
    assert seen[endpointed]["expected_latency_ms"] == 500 + OUTPUT_TOKENS * 1000 / 100 == 4500
    assert seen[ledgered]["quality"] == seen[endpointed]["quality"]
    assert [c["model"] for c in fast["candidates"]] == [ledgered, endpointed]
    assert (seen[ledgered]["latency_score"], seen[endpointed]["latency_score"]) == (1.0, 0.0)


def test_a_roles_latency_ceiling_leaves_out_a_model_too_slow_for_it(api_client, db):
    """The ceiling is OpenRouter's preferred_max_latency (p50 time to first token): a model every
    usable endpoint of which is over it is not a candidate, and a 422 counts it as `too_slow`."""
    quick = model("quick", latency=250.0, throughput=200.0)
    model("sluggish", "0.0000001", latency=3000.0, throughput=200.0)
    unmeasured = model("unmeasured")  # no endpoint known: it may be quick, it stays
    DataVersion.bump(CATALOG_VERSION)
    RoleFactory(slug="coder", max_latency_ms=1000)

    answer = route(api_client, optimize="latency")
    assert {c["model"] for c in answer["candidates"]} == {quick, unmeasured}
    assert answer["provider"]["preferred_max_latency"] == 1.0
    assert parts(answer)[unmeasured]["latency_source"] == "unknown"

    refused = route(api_client, 422, optimize="latency", exclude=[quick, unmeasured])
    assert refused["rejected"] == {"excluded": 2, "too_slow": 1}

    # Without the ceiling the same model is a candidate (the cheapest: balanced picks it).
    Role.objects.filter(slug="coder").update(max_latency_ms=None)
    DataVersion.bump("routing")
    assert route(api_client)["model"] == "acme/sluggish"
