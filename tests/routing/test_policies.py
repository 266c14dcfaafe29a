"""Policies under evaluation: read field by field, applied to a copy of the snapshot, deciding
through the real decision code; the baselines decide as they say."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from costs.models import BudgetState
from routing.decision import RouteRequest, RoutingError
from routing.policies import PlannedBudgets, Policy, PolicyError, baselines, decide_under, planned_budgets
from routing.snapshot import current_snapshot
from tests.factories import BudgetFactory, ingest

pytestmark = pytest.mark.django_db


def decide(policy: Policy, **request) -> dict:
    snap = policy.apply(current_snapshot())
    req = RouteRequest(role="coder", category="programming", **request)
    return decide_under(policy, snap, req, planned_budgets(policy))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], ""),
        ({"colour": "red"}, "colour"),
        ({"weights": {"balanced": {"quality": 0.5, "cost": 0.4}}}, "weights.balanced"),
        ({"weights": {"precise": {"quality": 1}}}, "weights.precise"),
        ({"weights": {"high": {"quality": "1"}}}, "weights.high.quality"),
        ({"roles": {"coder": {"exploration_rate": 2}}}, "roles.coder.exploration_rate"),
        ({"roles": {"coder": {"exploration_rate": True}}}, "roles.coder.exploration_rate"),
        ({"roles": {"coder": {"required_capabilities": ["flying"]}}}, "roles.coder.required_capabilities"),
        ({"every_role": {"cooldown": {"failures": 0}}}, "every_role.cooldown.failures"),
        ({"budgets": [{"name": "m", "limit_usd": 5.5}]}, "budgets.0.limit_usd"),
        ({"budgets": [{"name": "m", "limit_usd": "1e400"}]}, "budgets.0.limit_usd"),
        ({"budgets": [{"name": "m", "scope": "role", "limit_usd": "5"}]}, "budgets.0.scope_value"),
        ({"price_basis": "vibes"}, "price_basis"),
        ({"name": ""}, "name"),
    ],
)
def test_a_wrong_field_is_named(data, field):
    with pytest.raises(PolicyError) as caught:
        Policy.from_json(data)
    assert caught.value.field == field


@pytest.mark.parametrize("text", [b"\xff\xfe{", "{\x00}", "{", '{"weights": {"high": {"quality": NaN}}}', "[1, 2"])
def test_unreadable_text_is_a_policy_error(text):
    with pytest.raises(PolicyError):
        Policy.from_text(text)


def test_names_are_checked_against_the_catalog(ranked_trio):
    snap = current_snapshot()
    for data, field in (
        ({"roles": {"writer": {}}}, "roles.writer"),
        ({"roles": {"coder": {"preferences": ["acme/none"]}}}, "roles.coder.preferences"),
        ({"every_role": {"preferences": ["family:none"]}}, "every_role.preferences"),
        ({"every_role": {"default_category": "cooking"}}, "every_role.default_category"),
    ):
        with pytest.raises(PolicyError) as caught:
            Policy.from_json(data).check_against(snap)
        assert caught.value.field == field
    Policy.from_json({"roles": {"coder": {"preferences": ["acme/dear"]}}}).check_against(snap)


def test_applying_a_policy_leaves_the_live_snapshot_alone(ranked_trio):
    live = current_snapshot()
    coder = live.roles["coder"]
    policy = Policy.from_json(
        {
            "weights": {"balanced": {"quality": 0, "reliability": 0, "cost": 1, "latency": 0}},
            "roles": {"coder": {"exploration_rate": 0.5, "preferences": ["acme/dear"]}},
        }
    )
    applied = policy.apply(live)
    assert applied.roles["coder"].exploration_rate == 0.5 and applied.roles["coder"].preferences == [
        ("acme/dear", None)
    ]
    assert live.roles["coder"] is coder and coder.exploration_rate == 0.0 and coder.preferences == []
    assert live.weights is None and applied.weights["balanced"] == (0.0, 0.0, 1.0, 0.0)
    assert applied.cache == {} and applied.columns is None
    assert decide(policy)["model"] == "acme/dear"  # the preference comes first


def test_the_baselines_decide_as_they_say(ranked_trio, settings):
    settings.BOOTSTRAP_FALLBACK_MODELS = ["acme/none", "acme/per-token-cheap"]
    chosen = {
        policy.name: decide(policy, estimated_input_tokens=10_000, estimated_output_tokens=10)["model"]
        for policy in baselines()
    }
    assert chosen == {
        "bootstrap": "acme/per-token-cheap",  # the first of the list the catalog holds
        "cheapest": "acme/prompt-cheap",  # for this request: a long prompt, a short answer
        "top_ranked": "acme/dear",  # rank 1, whatever it costs
        "cost_based": "acme/per-token-cheap",  # LiteLLM's: the lowest price per token
    }


def test_a_policy_that_learns_nothing_ignores_outcomes(ranked_trio):
    ingest(30, model="acme/dear", role="coder", category="programming", success=False)
    weights = {"weights": {"balanced": {"quality": 1, "reliability": 0, "cost": 0, "latency": 0}}}
    learning = Policy.from_json(weights)
    blind = Policy.from_json({**weights, "learn": False})
    assert decide(learning)["model"] != "acme/dear"
    assert decide(blind)["model"] == "acme/dear"


def test_planned_budgets_spend_only_what_the_evaluation_spends(ranked_trio):
    BudgetFactory(name="live", limit_usd=Decimal("1"))  # in force, not in the proposed policy
    policy = Policy.from_json(
        {
            "budgets": [
                {"name": "tight", "scope": "role", "scope_value": "coder", "limit_usd": "0.01", "action": "block"}
            ]
        }
    )
    book = planned_budgets(policy)
    assert [b.name for b in book.budgets] == ["tight"]
    book.at(date(2026, 3, 30))
    book.spend(Decimal("0.009"), role="coder", strategy="", model="acme/dear")
    assert book.state_for(role="coder").state == BudgetState.SOFT_LIMIT
    book.spend(Decimal("0.001"), role="coder", strategy="", model="acme/dear")
    with pytest.raises(RoutingError) as caught:
        decide_under(policy, policy.apply(current_snapshot()), RouteRequest(role="coder"), book)
    assert caught.value.code == "budget_exhausted"
    book.at(date(2026, 4, 1))  # a new month, a new window
    assert book.state_for(role="coder").state == BudgetState.OK
    assert [b.name for b in planned_budgets(Policy()).budgets] == ["live"]
    assert isinstance(book, PlannedBudgets)
