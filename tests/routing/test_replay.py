"""Replaying the ledger under policies: costs at the prices in force then, expected success from
the posteriors, how much rests on priors, budgets that bite, the baselines, limits and skips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import PriceChange
from routing.policies import Policy
from routing.replay import Replayer, replay
from tests.factories import CatalogModelFactory, CategoryFactory, RoleFactory, ingest

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def catalog(ranked_trio):
    return ranked_trio


def by_name(answer: dict) -> dict[str, dict]:
    return {p["name"]: p for p in answer["policies"]}


def test_cost_is_at_the_price_in_force_when_the_event_happened(catalog):
    # acme/dear's prompt price halved two days ago: 0.00002 before, 0.00001 since.
    PriceChange.objects.create(
        model=catalog["dear"], field="prompt", old=Decimal("0.00002"), new=Decimal("0.00001"), observed_at=ago(2)
    )
    ingest(
        {"occurred_at": ago(3), "success": True},
        {"occurred_at": ago(1), "success": False},
        model="acme/dear",
        role="coder",
        category="programming",
        prompt_tokens=1000,
        completion_tokens=100,
    )
    answer = replay([], days=7)
    policies = by_name(answer)
    assert answer["requests"] == 2 and answer["events_in_window"] == 2
    assert list(policies) == ["current", "bootstrap", "cheapest", "top_ranked", "cost_based", "recorded"]
    top = policies["top_ranked"]
    assert top["model_mix"] == {"acme/dear": 1.0}
    # 1000 x 0.00002 + 100 x 0.00004 before the change, 1000 x 0.00001 + 100 x 0.00004 after
    assert top["cost_usd"] == "0.038"
    assert policies["recorded"]["cost_usd"] == "0.038"  # the ledger priced it the same way
    assert policies["recorded"]["expected_success"] == 0.5
    # the posterior for (dear, coder, programming): 1 success of 2 on a prior of 1.0 (rank 1) weighing 10
    assert top["expected_success"] == round((1 + 10 * 1.0) / (2 + 10), 4)
    assert top["prior_share"] == round(10 / 12, 4)
    # two decisions, each expecting 11/12 of a success
    assert top["cost_per_success_usd"] == str(
        (Decimal("0.038") / Decimal(repr(2 * 11 / 12))).quantize(Decimal("1e-14"))
    )


def test_everything_rests_on_priors_without_outcomes(catalog):
    # Outcomes reported for a model the catalog does not hold teach nothing about the candidates.
    ingest(3, model="elsewhere/model", role="coder", category="programming", occurred_at=ago(1))
    answer = replay([], days=7)
    for policy in answer["policies"][:-1]:
        assert policy["prior_share"] == 1.0, policy["name"]
    cheapest = by_name(answer)["cheapest"]
    # the cheapest for 100 prompt and 10 completion tokens is per-token-cheap, ranked 2 of 3: prior 0.7
    assert cheapest["model_mix"] == {"acme/per-token-cheap": 1.0} and cheapest["expected_success"] == 0.7


def test_the_baselines_choose_as_they_say(catalog, settings):
    settings.BOOTSTRAP_FALLBACK_MODELS = ["acme/none", "acme/per-token-cheap"]
    ingest(
        2,
        model="elsewhere/model",
        role="coder",
        category="programming",
        prompt_tokens=10_000,
        completion_tokens=10,
        occurred_at=ago(1),
    )
    mixes = {p["name"]: p["model_mix"] for p in replay([], days=7)["policies"]}
    assert mixes["bootstrap"] == {"acme/per-token-cheap": 1.0}
    assert mixes["cheapest"] == {"acme/prompt-cheap": 1.0}
    assert mixes["top_ranked"] == {"acme/dear": 1.0}
    assert mixes["cost_based"] == {"acme/per-token-cheap": 1.0}
    assert mixes["recorded"] == {"elsewhere/model": 1.0}


def test_a_tight_budget_bites(catalog):
    ingest(4, model="acme/dear", role="coder", category="programming", occurred_at=ago(1))
    block = Policy.from_json({"name": "block", "budgets": [{"name": "t", "limit_usd": "0.0000001", "action": "block"}]})
    downgrade = Policy.from_json(
        {
            "name": "downgrade",
            "weights": {"economy": {"quality": 1, "reliability": 0, "cost": 0, "latency": 0}},
            "budgets": [{"name": "t", "limit_usd": "0.0000001", "action": "downgrade"}],
        }
    )
    policies = by_name(replay([block, downgrade], days=7))
    # the first decision spends past the limit; the next three are refused
    assert policies["block"]["budget_bites"] == 3 and policies["block"]["refused"] == 3
    assert policies["block"]["model_mix"] and sum(policies["block"]["model_mix"].values()) == 1.0
    # downgraded to economy (here weighing quality alone): served, but each one bitten
    assert policies["downgrade"]["budget_bites"] == 3 and policies["downgrade"]["refused"] == 0
    assert policies["current"]["budget_bites"] == 0  # no budget in force


def test_limit_replays_the_most_recent_events(catalog):
    ingest(3, model="acme/dear", role="coder", category="programming", occurred_at=ago(3))
    ingest(2, model="acme/prompt-cheap", role="coder", category="programming", occurred_at=ago(1))
    answer = replay([], days=7, limit=2)
    assert answer["events_in_window"] == 5 and answer["requests"] == 2 and answer["sampling"] == "most_recent"
    assert by_name(answer)["recorded"]["model_mix"] == {"acme/prompt-cheap": 1.0}


def test_skipped_events_say_why_and_old_or_probe_events_are_left_out(catalog):
    RoleFactory(slug="retired", active=False)
    CategoryFactory(slug="cooking", active=False)
    ingest(
        {"role": "retired"},
        {"role": "nobody"},
        {"role": ""},
        {"category": "cooking"},
        {"category": "programming"},
        {"category": "programming", "strategy": "health_check"},
        {"category": "programming", "occurred_at": ago(10)},
        model="acme/dear",
        role="coder",
        occurred_at=ago(1),
    )
    answer = replay([], days=7)
    assert answer["events_in_window"] == 5 and answer["requests"] == 1
    assert answer["skipped"] == {"category_not_active": 1, "no_role": 1, "role_not_active": 2}


def test_tools_require_tool_support_and_exploration_is_repeatable(catalog):
    CatalogModelFactory(id="acme/no-tools", price_prompt=Decimal("0.00000001"), price_completion=Decimal("0.00000001"))
    ingest(
        20, model="acme/dear", role="coder", category="programming", tools=["search"], occurred_at=ago(1), success=False
    )
    exploring = Policy.from_json(
        {
            "name": "exploring",
            "weights": {"balanced": {"quality": 1, "reliability": 0, "cost": 0, "latency": 0}},
            "every_role": {"exploration_rate": 1},
        }
    )
    first = replay([exploring], days=7, seed=7)
    again = replay([exploring], days=7, seed=7)
    assert by_name(first)["exploring"] == by_name(again)["exploring"]
    assert by_name(first)["exploring"]["explored"] > 0
    for policy in first["policies"][:-1]:
        assert "acme/no-tools" not in policy["model_mix"], policy["name"]


def test_memoising_decisions_changes_no_result(catalog, monkeypatch):
    RoleFactory(slug="writer")
    for day in (5, 3, 1):
        ingest(
            *(
                {"prompt_tokens": 10 + 97 * i, "completion_tokens": 5 + 41 * i, "tools": ["search"] if i % 3 else []}
                for i in range(30)
            ),
            model="acme/dear",
            role="coder" if day != 3 else "writer",
            category="programming",
            occurred_at=ago(day),
        )
    budgets = [  # (two exhausted budgets with different actions: the first listed decides)
        {"name": "writer", "scope": "role", "scope_value": "writer", "limit_usd": "0.001", "action": "block"},
        {"name": "day", "period": "day", "limit_usd": "0.02", "action": "downgrade"},
        {"name": "dear", "scope": "model", "scope_value": "acme/dear", "limit_usd": "0.01", "action": "block"},
    ]
    tight = Policy.from_json({"name": "tight", "budgets": budgets})
    memoised = replay([tight], days=7)
    monkeypatch.setattr(Replayer, "memoise", False)
    assert replay([tight], days=7)["policies"] == memoised["policies"]
    bites = by_name(memoised)["tight"]
    assert bites["budget_bites"] > 0 and bites["refused"] > 0


def test_days_out_of_range_are_refused(db):
    with pytest.raises(ValueError, match="days"):
        replay([], days=0)


def test_a_policy_with_a_lower_cooldown_threshold_leaves_a_failing_model_out_sooner(catalog):
    # acme/dear fails twice with a provider error, ten seconds apart, then is called on.
    start = ago(1)
    ingest(
        *[
            {"occurred_at": start + timedelta(seconds=10 * i), "success": False, "error": "provider_error"}
            for i in range(2)
        ],
        *[{"occurred_at": start + timedelta(seconds=20 + 5 * i), "success": True} for i in range(6)],
        model="acme/dear",
        role="coder",
        category="programming",
    )
    prefer = {"roles": {"coder": {"preferences": ["acme/dear"]}}}
    strict = Policy.from_json({**prefer, "name": "strict", "every_role": {"cooldown": {"failures": 1, "seconds": 600}}})
    lenient = Policy.from_json({**prefer, "name": "lenient"})  # the settings': 3 failures in 60 s

    policies = by_name(replay([strict, lenient], days=7))

    assert policies["lenient"]["cooldown_trips"] == 0 and policies["lenient"]["model_mix"] == {"acme/dear": 1.0}
    # Tripped by the first failure: only that first request still went to acme/dear.
    assert policies["strict"]["cooldown_trips"] == 1
    assert policies["strict"]["model_mix"]["acme/dear"] == round(1 / 8, 4)
    assert policies["recorded"]["cooldown_trips"] is None
