"""The simulation with known truth: policies routing online through the real decision, memory and
cooldown code, in a world whose hidden success probabilities the tests plant."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from catalog.models import Category, CategoryRanking
from routing import decision
from routing.models import ModelCooldown, Role, StrategyStat
from routing.policies import Policy, PolicyError, RoleChanges
from routing.simulation import World, format_table, simulate
from tests.factories import CatalogModelFactory, CategoryFactory, RoleFactory, SyncRunFactory

pytestmark = pytest.mark.django_db

MODELS = 8
# Measured: with the planted model ranked last, explore_10 sends the majority of every 50 requests
# to it from request 320 on with seed 3 (from 320 to 820 over seeds 1 to 8); the policy in force,
# exploring nothing, never finds it. Pinned with margin.
FOUND_SEED = 3
FOUND_WITHIN = 600
WINDOW = 50


@pytest.fixture
def ranked(db) -> list[str]:
    """Eight models at one price, ranked 1 to 8 in programming; the one role, coder, asks for it."""
    category = CategoryFactory(slug="programming")
    run = SyncRunFactory(kind="research")
    ids = []
    for rank in range(1, MODELS + 1):
        model = CatalogModelFactory(id=f"acme/model-{rank}")
        CategoryRanking.objects.create(category=category, model=model, rank=rank, run=run, observed_at=run.started_at)
        ids.append(model.id)
    Role.objects.update(active=False)
    RoleFactory(slug="coder", default_category=Category.objects.get(slug="programming"), exploration_rate=0.0)
    return ids


def world(truth: dict[str, float]) -> World:
    return World(truth={(model, "programming"): p for model, p in truth.items()}, noise=0.0)


def entry(result: dict, name: str) -> dict:
    return next(p for p in result["policies"] if p["name"] == name)


def found_at(choices: list[str | None], model: str) -> int | None:
    """The first request from which the majority of the next WINDOW go to `model`."""
    for start in range(0, len(choices) - WINDOW + 1, 10):
        if sum(1 for m in choices[start : start + WINDOW] if m == model) > WINDOW // 2:
            return start
    return None


def test_the_same_seed_gives_the_same_answer_and_another_seed_another(ranked):
    first = simulate(seed=1, requests=300)
    again = simulate(seed=1, requests=300)
    other = simulate(seed=2, requests=300)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert json.dumps(first, sort_keys=True) != json.dumps(other, sort_keys=True)
    categories = Category.objects.filter(active=True).count() + 1  # (and none)
    assert first["world"] == {"models": MODELS, "categories": categories, "noise": 0.1}
    assert [p["name"] for p in first["policies"]] == [
        "current",
        "explore_10",
        "bootstrap",
        "cheapest",
        "top_ranked",
        "cost_based",
    ]
    current = entry(first, "current")
    assert Decimal(current["cost_usd"]) > 0 and isinstance(current["cost_usd"], str)
    assert sum(current["model_mix"].values()) + current["unrouted"] == 300
    assert "current" in format_table(first)


def test_exploration_finds_a_planted_best_model_the_prior_ranks_last(ranked):
    planted = ranked[-1]
    truth = dict.fromkeys(ranked, 0.5) | {planted: 0.95}
    result = simulate(seed=FOUND_SEED, requests=FOUND_WITHIN + WINDOW, world=world(truth), outage=False, trace=True)
    explore = entry(result, "explore_10")
    at = found_at(explore["choices"], planted)
    assert at is not None and at <= FOUND_WITHIN, at
    # Without exploration the prior keeps it out of sight.
    assert found_at(entry(result, "current")["choices"], planted) is None
    assert explore["regret"] < entry(result, "current")["regret"]


# Over 1,500 requests it held for seeds 1 to 8 (explore_10's regret 172 to 298 against 238 to 478);
# over 600, exploration has not yet paid for itself with every seed.
@pytest.mark.parametrize("seed", [1, 4])
def test_exploration_lowers_regret_where_the_prior_is_wrong(ranked, seed):
    # The truth runs against the ranking: the top-ranked model is the worst.
    truth = {model: 0.15 + 0.1 * i for i, model in enumerate(ranked)}
    result = simulate(seed=seed, requests=1500, world=world(truth), outage=False)
    assert entry(result, "explore_10")["regret"] < entry(result, "current")["regret"]


def test_a_policy_that_knows_the_truth_has_no_regret_and_none_is_negative(ranked):
    # The truth is the ranking: always the top-ranked is the oracle.
    truth = {model: 0.9 - 0.1 * i for i, model in enumerate(ranked)}
    result = simulate(seed=5, requests=200, world=world(truth), outage=False)
    assert entry(result, "top_ranked")["regret"] == 0
    assert entry(result, "top_ranked")["expected_success"] == result["oracle"]["expected_success"] == 0.9
    assert all(p["regret"] >= 0 and all(v >= 0 for v in p["regret_curve"].values()) for p in result["policies"])


def test_the_cooldown_takes_the_failing_model_out(ranked, settings):
    no_cooldown = Policy(name="no_cooldown", every_role=RoleChanges(cooldown={"failures": 1_000_000}))
    result = simulate(seed=6, requests=600, policies=[no_cooldown], batch=20)
    failing = result["outage"]["model"]
    assert result["outage"]["at_request"] == 400 and failing in ranked
    current = entry(result, "current")["outage"]
    assert 0 < current["sent_to_failing"] <= settings.LLMHIVE_COOLDOWN_FAILURES + 20
    assert current["seconds_to_cooldown"] is not None
    unguarded = entry(result, "no_cooldown")["outage"]
    assert unguarded["seconds_to_cooldown"] is None
    assert unguarded["sent_to_failing"] > current["sent_to_failing"]
    # Nothing was written: the simulation runs beside live traffic.
    assert not ModelCooldown.objects.exists() and not StrategyStat.objects.exists()


def test_bad_arguments_are_refused(ranked):
    with pytest.raises(ValueError, match="requests"):
        simulate(seed=1, requests=0)
    with pytest.raises(ValueError, match="policies"):
        simulate(seed=1, requests=10, policies=[Policy(name="current")])
    with pytest.raises(PolicyError) as caught:
        simulate(seed=1, requests=10, policies=[Policy.from_json({"roles": {"nobody": {"exploration_rate": 0.2}}})])
    assert caught.value.field == "roles.nobody"


def test_a_failing_model_is_tried_while_half_open_and_reopened_for_longer(ranked, settings):
    settings.LLMHIVE_COOLDOWN_SECONDS = 5  # 50 requests at 10 a second
    result = simulate(seed=6, requests=600, outage=True)
    current = entry(result, "current")["outage"]
    # Each half-open try fails and reopens it for twice as long: a few tries, not a flood.
    assert 0 < current["half_open_tries"] <= 10
    assert current["sent_to_failing"] <= settings.LLMHIVE_COOLDOWN_FAILURES + 20


def test_live_decisions_get_their_draws_back(ranked):
    decision.seed(99)
    expected = decision.rng.random()
    decision.seed(99)
    simulate(seed=1, requests=50)
    assert decision.rng.random() == expected
