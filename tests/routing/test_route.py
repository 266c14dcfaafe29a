"""POST /route and /escalate over a small hand-made catalog: each rule of the decision."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import CATALOG_VERSION, Category, CategoryRanking, Family
from catalog.sync import _fail
from core.models import DataVersion
from costs.models import BudgetAction, BudgetScope
from health.models import HEALTH_VERSION
from routing.api import RouteOut
from tests.factories import (
    BudgetFactory,
    CatalogModelFactory,
    EscalationOverrideFactory,
    FamilyFactory,
    RoleFactory,
    RolePreferenceFactory,
    SyncRunFactory,
    ingest,
)

pytestmark = pytest.mark.django_db

REASONING = ["tools", "reasoning", "max_tokens"]


@pytest.fixture
def catalog(db):
    fam = FamilyFactory(slug="acme-pro", name="Acme Pro", pattern="acme/pro-*", priority=5)
    models = {
        "cheap": CatalogModelFactory(
            id="acme/cheap",
            price_prompt=Decimal("0.0000001"),
            price_completion=Decimal("0.0000004"),
            supported_parameters=["tools"],
            supports_tools=True,
        ),
        "mid": CatalogModelFactory(
            id="acme/mid",
            price_prompt=Decimal("0.000001"),
            price_completion=Decimal("0.000004"),
            supported_parameters=["tools"],
            supports_tools=True,
        ),
        "pro": CatalogModelFactory(
            id="acme/pro-1",
            family=fam,
            price_prompt=Decimal("0.00001"),
            price_completion=Decimal("0.00004"),
            supports_tools=True,
            supports_reasoning=True,
        ),
        "pro2": CatalogModelFactory(
            id="acme/pro-2",
            family=fam,
            price_prompt=Decimal("0.000012"),
            price_completion=Decimal("0.00005"),
            supports_tools=True,
            supports_reasoning=True,
        ),
        "notools": CatalogModelFactory(
            id="acme/no-tools", price_prompt=Decimal("0.00000005"), price_completion=Decimal("0.0000001")
        ),
        "router": CatalogModelFactory(
            id="acme/router", variable_pricing=True, price_prompt=None, price_completion=None, supports_tools=True
        ),
        "gone": CatalogModelFactory(id="acme/gone", status="missing", supports_tools=True),
        "off": CatalogModelFactory(id="acme/off", enabled=False, supports_tools=True),
        "small": CatalogModelFactory(id="acme/small-ctx", context_length=4096, supports_tools=True),
    }
    return models


@pytest.fixture
def coder(catalog):
    return RoleFactory(slug="coder", required_capabilities=["supports_tools"], min_context_length=32_000)


def route(client, **body):
    response = client.post_json("/api/v1/route", {"role": "coder", **body})
    if response.status_code == 200:  # every answer keeps the documented schema
        RouteOut.model_validate_json(response.content)
    return response


def test_it_routes_to_an_eligible_model_with_fallbacks_and_scores(api_client, coder):
    response = route(api_client)

    assert response.status_code == 200, response.content
    body = response.json()
    eligible = {"acme/cheap", "acme/mid", "acme/pro-1", "acme/pro-2"}
    assert body["model"] in eligible and set(body["fallbacks"]) <= eligible
    assert len(body["fallbacks"]) == 2 and body["model"] not in body["fallbacks"]
    assert body["source"] == "catalog" and body["decision_id"]
    assert {c["model"] for c in body["candidates"]} == eligible
    parts = body["candidates"][0]["parts"]
    assert {"quality", "prior", "reliability", "cost_score", "samples"} <= set(parts)
    assert Decimal(body["estimated_cost_usd"]) > 0


def test_economy_picks_the_cheapest_and_high_picks_reasoning(api_client, coder):
    assert route(api_client, accuracy="economy").json()["model"] == "acme/cheap"
    high = route(api_client, accuracy="high").json()
    assert high["model"] in {"acme/pro-1", "acme/pro-2"}


def test_an_unknown_role_is_404(api_client, catalog):
    response = api_client.post_json("/api/v1/route", {"role": "nobody"})
    assert response.status_code == 404 and response.json()["code"] == "unknown_role"


def test_no_eligible_model_counts_rejections_per_reason(api_client, coder):
    response = route(api_client, required_capabilities=["supports_video"])

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "no_eligible_model"
    rejected = body["rejected"]
    assert rejected["lacks_supports_video"] == 4
    assert rejected["missing"] == 1 and rejected["disabled"] == 1 and rejected["variable_pricing"] == 1
    assert rejected["lacks_supports_tools"] == 1 and rejected["context_too_small"] == 1


def test_exclusions_and_max_cost_are_honoured(api_client, coder):
    body = route(
        api_client,
        exclude=["acme/cheap"],
        accuracy="economy",
        estimated_input_tokens=1000,
        estimated_output_tokens=1000,
    ).json()
    assert body["model"] == "acme/mid" and "acme/cheap" not in body["fallbacks"]

    capped = route(
        api_client, accuracy="high", max_cost_usd="0.01", estimated_input_tokens=1000, estimated_output_tokens=1000
    ).json()
    # pro models cost 0.05 and 0.062 for this request: over the cap
    assert capped["model"] in {"acme/cheap", "acme/mid"}
    assert Decimal(capped["estimated_cost_usd"]) <= Decimal("0.01")


def test_role_preferences_come_first_in_order(api_client, coder, catalog):
    RolePreferenceFactory(role=coder, model=catalog["mid"], position=0)
    RolePreferenceFactory(role=coder, family=Family.objects.get(slug="acme-pro"), position=1)

    body = route(api_client, accuracy="economy").json()

    assert body["model"] == "acme/mid"
    assert set(body["fallbacks"]) == {"acme/pro-1", "acme/pro-2"}


def test_a_disabled_model_disappears_from_the_next_decision(api_client, coder, catalog):
    assert route(api_client, accuracy="economy").json()["model"] == "acme/cheap"
    catalog["cheap"].enabled = False
    catalog["cheap"].save()

    body = route(api_client, accuracy="economy").json()
    assert body["model"] != "acme/cheap" and "acme/cheap" not in body["fallbacks"]


def test_outcomes_move_the_learned_quality(api_client, coder):
    ingest(*[{"success": i % 10 == 0} for i in range(200)], model="acme/cheap", prompt_tokens=10, completion_tokens=10)

    body = route(api_client, accuracy="balanced").json()
    cheap = next(c for c in body["candidates"] if c["model"] == "acme/cheap")
    assert cheap["parts"]["samples"] == 200
    assert cheap["parts"]["success_rate"] == 0.1
    assert cheap["parts"]["quality"] < cheap["parts"]["prior"]
    assert body["model"] != "acme/cheap"


def test_a_blocking_budget_answers_402_and_a_downgrading_one_goes_economy(api_client, coder):
    budget = BudgetFactory(
        name="coder", scope=BudgetScope.ROLE, scope_value="coder", limit_usd=Decimal("1"), action=BudgetAction.BLOCK
    )
    ingest(model="acme/mid", role="coder", cost_usd=Decimal("1"))

    blocked = route(api_client, accuracy="high")
    assert blocked.status_code == 402 and blocked.json()["code"] == "budget_exhausted"
    assert blocked.json()["budget"]["spent_usd"] == "1"

    budget.action = BudgetAction.DOWNGRADE
    budget.save()
    downgraded = route(api_client, accuracy="high").json()
    assert downgraded["downgraded"] == "budget_exhausted" and downgraded["accuracy"] == "economy"
    assert downgraded["model"] == "acme/cheap"
    assert downgraded["budget"]["state"] == "exhausted"


def test_an_exhausted_budget_that_downgrades_moves_the_role_off_its_dear_preferences(api_client, coder, catalog):
    # (found by replaying the ledger: a downgrade that kept the role's two dearest preferred
    # models first changed the accuracy and not the bill)
    RolePreferenceFactory(role=coder, model=catalog["mid"], position=0)
    budget = BudgetFactory(name="coder", scope=BudgetScope.ROLE, scope_value="coder", limit_usd=Decimal("1"))
    assert route(api_client).json()["model"] == "acme/mid"  # preferred, while the budget is OK

    ingest(model="acme/mid", role="coder", cost_usd=Decimal("0.9"))
    soft = route(api_client).json()
    assert soft["downgraded"] == "budget_soft_limit" and soft["model"] == "acme/mid"  # leaning, still preferred

    ingest(model="acme/mid", role="coder", cost_usd=Decimal("0.1"))
    exhausted = route(api_client).json()
    assert exhausted["downgraded"] == "budget_exhausted" and exhausted["model"] == "acme/cheap"
    assert budget.action == BudgetAction.DOWNGRADE


def test_the_category_ranking_drives_quality(api_client, coder, catalog):
    category = Category.objects.get(slug="programming")
    run = SyncRunFactory(kind="research")
    for rank, key in enumerate(["mid", "cheap", "pro"], start=1):
        CategoryRanking.objects.create(
            category=category, model=catalog[key], rank=rank, run=run, observed_at=run.started_at
        )

    body = route(api_client, category="programming").json()
    mid = next(c for c in body["candidates"] if c["model"] == "acme/mid")
    assert mid["parts"]["prior_source"].startswith("rank 1 of 3")


def test_an_empty_catalog_answers_with_the_bootstrap_models(api_client, settings, db):
    RoleFactory(slug="coder")
    settings.BOOTSTRAP_FALLBACK_MODELS = ["boot/a", "boot/b", "boot/c"]

    body = route(api_client).json()

    assert body["source"] == "bootstrap" and body["model"] == "boot/a" and body["fallbacks"] == ["boot/b", "boot/c"]


def test_a_catalog_of_disabled_models_after_a_good_sync_is_no_eligible_model_not_bootstrap(api_client, settings, db):
    # The bootstrap rule (no routable model *and* the last sync failed) lived in a selector that
    # routing never called: any catalog without routable models answered with the bootstrap list.
    RoleFactory(slug="coder")
    settings.BOOTSTRAP_FALLBACK_MODELS = ["boot/a", "boot/b"]
    CatalogModelFactory(id="acme/off", enabled=False)
    SyncRunFactory(kind="sync", status="succeeded", finished_at=datetime.now(UTC))
    DataVersion.bump(CATALOG_VERSION)

    response = route(api_client)
    assert response.status_code == 422 and response.json()["code"] == "no_eligible_model"

    failed = SyncRunFactory(kind="sync", status="running")
    _fail(failed, "OpenRouter is unreachable")
    failed.save()

    body = route(api_client).json()
    assert body["source"] == "bootstrap" and body["model"] == "boot/a"


def test_escalate_uses_overrides_first_then_dynamic(api_client, coder, catalog):
    EscalationOverrideFactory(from_model=catalog["cheap"], to_model=catalog["pro2"])

    first = api_client.post_json(
        "/api/v1/escalate", {"role": "coder", "failed_model": "acme/cheap", "reason": "timeout"}
    ).json()
    assert first["model"] == "acme/pro-2" and first["source"] == "override"
    assert "acme/cheap" not in first["chain"] and len(first["chain"]) == len(set(first["chain"]))

    excluded = api_client.post_json(
        "/api/v1/escalate", {"role": "coder", "failed_model": "acme/cheap", "exclude": ["acme/pro-2"]}
    ).json()
    assert excluded["model"] not in {"acme/pro-2", "acme/cheap"} and excluded["source"] == "dynamic"


def test_escalating_from_the_best_model_leaves_nothing(api_client, coder, catalog):
    body = api_client.post_json(
        "/api/v1/escalate",
        {"role": "coder", "failed_model": "acme/pro-2", "exclude": ["acme/pro-1", "acme/mid", "acme/cheap"]},
    ).json()
    assert body == {
        "model": None,
        "chain": [],
        "steps": [],
        "source": None,
        "catalog_version": body["catalog_version"],
        "degraded": False,
    }


def test_route_needs_the_route_scope(make_api_key, coder):
    from tests.conftest import ApiClient

    assert ApiClient(make_api_key("usage:write")).post_json("/api/v1/route", {"role": "coder"}).status_code == 403
    assert ApiClient().post_json("/api/v1/route", {"role": "coder"}).status_code == 401


def test_a_client_can_check_its_key_without_a_query(make_api_key, django_assert_num_queries, settings):
    from tests.conftest import ApiClient

    settings.LLMHIVE_SNAPSHOT_CHECK_SECONDS = 60  # a slow machine must not reach the next version check

    client = ApiClient(make_api_key("usage:write", name="orchestrator"))
    assert client.get("/api/v1/key").json()["scopes"] == ["usage:write"]
    with django_assert_num_queries(0):
        body = client.get("/api/v1/key").json()
    assert body["name"] == "orchestrator" and body["prefix"]
    assert ApiClient("lh_wrong").get("/api/v1/key").status_code == 401


def test_a_model_failing_its_health_checks_is_not_chosen_until_it_recovers(api_client, coder, settings):
    from core.models import DataVersion
    from health.models import ModelReliability

    settings.LLMHIVE_HEALTH_FAILURES_BEFORE_ALERT = 3
    chosen = route(api_client, accuracy="economy").json()["model"]
    row = ModelReliability.objects.create(
        model_id=chosen, reliability=0.4, consecutive_failures=3, checks_count=5, last_checked_at=datetime.now(UTC)
    )
    DataVersion.bump(HEALTH_VERSION)

    answer = route(api_client, accuracy="economy", fallback_count=5).json()
    assert chosen not in [answer["model"], *answer["fallbacks"], *answer["escalation"]]
    assert (
        api_client.post_json("/api/v1/escalate", {"role": "coder", "failed_model": "acme/pro-2"}).json()["model"]
        != chosen
    )

    row.consecutive_failures = 0
    row.save()
    DataVersion.bump(HEALTH_VERSION)
    assert route(api_client, accuracy="economy").json()["model"] == chosen


def test_when_every_model_is_down_the_refusal_says_so(api_client, coder, settings):
    from core.models import DataVersion
    from health.models import ModelReliability

    for model_id in ("acme/cheap", "acme/mid", "acme/pro-1", "acme/pro-2"):
        ModelReliability.objects.create(
            model_id=model_id,
            reliability=0.0,
            consecutive_failures=9,
            checks_count=9,
            last_checked_at=datetime.now(UTC),
        )
    DataVersion.bump(HEALTH_VERSION)

    response = route(api_client)
    assert response.status_code == 422 and response.json()["rejected"]["unhealthy"] == 4
