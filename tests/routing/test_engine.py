"""The ranking engine under change: new outcomes refresh only the shapes they touch, latency is
weighed when asked for, and exploration samples without crossing a limit."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from routing import decision
from routing.api import RouteOut
from routing.memory import rebuild_strategy_memory
from routing.models import StrategyStat
from routing.snapshot import current_snapshot
from tests.factories import CatalogModelFactory, CategoryFactory, RoleFactory, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(db):
    CategoryFactory(slug="programming")
    return {
        name: CatalogModelFactory(
            id=f"acme/{name}",
            price_prompt=Decimal(prompt),
            price_completion=Decimal(prompt) * 4,
            supports_tools=True,
        )
        for name, prompt in (
            ("cheap", "0.0000001"),
            ("mid", "0.000001"),
            ("dear", "0.00001"),
            ("dearer", "0.00002"),
        )
    }


@pytest.fixture
def roles(catalog):
    return RoleFactory(slug="coder"), RoleFactory(slug="writer")


def route(client, **body) -> dict:
    response = client.post_json("/api/v1/route", {"role": "coder", **body})
    assert response.status_code == 200, response.content
    RouteOut.model_validate_json(response.content)
    return response.json()


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "updated-when-asked"])
def test_new_outcomes_set_stale_only_the_rankings_of_the_shapes_they_touch(api_client, roles, monkeypatch, prepared):
    """The rankings of the shapes new outcomes touched are updated for the models that moved:
    those requests were using, before the new snapshot is used (routing.scoring.prepare, up to
    PREPARED_RANKINGS); the rest when next asked for."""
    if not prepared:
        monkeypatch.setattr("routing.scoring.PREPARED_RANKINGS", 0)
    route(api_client)
    route(api_client, role="writer")
    before = current_snapshot()
    writer_keys = [k for k in before.cache if k[0] == "writer"]
    coder_keys = [k for k in before.cache if k[0] == "coder"]
    assert writer_keys and coder_keys

    ingest(5, model="acme/mid", role="coder", category="", success=False)

    after = current_snapshot()
    assert after is not before and after.columns is before.columns  # the catalog's arrays are kept
    assert all(after.cache[k] is before.cache[k] for k in writer_keys)  # untouched shape: kept
    if prepared:  # touched: updated already, from the ranking it had
        assert not any(k in after.stale for k in coder_keys)
        assert all(after.cache[k] is not before.cache[k] and after.cache[k]._built for k in coder_keys)
    else:  # touched: stale, updated when asked for
        assert not any(k in after.cache for k in coder_keys)
        assert all(after.stale[k][0] is before.cache[k] for k in coder_keys)
    assert after.outcomes[("acme/mid", "coder", "")].requests == 5
    mid = next(c for c in route(api_client, fallback_count=5)["candidates"] if c["model"] == "acme/mid")
    assert mid["parts"]["samples"] == 5 and mid["parts"]["success_rate"] == 0.0


def test_rankings_outcomes_touch_are_updated_and_eligibility_is_kept_until_health_moves(api_client, roles, monkeypatch):
    from datetime import UTC, datetime

    from core.models import DataVersion
    from health.models import HEALTH_VERSION, ModelReliability
    from routing.scoring import token_bucket

    small = route(api_client, estimated_input_tokens=100, estimated_output_tokens=50)
    route(api_client, estimated_input_tokens=90_000, estimated_output_tokens=8_000)
    before = current_snapshot()
    eligible = before.eligible[("coder", None, frozenset(), 0)]
    coder_keys = [k for k in before.cache if k[0] == "coder"]
    assert len(before.eligible) == 1 and len(coder_keys) == 2

    # Outcomes of the shape: its rankings are kept as stale, with the model that moved, and
    # updated for it when next asked (here: none updated beforehand, as routing.scoring.prepare
    # does for the first PREPARED_RANKINGS); what does not move with outcomes is kept as it was.
    monkeypatch.setattr("routing.scoring.PREPARED_RANKINGS", 0)
    ingest(5, model="acme/mid", role="coder", category="", success=False)
    after = current_snapshot()
    assert after.eligible[("coder", None, frozenset(), 0)] is eligible
    assert {k: (after.stale[k][0] is before.cache[k], after.stale[k][1]) for k in coder_keys} == {
        k: (True, frozenset({"acme/mid"})) for k in coder_keys
    }
    for tokens in ((100, 50), (3_000, 700)):  # one updated, one never asked for before
        answer = route(
            api_client, estimated_input_tokens=tokens[0], estimated_output_tokens=tokens[1], fallback_count=5
        )
        mid = next(c for c in answer["candidates"] if c["model"] == "acme/mid")
        assert mid["parts"]["samples"] == 5 and mid["parts"]["success_rate"] == 0.0
    # The updated ranking kept the candidates it had built that did not move (no latency was
    # reported: the latency scale stands), and made the one that moved again.
    key = next(k for k in coder_keys if k[5:7] == (token_bucket(100), token_bucket(50)))
    old, updated = before.cache[key], current_snapshot().cache[key]
    assert updated is not old and key not in current_snapshot().stale
    mid_at = old.local("acme/mid")
    assert old._built and all(updated._built[i] is c for i, c in old._built.items() if i != mid_at)
    assert updated._built[mid_at] is not old._built[mid_at]

    # A change of health drops all of it: a model now down is no candidate.
    ModelReliability.objects.create(
        model_id=small["model"],
        reliability=0.0,
        consecutive_failures=9,
        checks_count=9,
        last_checked_at=datetime.now(UTC),
    )
    DataVersion.bump(HEALTH_VERSION)
    later = route(api_client, estimated_input_tokens=100, estimated_output_tokens=50, fallback_count=5)
    assert current_snapshot().eligible[("coder", None, frozenset(), 0)] is not eligible
    assert small["model"] not in [later["model"], *later["fallbacks"]]
    assert small["model"] not in [c["model"] for c in later["candidates"]]


def test_a_refresh_reads_only_rows_written_since_and_a_rebuild_reads_all(api_client, roles, settings):
    ingest(3, model="acme/cheap", role="coder", category="")
    first = current_snapshot()
    assert first.outcomes[("acme/cheap", "coder", "")].requests == 3

    # A row written behind the memory's back (as a restore would) with an old timestamp is not
    # re-read by a refresh, but is by a rebuild from the ledger.
    settings.LLMHIVE_STATS_REFRESH_LAG_SECONDS = 0
    StrategyStat.objects.filter(model="acme/cheap").update(requests=999, updated_at="2020-01-01T00:00Z")
    ingest(1, model="acme/mid", role="writer", category="")
    refreshed = current_snapshot()
    assert refreshed.outcomes[("acme/cheap", "coder", "")].requests == 3
    assert refreshed.outcomes[("acme/mid", "writer", "")].requests == 1

    rebuild_strategy_memory()
    rebuilt = current_snapshot()
    assert rebuilt.outcomes[("acme/cheap", "coder", "")].requests == 3  # the ledger's truth
    assert not rebuilt.cache


def test_optimize_latency_weighs_the_latency_seen_in_the_ledger(api_client, roles):
    for name, latency in (("cheap", 9000), ("mid", 8000), ("dear", 400), ("dearer", 7000)):
        ingest(4, model=f"acme/{name}", role="coder", category="", latency_ms=latency)

    balanced = route(api_client)
    fast = route(api_client, optimize="latency")

    assert balanced["model"] == "acme/cheap"
    assert fast["model"] == "acme/dear"
    parts = fast["candidates"][0]["parts"]
    assert parts["latency_source"] == "ledger" and parts["expected_latency_ms"] == 400
    assert parts["latency_score"] == 1.0 and parts["weights"]["latency"] > 0
    assert route(api_client, optimize="cost")["accuracy"] == "economy"
    assert route(api_client, optimize="quality")["accuracy"] == "high"


def test_rate_zero_is_deterministic(api_client, roles):
    models = {route(api_client)["model"] for _ in range(30)}
    assert len(models) == 1


def test_exploration_tries_others_never_past_a_limit_and_is_repeatable(api_client, roles):
    coder = roles[0]
    coder.exploration_rate = 1.0
    coder.save()

    def run() -> list[tuple[str, bool]]:
        decision.seed(7)
        answers = [route(api_client, accuracy="high", max_cost_usd="0.04", exclude=["acme/mid"]) for _ in range(60)]
        return [(a["model"], a["explored"]) for a in answers]

    first = run()
    assert first == run()  # seeded: the same draws
    picked = Counter(model for model, _ in first)
    assert "acme/mid" not in picked and "acme/dearer" not in picked  # excluded; over the cap ($0.06 > $0.04)
    assert len(picked) >= 2 and any(explored for _, explored in first)
    deterministic = route(api_client, accuracy="high", max_cost_usd="0.04", exclude=["acme/mid"], role="writer")[
        "model"
    ]
    assert all(explored == (model != deterministic) for model, explored in first)


def test_exploration_settles_on_what_the_outcomes_teach(api_client, roles):
    coder = roles[0]
    coder.exploration_rate = 1.0
    coder.save()
    ingest(200, model="acme/dearer", role="coder", category="", success=True)
    for name in ("cheap", "mid", "dear"):
        ingest(200, model=f"acme/{name}", role="coder", category="", success=False)

    decision.seed(11)
    picked = Counter(route(api_client)["model"] for _ in range(40))

    # 200 of 200 against 0 of 200: the posteriors are narrow, the draws agree.
    assert picked == {"acme/dearer": 40}


@pytest.mark.django_db(transaction=True)
def test_another_process_change_is_built_in_the_background_while_requests_go_on(api_client, roles):
    from core.models import DataVersion, version_watch
    from routing.models import ROUTING_VERSION, Role
    from routing.snapshot import holder

    first = current_snapshot()
    # Another process's change: the row and its version written behind this process's back,
    # found by the periodic version check.
    Role.objects.filter(slug="writer").update(default_accuracy="economy")
    DataVersion.objects.update_or_create(name=ROUTING_VERSION, defaults={"version": 12345})
    version_watch.poll_now()

    assert current_snapshot() is first  # answered at once, from the snapshot in hand
    holder.wait_idle()
    second = current_snapshot()
    assert second is not first and second.roles["writer"].default_accuracy == "economy"

    # A change this process makes is seen by its next request, built there and then.
    Role.objects.get(slug="writer").delete()
    assert "writer" not in current_snapshot().roles


@pytest.mark.django_db(transaction=True)
def test_a_batch_this_process_reports_is_built_into_its_snapshot_without_a_request_waiting(api_client, roles):
    """What a usage batch changes that decisions must honour now (a cooldown it tripped) is built
    by the request that reported it (after its commit); its outcome rows are read by the
    background refresh right after, not by that request nor by the next decision."""
    from routing.snapshot import holder

    route(api_client)
    before = current_snapshot()
    ingest(3, model="acme/mid", role="coder", category="", success=False, error="timeout")
    tripped = holder._snapshot
    assert tripped is not before and "acme/mid" in tripped.cooldowns  # honoured at once
    holder.wait_idle()
    after = holder._snapshot
    assert after.outcomes[("acme/mid", "coder", "")].requests == 3
    assert "acme/mid" in after.cooldowns
    assert current_snapshot() is after  # nothing left to build

    # Inside a caller's transaction (which may yet roll back) it waits for the next decision.
    from django.db import transaction

    with transaction.atomic():
        ingest(2, model="acme/mid", role="coder", category="", success=True)
        assert holder._snapshot is after
    current_snapshot()  # (committed now: its outcome rows are read in the background)
    holder.wait_idle()
    assert current_snapshot().outcomes[("acme/mid", "coder", "")].requests == 5


@pytest.mark.django_db(transaction=True)
def test_a_batch_does_not_wait_for_a_refresh_under_way(api_client, roles):
    """A refresh under way holds the snapshot's lock (and steps aside for the requests in flight):
    a usage batch's report does not wait for it, it leaves its cooldowns and outcomes to the
    background, which takes them in right after."""
    import threading
    import time

    from routing.snapshot import holder

    route(api_client)
    before = current_snapshot()
    held, release = threading.Event(), threading.Event()

    def refresh_under_way() -> None:
        with holder._lock:
            held.set()
            release.wait(3)

    refreshing = threading.Thread(target=refresh_under_way)
    refreshing.start()
    assert held.wait(5)
    started = time.monotonic()
    ingest(3, model="acme/mid", role="coder", category="", success=False, error="timeout")
    waited = time.monotonic() - started
    assert holder._snapshot is before
    release.set()
    refreshing.join(5)
    assert waited < 1.5, waited  # (it would have waited the 3 s the refresh held the lock)
    holder.wait_idle()
    after = current_snapshot()
    assert "acme/mid" in after.cooldowns and after.outcomes[("acme/mid", "coder", "")].requests == 3


def remember(key: tuple, requests: int) -> None:
    """Successes in the strategy memory, written as the ingest writes them (its rows only)."""
    from routing.memory import KEY, SUMS, add_to_rows

    delta = dict.fromkeys(SUMS, 0) | {"requests": requests, "successes": requests, "cost_usd": Decimal(0)}
    add_to_rows(StrategyStat, KEY, SUMS, {key: delta}, txid_field="changed_in")


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_commits_late_is_read_however_late(settings):
    """On PostgreSQL a refresh reads the memory rows whose writers the last read's snapshot did
    not see: a batch that began before a read and committed after it is taken in by the next
    refresh, with no time margin at all, and a refresh reads only the rows that changed."""
    import threading

    from django.db import connection, transaction
    from django.db import connections as all_connections

    from routing.snapshot import OutcomeBook

    if connection.vendor != "postgresql":
        pytest.skip("transaction snapshots are PostgreSQL's (SQLite re-reads by time)")
    settings.LLMHIVE_STATS_REFRESH_LAG_SECONDS = 0

    late, early = ("acme/late", "coder", "", "single"), ("acme/early", "writer", "", "single")
    remember(late, 1)
    remember(early, 1)
    begun, read, committed = threading.Event(), threading.Event(), threading.Event()

    def slow_batch() -> None:
        try:
            with transaction.atomic():
                remember(late, 10)  # stamped now, committed only after the next read
                begun.set()
                read.wait(10)
            committed.set()
        finally:
            all_connections.close_all()

    book = OutcomeBook.load()
    writer = threading.Thread(target=slow_batch)
    writer.start()
    assert begun.wait(10)
    remember(early, 5)
    book, touched = book.refreshed()
    assert touched == {("writer", ""): {"acme/early"}}  # the committed row only
    assert book.outcomes[("acme/late", "coder", "")].requests == 1
    read.set()
    writer.join(10)
    assert committed.is_set()
    book, touched = book.refreshed()
    assert touched == {("coder", ""): {"acme/late"}}  # the late batch, though stamped before the last read
    assert book.outcomes[("acme/late", "coder", "")].requests == 11
    assert book.outcomes[("acme/early", "writer", "")].requests == 6
    assert book.refreshed()[1] == {}  # nothing new: nothing read


@pytest.mark.django_db(transaction=True)
def test_another_process_outcomes_are_taken_in_at_most_every_outcomes_check(api_client, roles, settings):
    """Under a steady usage flow the stats version moves with every batch: another process's
    outcomes are read at most every LLMHIVE_OUTCOMES_CHECK_SECONDS, while its cooldowns (and
    anything else) are built at the next version check as before."""
    from core.models import DataVersion, version_watch
    from routing.models import COOLDOWN_VERSION, STATS_VERSION
    from routing.snapshot import holder

    settings.LLMHIVE_OUTCOMES_CHECK_SECONDS = 60
    first = current_snapshot()

    def elsewhere(**versions) -> None:  # another process's commit, found by the version check
        for name, value in versions.items():
            DataVersion.objects.update_or_create(name=name, defaults={"version": value})
        version_watch.poll_now()
        current_snapshot()
        holder.wait_idle()

    remember(("acme/cheap", "coder", "", "single"), 7)
    elsewhere(**{STATS_VERSION: 111})
    assert current_snapshot() is first  # not due: the outcomes wait
    elsewhere(**{COOLDOWN_VERSION: 222})
    second = current_snapshot()
    assert second is not first and second.versions[COOLDOWN_VERSION] == 222
    assert second.versions[STATS_VERSION] == first.versions[STATS_VERSION]
    assert ("acme/cheap", "coder", "") not in second.book.outcomes

    settings.LLMHIVE_OUTCOMES_CHECK_SECONDS = 0  # due
    elsewhere()
    third = current_snapshot()
    assert third.versions[STATS_VERSION] == 111
    assert third.book.outcomes[("acme/cheap", "coder", "")].requests == 7


def test_outcomes_refreshed_batch_by_batch_equal_a_full_read(api_client, roles):
    from routing.snapshot import OutcomeBook

    def as_tuples(book) -> tuple[dict, dict]:
        outcomes = {
            k: (o.requests, o.successes, o.cost, o.latency_ms_sum, o.latency_count) for k, o in book.outcomes.items()
        }
        strategies = {
            (shape, s): (o.requests, o.successes, o.cost)
            for shape, per in book.strategies.items()
            for s, o in per.items()
        }
        return outcomes, strategies

    current_snapshot()
    for i in range(6):
        ingest(
            *[
                {
                    "model": f"acme/{name}",
                    "role": role,
                    "category": category,
                    "strategy": strategy,
                    "success": (i + j) % 3 != 0,
                    "latency_ms": 100 * (i + j),
                    "cost_usd": "0.001",
                }
                for j, (name, role, category, strategy) in enumerate(
                    [
                        ("cheap", "coder", "", "single"),
                        ("mid", "coder", "programming", "ensemble"),
                        ("cheap", "writer", "", "single"),
                        ("dear", "coder", "", "refine_on_failure" if i % 2 else "single"),
                    ]
                )
            ]
        )
        refreshed = current_snapshot().book
        assert refreshed.read_at is not None
    assert as_tuples(refreshed) == as_tuples(OutcomeBook.load())
    assert refreshed.outcomes[("acme/dear", "coder", "")].requests == 6


def test_the_same_request_is_answered_again_until_what_it_rests_on_moves(api_client, roles):
    """decide() keeps each deterministic answer: the same request gets the same answer (a new
    decision_id, the snapshot's version) without walking the ranking again, until the budget
    state moves (checked by identity), a model it rests on (walked, or looked at for its
    escalation chain) starts cooling down, or its shape's ranking is dropped. A cooldown of
    another model keeps it. A request differing in its exclusions, cap or token estimates is
    answered on its own."""
    from datetime import timedelta

    from django.utils import timezone

    from core.models import DataVersion
    from costs.budgets import budget_book
    from routing.decision import RouteRequest, decide, request_key
    from routing.models import COOLDOWN_VERSION, CooldownState, ModelCooldown
    from tests.factories import BudgetFactory

    def cool_down(model_id: str) -> None:
        ModelCooldown.objects.create(
            model=model_id, role="", state=CooldownState.OPEN, until=timezone.now() + timedelta(minutes=1)
        )
        DataVersion.bump(COOLDOWN_VERSION)

    req = RouteRequest(role="coder", fallback_count=1)
    first, again = decide(req), decide(req)
    assert again["decision_id"] != first["decision_id"]
    assert again["candidates"] is first["candidates"]  # kept, not rebuilt
    assert {**again, "decision_id": ""} == {**first, "decision_id": ""}
    watched = current_snapshot().answers[request_key(req)].watched
    assert {first["model"], *first["fallbacks"], *first["escalation"]} <= watched
    other = decide(RouteRequest(role="coder", fallback_count=1, exclude=[first["model"]]))
    assert other["model"] != first["model"]
    cheaper = decide(RouteRequest(role="coder", fallback_count=1, estimated_output_tokens=5))
    assert cheaper["estimated_cost_usd"] != first["estimated_cost_usd"]

    # The budget state moves (a budget saved): answered afresh.
    BudgetFactory(name="coders", scope="role", scope_value="coder", limit_usd=Decimal("100"))
    budget_book.statuses()
    with_budget = decide(req)
    assert with_budget["candidates"] is not first["candidates"] and with_budget["budget"]["scope_value"] == "coder"
    # Spend that moves no budget's state (the coder's, in another category than the answer's
    # shape): the same answer, showing the budget state in hand.
    ingest(1, model=first["model"], category="programming", cost_usd="0.5")
    spent = decide(req)
    assert spent["candidates"] is with_budget["candidates"] and spent["model"] == with_budget["model"]
    assert spent["budget"]["spent_usd"] == with_budget["budget"]["spent_usd"] + Decimal("0.5")
    per_call = {"decision_id": "", "catalog_version": "", "budget": None}
    assert {**spent, **per_call} == {**with_budget, **per_call}
    # Spend past the soft limit moves its state: answered afresh.
    ingest(1, model=first["model"], category="programming", cost_usd="90")
    assert decide(req)["candidates"] is not spent["candidates"]
    with_budget = decide(req)

    # A model the answer does not rest on cools down: a new snapshot, the same answer.
    cool_down("elsewhere/not-routed")
    still = decide(req)
    assert still["candidates"] is with_budget["candidates"]
    assert still["catalog_version"] == current_snapshot().catalog_version != with_budget["catalog_version"]

    # The chosen model cools down (the ranking and the budget state stay, only the cooldowns
    # move): answered without it.
    kept, statuses = current_snapshot().cache, budget_book.statuses()
    cool_down(first["model"])
    assert all(current_snapshot().cache.get(k) is v for k, v in kept.items())
    assert budget_book.statuses() is statuses
    cooled = decide(req)
    assert cooled["model"] != first["model"] and first["model"] not in cooled["fallbacks"]
    assert (
        api_client.post_json("/api/v1/route", {"role": "coder", "fallback_count": 1}).json()["model"] == cooled["model"]
    )


def test_an_answer_passing_over_cooling_models_is_kept_while_those_cooldowns_stand(roles, settings):
    """An answer that passed over a model cooling down is kept while those cooldowns read the same
    (a cooldown elsewhere keeps it), open or half-open, for a half-open one only while a new draw
    passes over it again. One that a draw let through is not kept."""
    import time
    from datetime import timedelta

    from django.utils import timezone

    from core.models import DataVersion
    from routing.decision import RouteRequest, decide, request_key
    from routing.models import COOLDOWN_VERSION, CooldownState, ModelCooldown

    req = RouteRequest(role="coder", fallback_count=1)
    best = decide(req)["model"]
    until = timezone.now() + timedelta(minutes=1)
    cooldown = ModelCooldown.objects.create(model=best, role="", state=CooldownState.OPEN, until=until)
    DataVersion.bump(COOLDOWN_VERSION)
    first, again = decide(req), decide(req)
    assert first["model"] != best and again["candidates"] is first["candidates"]  # kept
    kept = current_snapshot().answers[request_key(req)]
    assert kept.drew_for == (best,) and kept.cooldowns is current_snapshot().cooldowns

    # Another model cools down: new cooldowns, which read the same for this answer: kept.
    ModelCooldown.objects.create(model="elsewhere/not-routed", role="", state=CooldownState.OPEN, until=until)
    DataVersion.bump(COOLDOWN_VERSION)
    assert decide(req)["candidates"] is first["candidates"]
    assert kept.cooldowns is current_snapshot().cooldowns  # (compared by identity from now on)
    # Its open period moves: answered afresh (and kept again).
    cooldown.until = until + timedelta(minutes=1)
    cooldown.save()
    DataVersion.bump(COOLDOWN_VERSION)
    first = decide(req)
    assert first["candidates"] is not again["candidates"] and decide(req)["candidates"] is first["candidates"]

    # Half-open (its open period over), with a share of 0: every draw passes over it, kept.
    settings.LLMHIVE_COOLDOWN_HALF_OPEN_SHARE = 0.0
    cooldown.until = timezone.now() - timedelta(seconds=1)
    cooldown.save()
    DataVersion.bump(COOLDOWN_VERSION)
    first, again = decide(req), decide(req)
    assert best not in [first["model"], *first["fallbacks"]] and again["candidates"] is first["candidates"]
    assert current_snapshot().answers[request_key(req)].drew_for == (best,)

    # With a share of 1 every draw lets it through: answered with it, and not kept.
    settings.LLMHIVE_COOLDOWN_HALF_OPEN_SHARE = 1.0
    DataVersion.bump(COOLDOWN_VERSION)
    tried = decide(req)
    assert tried["model"] == best and getattr(tried, "kept", None) is None
    assert decide(req)["candidates"] is not tried["candidates"]

    # An open period that ends while the answer is kept: it turns half-open, and with a share of
    # 0 every new draw passes over it, as a fresh walk's would: still kept, and still the answer
    # a fresh walk gives.
    settings.LLMHIVE_COOLDOWN_HALF_OPEN_SHARE = 0.0
    cooldown.until = timezone.now() + timedelta(seconds=0.3)
    cooldown.save()
    DataVersion.bump(COOLDOWN_VERSION)
    first = decide(req)
    assert decide(req)["candidates"] is first["candidates"]
    time.sleep(0.35)
    assert decide(req)["candidates"] is first["candidates"]
    current_snapshot().answers.clear()
    fresh = decide(req)
    assert fresh["candidates"] is not first["candidates"]
    assert {**fresh, "decision_id": ""} == {**first, "decision_id": ""}


class Draws:
    """The routing draws, scripted: each call to random() takes the next value given."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def random(self) -> float:
        return self.values.pop(0)


def test_answers_draws_gave_with_half_open_models_let_through_are_kept_beside_the_one_passing_over(
    roles, settings, monkeypatch
):
    """The answer given when a draw lets a half-open model through is kept beside the kept answer
    that passed over it, under what the walk's draws decided: the same decisions again give it at
    once, and it is the answer a fresh walk gives for them. A walk that let one through early
    drew for fewer models (it filled its candidates sooner): it is found by those draws alone."""
    import time
    from datetime import timedelta

    from django.utils import timezone

    from core.models import DataVersion
    from routing.decision import CANDIDATES_SHOWN, RouteRequest, decide, request_key
    from routing.models import COOLDOWN_VERSION, CooldownState, ModelCooldown

    for i in range(CANDIDATES_SHOWN):  # more models than the candidates shown
        CatalogModelFactory(id=f"acme/extra-{i}", price_prompt=Decimal("0.000003"), supports_tools=True)
    draws = Draws()
    monkeypatch.setattr(decision, "rng", draws)
    req = RouteRequest(role="coder", fallback_count=1)
    ranked = [c["model"] for c in decide(req)["candidates"]]
    # The model right after the candidates shown: shown when the first one is out.
    first = ModelCooldown.objects.create(
        model=ranked[0], role="", state=CooldownState.OPEN, until=timezone.now() + timedelta(minutes=1)
    )
    DataVersion.bump(COOLDOWN_VERSION)
    draws.values = [0.9]
    eleventh = decide(req)["candidates"][-1]["model"]
    assert eleventh not in ranked

    # Both half-open, each let through by half of the draws.
    settings.LLMHIVE_COOLDOWN_HALF_OPEN_SHARE = 0.5
    first.until = timezone.now() - timedelta(seconds=1)
    first.save()
    ModelCooldown.objects.create(model=eleventh, role="", state=CooldownState.OPEN, until=first.until)
    DataVersion.bump(COOLDOWN_VERSION)

    def answer(*values: float, fresh: bool = False):
        draws.values = list(values)
        given = decide(req, now=time.time()) if fresh else decide(req)
        draws.values = []
        return given

    def same(a, b) -> bool:
        return {**a, "decision_id": ""} == {**b, "decision_id": ""}

    passing = answer(0.9, 0.9)  # both passed over: kept, having drawn for both
    kept = current_snapshot().answers[request_key(req)]
    assert passing["model"] == ranked[1] and kept.drew_for == (ranked[0], eleventh)
    assert answer(0.9, 0.9).kept is kept

    # The first let through: answered afresh, then kept beside it (its walk drew for one model).
    tried = answer(0.1, 0.9)
    assert tried["model"] == ranked[0] and same(tried, answer(0.1, 0.9, fresh=True))
    assert list(kept.variants) == [(False,)]
    again = answer(0.1, 0.9)
    assert again.kept is tried.kept and same(again, tried)
    # Whatever the draw for the eleventh: that walk did not reach it.
    assert answer(0.1, 0.1).kept is tried.kept and same(tried, answer(0.1, 0.1, fresh=True))

    # The eleventh let through, the first passed over: another answer, kept too.
    late = answer(0.9, 0.1)
    assert late["model"] == ranked[1] and eleventh in [c["model"] for c in late["candidates"]]
    assert same(late, answer(0.9, 0.1, fresh=True)) and not same(late, passing)
    assert answer(0.9, 0.1).kept is late.kept and set(kept.variants) == {(False,), (True, False)}
    assert answer(0.9, 0.9).kept is kept  # and the one passing over both stands

    # What it rests on moves (the half-open share): all of them go.
    settings.LLMHIVE_COOLDOWN_HALF_OPEN_SHARE = 0.4
    DataVersion.bump(COOLDOWN_VERSION)
    assert answer(0.9, 0.9).kept is not kept and not current_snapshot().answers[request_key(req)].variants


def test_a_kept_answer_is_written_as_the_fresh_one_but_for_what_changes_per_call(api_client, roles):
    """/route writes a kept answer from its encoded body: the same JSON as the first answer but
    for decision_id; valid against the schema; `degraded` written per call."""
    from routing.api import route_json
    from routing.decision import RouteRequest, decide

    body = {"role": "coder", "fallback_count": 2, "max_cost_usd": "0.5", "estimated_input_tokens": 1234}
    first, again = route(api_client, **body), route(api_client, **body)
    assert first["decision_id"] != again["decision_id"]
    assert {**first, "decision_id": ""} == {**again, "decision_id": ""}
    assert first["degraded"] is False and isinstance(first["estimated_cost_usd"], str)

    answer = decide(
        RouteRequest(role="coder", fallback_count=2, max_cost_usd=Decimal("0.5"), estimated_input_tokens=1234)
    )
    assert answer.kept is not None and answer.kept.body is not None  # written once, by the first call
    degraded = RouteOut.model_validate_json(route_json(answer, True).content)
    assert degraded.degraded is True and degraded.decision_id == answer["decision_id"]


def test_carrying_memoised_work_over_survives_requests_still_adding_to_it():
    """keep_memoised runs in the refresh thread (or a request) while requests on the previous
    snapshot still add kept answers and rankings: it copies each dict before reading it (reading
    a dict another thread grows raises RuntimeError)."""
    import threading
    from types import SimpleNamespace

    from routing.decision import KeptAnswer
    from routing.snapshot import keep_memoised

    def kept(role: str) -> KeptAnswer:
        return KeptAnswer([], frozenset(), (role, ""), {})

    previous = SimpleNamespace(
        columns=None,
        health_arrays=None,
        eligible={},
        shape_arrays={("coder", str(i)): i for i in range(2000)},
        stale_arrays={("coder", str(i)): (i, frozenset()) for i in range(2000, 3000)},
        cache={("coder", str(i)): i for i in range(2000)},
        stale={("coder", str(i)): (i, frozenset()) for i in range(2000, 3000)},
        answers={("old", i): kept("coder") for i in range(2000)},
    )
    stop, failures = threading.Event(), []

    def requests_adding() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            previous.answers[("new", i % 3000)] = kept("writer")
            previous.cache[("writer", str(i % 3000))] = i
            previous.stale[("writer", str(i % 3000))] = (i, frozenset())
            sum(range(2000))  # (some work between writes, as a decision does)

    threads = [threading.Thread(target=requests_adding) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(300):
            fresh = SimpleNamespace(answers={}, cache={}, shape_arrays={}, stale={}, stale_arrays={}, eligible={})
            try:
                keep_memoised(fresh, previous, {("coder", "0"): {"acme/mid"}}, health_changed=False)
            except RuntimeError as error:
                failures.append(error)
            sum(range(5000))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []


def test_answers_kept_for_draws_are_looked_up_while_other_threads_add_to_them():
    """The threads of a gthread worker decide on the same snapshot: one may add the answer kept
    for its draws while another looks one up (iterating a dict another thread grows raises
    RuntimeError)."""
    import itertools
    import sys
    import threading

    from routing.decision import VARIANTS_KEPT, KeptAnswer

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    shared = [KeptAnswer([], frozenset(), ("coder", ""), {})]
    keys = [tuple(bits) for bits in itertools.product((True, False), repeat=6)][:VARIANTS_KEPT]
    failures: list[Exception] = []
    stop = threading.Event()

    def looking_up() -> None:
        try:
            while not stop.is_set():
                shared[0].variant((False,) * 6)
        except RuntimeError as error:
            failures.append(error)

    threads = [threading.Thread(target=looking_up) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3000):
            kept = KeptAnswer([], frozenset(), ("coder", ""), {})
            kept.keep_variant((True,) * 6, kept)
            shared[0] = kept
            for key in keys:
                kept.keep_variant(key, kept)
            if failures:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)
    assert failures == []


def test_a_replaced_snapshot_is_freed_at_once_not_left_to_the_garbage_collector(api_client, roles):
    """Rankings and kept answers are carried from snapshot to snapshot: none may point back at the
    snapshot it was made on. Such a cycle left every replaced snapshot (its catalog, memory rows
    and arrays) to a full collection of the cyclic collector, 50-250 ms in a busy worker."""
    import gc
    import weakref

    route(api_client)
    route(api_client, role="writer", category="programming")
    refused = api_client.post_json("/api/v1/route", {"role": "coder", "required_capabilities": ["supports_vision"]})
    assert refused.status_code == 422  # (its counts of rejected models read the snapshot's health)
    gc.collect()
    gc.disable()
    try:
        first = weakref.ref(current_snapshot())
        ingest(2, model="acme/mid", role="coder", category="")  # new outcomes: the writer's ranking is carried
        route(api_client)
        route(api_client, role="writer", category="programming")
        second = weakref.ref(current_snapshot())
        assert second() is not first()
        ingest(3, model="acme/dear", role="writer", category="", success=False, error="rate_limited")  # a cooldown
        route(api_client, role="writer", category="programming")
        assert current_snapshot() is not second()
        assert first() is None and second() is None
    finally:
        gc.enable()
