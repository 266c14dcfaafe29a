"""Exploration never crosses a limit (issue 12, point 4): with a role exploring on every decision
and the draws seeded, an explored answer still leaves out models cooling down, models whose own
budget is exhausted, models lacking a required capability and, under a budget downgrade, models
dearer than the deterministic choice; and its outcome, tied by decision_id, teaches the memory
as any other."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import Category, CategoryRanking
from costs.models import BudgetScope, UsageEvent
from routing import decision
from routing.api import RouteOut
from routing.models import CooldownState, ModelCooldown, StrategyStat
from tests.factories import (
    BudgetFactory,
    CatalogModelFactory,
    CategoryFactory,
    RoleFactory,
    SyncRunFactory,
    ingest,
    usage_event,
)

pytestmark = pytest.mark.django_db

DRAWS = 200
SEED = 12


@pytest.fixture
def catalog(db):
    """Four models with tools, each dearer than the last, and a cheaper one without tools."""
    CategoryFactory(slug="programming")
    return {
        name: CatalogModelFactory(
            id=f"acme/{name}",
            price_prompt=Decimal(prompt),
            price_completion=Decimal(prompt) * 4,
            supports_tools=name != "no-tools",
        )
        for name, prompt in (
            ("no-tools", "0.00000005"),
            ("cheap", "0.0000001"),
            ("mid", "0.000001"),
            ("dear", "0.00001"),
            ("dearer", "0.00002"),
        )
    }


@pytest.fixture
def explorer(catalog):
    """`coder` explores on every decision; `writer` (the same, never exploring) is the control."""
    RoleFactory(slug="writer")
    return RoleFactory(slug="coder", exploration_rate=1.0)


def route(client, role: str = "coder", **body) -> dict:
    response = client.post_json("/api/v1/route", {"role": role, **body})
    assert response.status_code == 200, response.content
    RouteOut.model_validate_json(response.content)
    return response.json()


def explore(client, *, must_explore: bool = True, **body) -> list[dict]:
    """DRAWS seeded decisions for the exploring role (for high accuracy unless asked otherwise,
    where the draws spread over every model); they must explore, among several models."""
    decision.seed(SEED)
    answers = [route(client, **{"accuracy": "high", **body}) for _ in range(DRAWS)]
    if must_explore:
        assert any(a["explored"] for a in answers) and len({a["model"] for a in answers}) >= 2
    return answers


def picked(answers: list[dict]) -> Counter:
    """The models the answers chose (explored or not)."""
    return Counter(a["model"] for a in answers)


def offered(answers: list[dict]) -> set[str]:
    """Every model an answer offers, fallbacks included."""
    return {m for a in answers for m in [a["model"], *a["fallbacks"]]}


def report(client, *events: dict) -> None:
    response = client.post_json("/api/v1/usage", {"events": events})
    assert response.status_code == 200, response.content


def event(**fields) -> dict:
    return usage_event(occurred_at=datetime.now(UTC).isoformat(), **fields)


def test_an_explored_answer_never_offers_a_model_cooling_down(api_client, explorer):
    """A model tripped by retryable failures reported through POST /usage is never explored."""
    # Reported under another role: the cooldown counts every role's failures, coder's memory
    # of acme/mid stays as untaught as the others', so only the cooldown keeps it out.
    report(api_client, *(event(model="acme/mid", role="planner", success=False, error="timeout") for _ in range(3)))
    assert ModelCooldown.objects.get(model="acme/mid", role="").state == CooldownState.OPEN

    answers = explore(api_client)

    assert "acme/mid" not in picked(answers) and "acme/mid" not in offered(answers)


def test_an_explored_answer_never_offers_a_model_whose_budget_is_exhausted(api_client, explorer):
    """A model whose model-scoped budget is spent is never explored, though others still are."""
    BudgetFactory(name="mid", scope=BudgetScope.MODEL, scope_value="acme/mid", limit_usd=Decimal("1"))
    ingest(model="acme/mid", role="planner", cost_usd=Decimal("1"))  # another role's spend: coder learns nothing

    answers = explore(api_client)

    assert "acme/mid" not in picked(answers) and "acme/mid" not in offered(answers)


@pytest.mark.parametrize("where", ["request", "role"])
def test_an_explored_answer_never_offers_a_model_lacking_a_required_capability(api_client, explorer, where):
    """A model without tools is never explored when the request or the role requires tools."""
    if where == "role":
        explorer.required_capabilities = ["supports_tools"]
        explorer.save()
        body = {}
    else:
        body = {"required_capabilities": ["supports_tools"]}

    answers = explore(api_client, **body)

    assert "acme/no-tools" not in picked(answers) and "acme/no-tools" not in offered(answers)
    # The control: without the requirement, it is the deterministic economy choice.
    assert route(api_client, role="writer", accuracy="economy")["model"] == "acme/no-tools"


def test_an_explored_answers_outcome_teaches_the_memory_as_a_deterministic_ones(api_client, explorer):
    """An explored answer's decision_id, reported with its outcome, is kept on the event and moves
    the explored model's strategy memory exactly as a deterministic answer's outcome moves its model's."""
    answers = explore(api_client, category="programming")
    explored = next(a for a in answers if a["explored"])
    deterministic = route(api_client, role="writer", accuracy="high", category="programming")
    assert not deterministic["explored"] and deterministic["model"] != explored["model"]

    for answer, role in ((explored, "coder"), (deterministic, "writer")):
        report(
            api_client,
            event(
                request_id=f"req-{answer['decision_id']}",
                decision_id=answer["decision_id"],
                model=answer["model"],
                role=role,
                category="programming",
                strategy="single",
                cost_usd="0.002",
                quality_score=0.5,
                latency_ms=900,
            ),
        )
        assert UsageEvent.objects.get(request_id=f"req-{answer['decision_id']}").decision_id == answer["decision_id"]

    fields = ("requests", "successes", "quality_sum", "quality_count", "cost_usd", "latency_ms_sum", "latency_count")
    taught = {
        role: StrategyStat.objects.filter(model=answer["model"], role=role, category="programming").values(*fields)
        for answer, role in ((explored, "coder"), (deterministic, "writer"))
    }
    assert list(taught["coder"]) == list(taught["writer"]) and len(taught["coder"]) == 1
    assert taught["coder"][0]["requests"] == 1 and taught["coder"][0]["successes"] == 1
    # And the next decision reads it: the explored model's candidate counts the outcome.
    after = route(api_client, role="coder", category="programming", fallback_count=4)
    shown = {c["model"]: c["parts"] for c in after["candidates"]}
    assert shown[explored["model"]]["samples"] == 1 and shown[explored["model"]]["success_rate"] == 1.0


@pytest.mark.parametrize("spent", [Decimal("0.85"), Decimal("1")], ids=["soft_limit", "exhausted"])
def test_a_downgraded_decision_never_explores_a_dearer_model(api_client, explorer, catalog, spent):
    """Under a budget that downgrades the decision, an explored model never costs more, for the
    request's tokens, than the deterministic choice."""
    category, run = Category.objects.get(slug="programming"), SyncRunFactory(kind="research")
    for rank, name in enumerate(["dearer", "dear", "mid", "cheap", "no-tools"], start=1):  # dearest ranked best
        CategoryRanking.objects.create(
            category=category, model=catalog[name], rank=rank, run=run, observed_at=run.started_at
        )
    BudgetFactory(name="all", limit_usd=Decimal("1"))
    ingest(model="acme/cheap", role="planner", cost_usd=spent)
    body = {"category": "programming", "estimated_input_tokens": 2_000, "estimated_output_tokens": 1_000}
    control = route(api_client, role="writer", accuracy="high", **body)
    # Past the soft limit, high leans to balanced: acme/cheap, with acme/mid (dearer) and
    # acme/no-tools (cheaper) close behind. Exhausted, economy: acme/no-tools, the cheapest, so
    # there is nothing left to explore.
    soft = spent < 1
    assert (control["downgraded"], control["model"]) == (
        ("budget_soft_limit", "acme/cheap") if soft else ("budget_exhausted", "acme/no-tools")
    )

    answers = explore(api_client, must_explore=soft, **body)

    assert {(a["downgraded"], a["candidates"][0]["model"]) for a in answers} == {
        (control["downgraded"], control["model"])
    }
    ceiling = Decimal(control["estimated_cost_usd"])
    assert max(Decimal(a["estimated_cost_usd"]) for a in answers) <= ceiling
