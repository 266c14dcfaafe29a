"""Strict answers (issue 12): unknown categories and models are refused, escalation keeps to the
request's cap and the role's demands, `:free` variants and foreign output modalities stay out
unless a role allows them, and money is a decimal string.

The first tests reproduce the failures measured on the recorded 349-model catalog of 2025-12-18
(loaded through `sync_catalog --from-file`): a coder role needing tools got a `:free` model as
its balanced choice and an image-output model in its escalation chain, and a chain held a model
dearer than the request's cap.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from catalog.models import CATALOG_VERSION, CatalogModel, Category
from core.models import DataVersion
from routing.api import EscalateOut, RankingsOut, RouteOut
from routing.models import Role, RolePreference
from tests.factories import CatalogModelFactory, CategoryFactory, RoleFactory, StrategyFactory, ingest
from tests.fake_openrouter import requires_recorded, snapshot_path

pytestmark = pytest.mark.django_db


def route(client, **body):
    response = client.post_json("/api/v1/route", {"role": "coder", **body})
    if response.status_code == 200:
        RouteOut.model_validate_json(response.content)
    return response


def escalate(client, **body):
    response = client.post_json("/api/v1/escalate", {"role": "coder", **body})
    if response.status_code == 200:
        EscalateOut.model_validate_json(response.content)
    return response


# --- The failures measured on the recorded catalog -------------------------------------------------


@pytest.fixture
def recorded(db) -> dict[str, dict]:
    """The recorded 2025-12-18 catalog, synced from the file; model id -> row."""
    call_command("sync_catalog", "--from-file", str(snapshot_path("2025-12-18")), "--no-progress", stdout=io.StringIO())
    return {row["id"]: row for row in CatalogModel.objects.values()}


def cost_of(row: dict, input_tokens: int = 1_000, output_tokens: int = 500) -> Decimal:
    return row["price_prompt"] * input_tokens + row["price_completion"] * output_tokens + (row["price_request"] or 0)


def text_only(row: dict) -> bool:
    return set(row["output_modalities"]) <= {"text"}


@requires_recorded
def test_a_tools_role_gets_neither_free_variants_nor_image_output_models(api_client, recorded):
    RoleFactory(slug="coder", required_capabilities=["supports_tools"])
    tool_models = [row for row in recorded.values() if row["supports_tools"] and row["status"] == "active"]
    # What the catalog offers that a coder was given before: tool-capable :free variants (free, so
    # they won the cost part outright) and image-output models.
    assert any(row["id"].endswith(":free") for row in tool_models)
    assert any(not text_only(row) for row in tool_models)

    for accuracy in ("high", "balanced", "economy"):
        body = route(api_client, accuracy=accuracy).json()
        answered = [body["model"], *body["fallbacks"], *body["escalation"], *(c["model"] for c in body["candidates"])]
        assert body["escalation"], accuracy  # a chain is there to check
        for model_id in answered:
            assert not model_id.endswith(":free"), (accuracy, model_id)
            assert text_only(recorded[model_id]), (accuracy, model_id)
        assert Decimal(body["estimated_cost_usd"]) > 0


@requires_recorded
def test_a_model_priced_at_zero_counts_as_free(api_client, db):
    # The 2026-06-29 catalog holds `openrouter/free` (a router choosing among free models at
    # random) and a stealth model in its free alpha, at prompt 0 and completion 0 but without the
    # `:free` suffix: simulating routing over it, an exhausted budget's downgrade chose the router.
    call_command("sync_catalog", "--from-file", str(snapshot_path("2026-06-29")), "--no-progress", stdout=io.StringIO())
    zero = set(
        CatalogModel.objects.filter(price_prompt=0, price_completion=0, output_modalities=["text"])
        .exclude(id__endswith=":free")
        .values_list("id", flat=True)
    )
    assert "openrouter/free" in zero
    writer, lenient = RoleFactory(slug="writer"), RoleFactory(slug="lenient", allow_free=True)
    for role in (writer, lenient):
        RolePreference.objects.create(role=role, model_id="openrouter/free", position=0)

    for accuracy in ("economy", "balanced"):
        body = route(api_client, role="writer", accuracy=accuracy, fallback_count=5).json()
        answered = {body["model"], *body["fallbacks"], *(c["model"] for c in body["candidates"])}
        assert not answered & zero and Decimal(body["estimated_cost_usd"]) > 0, accuracy
    assert route(api_client, role="lenient", accuracy="economy").json()["model"] == "openrouter/free"


@requires_recorded
def test_a_role_that_allows_free_variants_and_images_may_get_them(api_client, recorded):
    RoleFactory(
        slug="coder", required_capabilities=["supports_tools"], allow_free=True, output_modalities=["text", "image"]
    )

    balanced = route(api_client, accuracy="balanced").json()
    assert balanced["model"].endswith(":free") and Decimal(balanced["estimated_cost_usd"]) == 0
    high = route(api_client, accuracy="high", fallback_count=5).json()
    chosen = [high["model"], *high["fallbacks"], *high["escalation"]]
    assert any(not text_only(recorded[m]) for m in chosen), chosen


@requires_recorded
def test_the_escalation_chain_keeps_under_the_requests_cap(api_client, recorded):
    RoleFactory(slug="coder", required_capabilities=["supports_tools"], allow_free=True)
    cap = Decimal("0.0000001")

    uncapped = route(api_client, accuracy="balanced").json()
    assert any(cost_of(recorded[m]) > cap for m in uncapped["escalation"])  # the cap has work to do

    capped = route(api_client, accuracy="balanced", max_cost_usd=str(cap)).json()
    assert Decimal(capped["estimated_cost_usd"]) <= cap
    for model_id in [capped["model"], *capped["fallbacks"], *capped["escalation"]]:
        assert cost_of(recorded[model_id]) <= cap, model_id

    # /escalate takes the cap and the size of the request too.
    failed = capped["model"]
    assert any(cost_of(recorded[m]) > cap for m in escalate(api_client, failed_model=failed).json()["chain"])
    body = escalate(
        api_client,
        failed_model=failed,
        max_cost_usd=str(cap),
        estimated_input_tokens=1_000,
        estimated_output_tokens=500,
    ).json()
    for model_id in body["chain"]:
        assert cost_of(recorded[model_id]) <= cap, model_id
    big = escalate(
        api_client, failed_model=failed, max_cost_usd="0.05", estimated_input_tokens=100_000, estimated_output_tokens=0
    ).json()
    assert big["chain"] and all(cost_of(recorded[m], 100_000, 0) <= Decimal("0.05") for m in big["chain"])


# --- Unknown categories and models -----------------------------------------------------------------


@pytest.fixture
def coder(db):
    CatalogModelFactory(id="acme/cheap", price_prompt=Decimal("0.0000001"), price_completion=Decimal("0.0000004"))
    CatalogModelFactory(id="acme/dear", price_prompt=Decimal("0.00001"), price_completion=Decimal("0.00004"))
    CatalogModelFactory(id="acme/gone", status="missing")
    CategoryFactory(slug="programming")
    CategoryFactory(slug="legal")
    CategoryFactory(slug="trivia")
    # Two active categories; the others (migrations seed OpenRouter's) retired.
    Category.objects.exclude(slug__in=["programming", "legal"]).update(active=False)
    DataVersion.bump(CATALOG_VERSION)  # an update() sends no signal
    return RoleFactory(slug="coder")


@pytest.mark.parametrize("category", ["cooking", "trivia"])
def test_an_unknown_or_retired_category_is_a_422_listing_the_known_ones(api_client, coder, category):
    answers = [
        (route(api_client, category=category), "body"),
        (escalate(api_client, failed_model="acme/cheap", category=category), "body"),
        (api_client.get("/api/v1/rankings", {"category": category}), "query"),
    ]
    for response, where in answers:
        assert response.status_code == 422, response.content
        body = response.json()
        assert body["code"] == "unknown_category"
        assert body["known"] == ["legal", "programming"]
        assert [(e["in"], e["field"]) for e in body["errors"]] == [(where, "category")]


def test_an_active_category_without_rankings_is_known(api_client, coder):
    assert route(api_client, category="legal").json()["category"] == "legal"
    assert escalate(api_client, failed_model="acme/cheap", category="legal").status_code == 200
    assert api_client.get("/api/v1/rankings", {"category": "legal"}).json()["items"] == []


def test_retiring_a_category_reaches_the_next_decision(api_client, coder):
    assert route(api_client, category="legal").status_code == 200
    Category.objects.filter(slug="legal").update(active=False)
    Category.objects.get(slug="programming").save()  # a save, as the admin makes it, bumps the catalog version

    response = route(api_client, category="legal")
    assert response.status_code == 422 and response.json()["known"] == ["programming"]


def test_a_roles_default_category_retired_since_is_no_default(api_client, coder):
    """A role keeps its default category when the category is retired (nothing deletes it): its
    decisions then take the priors, as with no default, and its edit asks for another."""
    coder.default_category = Category.objects.get(slug="legal")
    coder.save()
    assert route(api_client).json()["category"] == "legal"

    legal = Category.objects.get(slug="legal")
    legal.active = False
    legal.save()  # as the admin retires it: the catalog version moves

    assert route(api_client).json()["category"] is None
    coder.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        coder.full_clean()
    assert "'legal' is retired" in str(refused.value.message_dict["default_category"])


def test_escalating_from_a_model_not_in_the_catalog_is_a_404(api_client, coder):
    response = escalate(api_client, failed_model="acme/never-heard-of")
    assert response.status_code == 404 and response.json()["code"] == "unknown_model"
    # A model the catalog still holds, though OpenRouter no longer lists it, is escalated from.
    body = escalate(api_client, failed_model="acme/gone").json()
    assert body["chain"] and "acme/gone" not in body["chain"]


def test_escalation_over_the_cap_leaves_nothing(api_client, coder):
    assert escalate(api_client, failed_model="acme/cheap").json()["chain"] == ["acme/dear"]
    # acme/dear costs 0.00001 × 1000 + 0.00004 × 500 = 0.03
    assert escalate(api_client, failed_model="acme/cheap", max_cost_usd="0.03").json()["chain"] == ["acme/dear"]
    assert escalate(api_client, failed_model="acme/cheap", max_cost_usd="0.0299").json()["chain"] == []
    bad = escalate(api_client, failed_model="acme/cheap", max_cost_usd="-1")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "max_cost_usd"


# --- What a role demands of a model ----------------------------------------------------------------


def test_output_modalities_and_free_variants_are_checked_where_a_role_is_edited(db):
    image = CatalogModelFactory(id="acme/painter", output_modalities=["image", "text"])
    free = CatalogModelFactory(id="acme/cheap:free", price_prompt=Decimal(0), price_completion=Decimal(0))
    role = RoleFactory(slug="writer")
    assert role.output_modalities == ["text"] and role.allow_free is False

    role.output_modalities = ["text", "smell"]
    with pytest.raises(ValidationError, match="Unknown modalities: smell"):
        role.full_clean()
    role.output_modalities = []
    with pytest.raises(ValidationError, match="one or more"):
        role.full_clean()
    role.output_modalities = ["text"]
    role.full_clean()

    with pytest.raises(ValidationError, match="outputs image"):
        RolePreference(role=role, model=image).full_clean()
    with pytest.raises(ValidationError, match=":free variant"):
        RolePreference(role=role, model=free).full_clean()
    Role.objects.filter(pk=role.pk).update(allow_free=True, output_modalities=["text", "image"])
    role.refresh_from_db()
    RolePreference(role=role, model=image, position=1).full_clean()
    RolePreference(role=role, model=free, position=2).full_clean()


def test_rejections_are_counted_by_reason(api_client, db):
    CatalogModelFactory(id="acme/painter", output_modalities=["image", "text"])
    CatalogModelFactory(id="acme/cheap:free", price_prompt=Decimal(0), price_completion=Decimal(0))
    RoleFactory(slug="coder")

    response = route(api_client)
    assert response.status_code == 422
    assert response.json()["rejected"] == {"free_variant": 1, "wrong_output_modality": 1}


# --- Money as decimal strings ----------------------------------------------------------------------


def test_the_recommended_strategy_gives_its_cost_as_an_exact_decimal_string(api_client, coder):
    StrategyFactory(slug="single")
    # 30 requests costing 0.001 in all: 0.0000333… each, to the 14 decimals money is kept with.
    costs = ["0.0001"] * 7 + ["0.00003"] * 10
    ingest(
        *[{"cost_usd": cost, "success": i % 10 != 0} for i, cost in enumerate(costs + ["0"] * 13)],
        model="acme/cheap",
        role="coder",
        strategy="single",
    )

    strategy = route(api_client).json()["recommended_strategy"]
    assert strategy == {
        "strategy": "single",
        "success_rate": 0.9,
        "samples": 30,
        "cost_per_request_usd": "0.00003333333333",
    }


def test_rankings_give_the_cost_per_success_as_an_exact_decimal_string(api_client, coder):
    ingest(
        {"cost_usd": "0.00000125", "success": True},
        {"cost_usd": "0.00000125", "success": True},
        {"cost_usd": "0.1", "success": False},
        model="acme/dear",
        role="coder",
    )
    ingest({"cost_usd": "0", "success": True}, model="acme/cheap", role="coder")

    response = api_client.get("/api/v1/rankings", {"role": "coder"})
    assert response.status_code == 200
    items = {row["model"]: row for row in RankingsOut.model_validate_json(response.content).model_dump()["items"]}
    assert items["acme/dear"]["cost_per_success_usd"] == "0.05000125"
    assert items["acme/cheap"]["cost_per_success_usd"] == "0"
    unpaid = api_client.get("/api/v1/rankings", {"role": "coder", "min_samples": 0}).json()["items"]
    assert all(isinstance(row["cost_per_success_usd"], str) for row in unpaid)
