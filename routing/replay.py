"""Replaying the ledger: what each routing policy would have done with last week's requests.

Every usage event of the window (oldest first, the ledger's own probes left out) is decided
again as the request it was — its role, its category, the capabilities it used (tools ->
`supports_tools`), its prompt and completion tokens as the estimate, its strategy — by the
policy in force (`current`), by each proposed policy and by the baselines
(routing.policies.baselines), each through the real decision code on a copy of the current
snapshot (routing.policies.Policy.apply) with today's cooldowns cleared: they say nothing
about last week. Instead each policy's cooldowns (its own thresholds, windows and half-open
shares: routing.cooldowns.CooldownsInMemory, the live rules) are tripped by the retryable
failures the ledger saw, at their times, and a decision is judged at its event's time: a
policy with a lower threshold leaves a failing model out sooner. A `recorded` line says what
actually happened.

For each policy:
- `cost_usd`: each chosen model's cost for the event's prompt and completion tokens at the
  prices in force when the event happened (costs.pricing.PriceBook: one book for the window);
- `expected_success`: the mean, over the requests replayed, of the chosen model's posterior
  success for (model, role, category) — read from the outcomes in the base snapshot whatever the
  policy learns (routing.scoring.learned_quality); a refused or unserved request counts as no
  success. A replayed model's outcome on that request was never observed, so the figure is an
  expectation, and `prior_share` says how much of it rests on priors: the mean of
  PRIOR_STRENGTH / (n + PRIOR_STRENGTH) over the decisions served (1.0: nothing learned);
- `cost_per_success_usd`: cost over expected successes;
- `model_mix`: the ten models chosen most, with their share of decisions, the rest as "other";
- `budget_bites`: decisions a budget changed (downgraded, or refused with 402); `refused`: the
  402s alone; `unserved`: no eligible model (422); `explored`: decisions exploration chose;
  `unpriced`: decisions whose model had no usable price then (their cost is not counted);
  `cooldown_trips`: the cooldowns the ledger's failures would have tripped under the policy.

Budgets are followed through the replay from nothing (routing.policies.PlannedBudgets), so a
budget bites when the policy's own spending would have reached it. Exploration draws from the
decision's generator, seeded with `seed` at the start of each policy, so a replay is repeatable.

The events are streamed in chunks; each chunk is decided by every policy in turn, each policy
carrying its own generator state from chunk to chunk, so the answer is that of replaying each
policy over the whole window alone. A decision that cannot draw (no exploration for the role)
depends only on the request's shape and the budgets' states: it is memoised per policy on
those (`Replayer.decide`), which changes no result.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from core.money import DECIMAL_PLACES, decimal_str
from costs.budgets import BudgetBook
from costs.csvsafe import escape_row
from costs.models import RETRYABLE_ERRORS, BudgetScope, BudgetState, UsageEvent
from costs.pricing import PriceBook, Usage
from routing import decision
from routing.cooldowns import EMPTY_BOOK, CooldownsInMemory
from routing.cooldowns import policies as cooldown_policies
from routing.decision import RouteRequest, RoutingError
from routing.memory import IGNORED_STRATEGIES
from routing.policies import Policy, PolicyError, baselines, decide_under, planned_budgets
from routing.scoring import PRIOR_STRENGTH, learned_quality, token_bucket
from routing.snapshot import Snapshot, current_snapshot

CHUNK = 2_000
MIX_SIZE = 10
MAX_DAYS = 365
EVENT_FIELDS = (
    "occurred_at",
    "role",
    "category",
    "strategy",
    "tools",
    "prompt_tokens",
    "completion_tokens",
    "model_id",
    "model_ref",
    "cost_usd",
    "computed_cost_usd",
    "success",
    "error",
)
QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Replayed:
    """One ledger event as the request it was."""

    occurred_at: datetime
    role: str
    category: str | None
    tools: bool
    prompt_tokens: int
    completion_tokens: int
    strategy: str | None
    # What the ledger saw of the model called: the failures cooldowns react to.
    model_id: str | None = None
    success: bool = True
    error: str = ""

    def fact(self) -> dict:
        """The event as a usage row for the cooldown rules (routing.cooldowns.reported, step)."""
        return {
            "model_id": self.model_id,
            "success": self.success,
            "error": self.error,
            "occurred_at": self.occurred_at,
        }

    def request(self) -> RouteRequest:
        return RouteRequest(
            role=self.role,
            category=self.category,
            required_capabilities=["supports_tools"] if self.tools else [],
            estimated_input_tokens=self.prompt_tokens,
            estimated_output_tokens=self.completion_tokens,
            strategy=self.strategy,
            fallback_count=0,
        )


@dataclass
class Tally:
    """What one policy did over the replay."""

    name: str
    description: str
    cost: Decimal = Decimal(0)
    expected: float = 0.0
    prior_share: float = 0.0
    served: int = 0
    mix: Counter = field(default_factory=Counter)
    budget_bites: int = 0
    refused: int = 0
    unserved: int = 0
    explored: int = 0
    unpriced: int = 0
    cooldown_trips: int | None = 0  # None: not counted (the recorded line)

    def answer(self, requests: int) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "cost_usd": decimal_str(self.cost),
            "expected_success": round(self.expected / requests, 4) if requests else None,
            "cost_per_success_usd": cost_per(self.cost, self.expected),
            "prior_share": round(self.prior_share / self.served, 4) if self.served else None,
            "model_mix": model_mix(self.mix, self.served),
            "budget_bites": self.budget_bites,
            "refused": self.refused,
            "unserved": self.unserved,
            "explored": self.explored,
            "unpriced": self.unpriced,
            "cooldown_trips": self.cooldown_trips,
        }


def cost_per(cost: Decimal, successes: float) -> str | None:
    if successes <= 0:
        return None
    return decimal_str((cost / Decimal(repr(successes))).quantize(QUANTUM))


def model_mix(mix: Counter, total: int) -> dict[str, float]:
    """The MIX_SIZE models chosen most (ties by id), with their share; the rest as "other"."""
    if not total:
        return {}
    ranked = sorted(mix.items(), key=lambda item: (-item[1], item[0]))
    shares = {model: round(count / total, 4) for model, count in ranked[:MIX_SIZE]}
    rest = sum(count for _, count in ranked[MIX_SIZE:])
    if rest:
        shares["other"] = round(rest / total, 4)
    return shares


CSV_COLUMNS = (
    "name",
    "description",
    "cost_usd",
    "expected_success",
    "cost_per_success_usd",
    "prior_share",
    "budget_bites",
    "refused",
    "unserved",
    "explored",
    "unpriced",
    "cooldown_trips",
    "model_mix",
)


def csv_rows(answer: dict) -> Iterator[list]:
    """The answer as CSV rows, a header then one per policy (model_mix as "model:share; ..."),
    cells escaped against spreadsheet formulas (the command and the admin both write these)."""
    yield list(CSV_COLUMNS)
    for policy in answer["policies"]:
        mix = "; ".join(f"{model}:{share}" for model, share in policy["model_mix"].items())
        yield escape_row([*(policy[c] for c in CSV_COLUMNS[:-1]), mix])


def load_policy(text: str | bytes, snap: Snapshot | None = None) -> Policy:
    """A proposed policy from JSON text, read field by field and checked against the snapshot
    (its roles, categories, models and families must exist): PolicyError names the wrong field."""
    policy = Policy.from_text(text)
    policy.check_against(snap or current_snapshot())
    return policy


class Replayer:
    """One policy replaying the window: its snapshot, its budgets, its generator state."""

    memoise = True  # (the tests turn it off to show the memo changes no result)

    def __init__(self, policy: Policy, base: Snapshot, seed: int, live_cooldowns: dict | None = None) -> None:
        self.policy = policy
        self.snap = policy.apply(base)
        # The policy's cooldowns, tripped by the failures the ledger saw, at their times.
        self.cooldowns = CooldownsInMemory(policy.cooldown_policies(live_cooldowns or cooldown_policies(), base.roles))
        self.book: BudgetBook = planned_budgets(policy)
        self.tally = Tally(policy.name, policy.description)
        decision.seed(seed)
        self.rng_state = decision.rng.getstate()
        self.memo: dict[tuple, dict] = {}
        self._budget_keys: dict[tuple, tuple] = {}
        self.seconds = 0.0

    def decide(self, event: Replayed) -> dict:
        """decide_under for the event at its time, memoised when the decision draws nothing (no
        exploration for the role, no cooldown open or half-open): the model chosen then depends
        only on the ranking it walks, which routing.scoring memoises per request shape with the
        token counts in the same buckets, and on the budgets it reads (the strategy matters only
        through them). Only the model, `explored`, `downgraded` and `category` of a memoised
        answer are read. A refusal (402) is not memoised."""
        role = self.snap.roles[event.role]
        self.snap.cooldowns = cooldowns = self.cooldowns.book()
        if role.exploration_rate > 0 or cooldowns or not self.memoise:
            return decide_under(self.policy, self.snap, event.request(), self.book, now=event.occurred_at.timestamp())
        key = (
            event.role,
            event.category,
            event.tools,
            token_bucket(event.prompt_tokens),
            token_bucket(event.completion_tokens),
            self._budget_key(event) if self.book.budgets else None,
        )
        answer = self.memo.get(key)
        if answer is None:
            answer = self.memo[key] = decide_under(self.policy, self.snap, event.request(), self.book)
        return answer

    def observe(self, event: Replayed) -> None:
        """What the ledger saw of the model called, through the policy's cooldown rules: a
        retryable failure may trip one, a success may close a half-open one."""
        if event.error in RETRYABLE_ERRORS or (event.success and self.snap.cooldowns):
            self.tally.cooldown_trips += len(self.cooldowns.report([event.fact()], event.occurred_at))

    def _budget_key(self, event: Replayed) -> tuple:
        """What routing.decision reads of the budgets: the tightest budget for the role and
        strategy with its state, and the model budgets past OK with theirs. Which budget is the
        tightest changes only with a state (among budgets of one state the least remaining
        wins, and every exhausted one has nothing left): read once per state of the book."""
        book = self.book
        at = (event.role, event.strategy, book.day, book.state_changes)
        found = self._budget_keys.get(at)
        if found is None:
            if len(self._budget_keys) > 10_000:
                self._budget_keys.clear()
            found = self._budget_keys[at] = self._read_budget_key(event)
        return found

    def _read_budget_key(self, event: Replayed) -> tuple:
        tightest = self.book.state_for(role=event.role, strategy=event.strategy)
        models = tuple(
            sorted(
                (s.budget.scope_value, s.state)
                for s in self.book.applicable(role=event.role, strategy=event.strategy)
                if s.budget.scope == BudgetScope.MODEL and s.state != BudgetState.OK
            )
        )
        if tightest is None:
            return None, models
        # (past a soft limit the decision reads the state; exhausted, the action too)
        return (tightest.state, tightest.budget.action if tightest.state == BudgetState.EXHAUSTED else ""), models


def replay(
    policies: list[Policy], *, days: int = 7, limit: int | None = None, seed: int = 0, progress: Progress | None = None
) -> dict:
    """Replay the last `days` days of the ledger under `current`, `policies` and the baselines.

    `limit`: at most that many events, the most recent ones (the answer says how many the
    window held). See the module's docstring for what each figure means."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days: between 1 and {MAX_DAYS}")
    if limit is not None and limit < 1:
        raise ValueError("limit: at least 1")
    compared = [Policy(description="The policy in force."), *policies, *baselines()]
    names = [p.name for p in compared] + ["recorded"]
    for policy in policies:
        if names.count(policy.name) > 1:
            raise PolicyError("name", f"'{policy.name}' is the name of another policy in the comparison")
    end = timezone.now()
    start = end - timedelta(days=days)
    events = UsageEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end).exclude(
        strategy__in=IGNORED_STRATEGIES
    )
    in_window = events.count()
    if limit is not None and in_window > limit:
        events = _most_recent(events, limit)
    to_replay = min(in_window, limit) if limit is not None else in_window

    live = current_snapshot()
    base = dataclasses.replace(live, cooldowns=EMPTY_BOOK)  # (each policy's copy memoises its own rankings)
    prices = PriceBook.load(list(base.models), start)
    live_cooldowns = cooldown_policies()
    replayers = [Replayer(p, base, seed, live_cooldowns) for p in compared]
    recorded = Tally("recorded", "What happened: the ledger's cost and the observed success rate.", cooldown_trips=None)
    expected_cache: dict[tuple[str, str, str], tuple[float, float]] = {}
    skipped: Counter = Counter()
    replayed = done = 0

    for chunk in _chunks(events.order_by("occurred_at", "id").values_list(*EVENT_FIELDS)):
        batch: list[Replayed] = []
        for row in chunk:
            done += 1
            event, reason = _as_request(row, base)
            if reason:
                skipped[reason] += 1
                continue
            batch.append(event)
            _record(recorded, row)
        replayed += len(batch)
        for replayer in replayers:
            started = time.perf_counter()
            decision.rng.setstate(replayer.rng_state)
            for event in batch:
                _replay_one(replayer, event, base, prices, expected_cache)
                replayer.observe(event)
            replayer.rng_state = decision.rng.getstate()
            replayer.seconds += time.perf_counter() - started
        if progress:
            progress("replay", done, to_replay)

    return {
        "requests": replayed,
        "window": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
        "events_in_window": in_window,
        "sampling": "most_recent" if limit is not None and in_window > limit else "all",
        "skipped": dict(sorted(skipped.items())),
        "policies": [r.tally.answer(replayed) for r in replayers] + [recorded.answer(replayed)],
        # The time each policy's decisions took (not a result: it varies from run to run).
        "seconds": {r.policy.name: round(r.seconds, 3) for r in replayers},
    }


def _most_recent(events, limit: int):
    """The `limit` most recent events: those at or after the limit-th from the end (by time, id)."""
    occurred_at, pk = events.order_by("-occurred_at", "-id").values_list("occurred_at", "id")[limit - 1]
    return events.filter(Q(occurred_at__gt=occurred_at) | Q(occurred_at=occurred_at, id__gte=pk))


def _chunks(rows) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for row in rows.iterator(chunk_size=CHUNK):
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _as_request(row: tuple, base: Snapshot) -> tuple[Replayed | None, str | None]:
    occurred_at, role, category, strategy, tools, prompt, completion, model_id = row[:8]
    success, error = row[11], row[12]
    if not role:
        return None, "no_role"
    if role not in base.roles:
        return None, "role_not_active"
    if category and category not in base.categories:
        return None, "category_not_active"
    return (
        Replayed(
            occurred_at,
            role,
            category or None,
            bool(tools),
            prompt,
            completion,
            strategy or None,
            model_id,
            success,
            error,
        ),
        None,
    )


def _record(recorded: Tally, row: tuple) -> None:
    model_id, model_ref, cost_usd, computed, success = row[7:12]
    cost = cost_usd if cost_usd is not None else computed
    if cost is None:
        recorded.unpriced += 1
    else:
        recorded.cost += cost
    recorded.expected += 1.0 if success else 0.0
    recorded.served += 1
    recorded.mix[model_id or model_ref] += 1


def _replay_one(replayer: Replayer, event: Replayed, base: Snapshot, prices: PriceBook, expected_cache: dict) -> None:
    tally = replayer.tally
    replayer.book.at(event.occurred_at.date())
    try:
        answer = replayer.decide(event)
    except RoutingError as exc:
        if exc.status == 402:
            tally.budget_bites += 1
            tally.refused += 1
        else:
            tally.unserved += 1
        return
    model = answer["model"]
    tally.served += 1
    tally.mix[model] += 1
    tally.explored += answer["explored"]
    if answer.get("downgraded"):
        tally.budget_bites += 1
    cost = prices.cost(model, event.occurred_at, Usage(event.prompt_tokens, event.completion_tokens))
    if cost is None:
        tally.unpriced += 1
    else:
        tally.cost += cost
        replayer.book.spend(cost, role=event.role, strategy=event.strategy or "", model=model)
    key = (model, event.role, answer.get("category") or "")
    found = expected_cache.get(key)
    if found is None:
        found = expected_cache[key] = expected_success(base, *key)
    tally.expected += found[0]
    tally.prior_share += found[1]


def expected_success(base: Snapshot, model_id: str, role: str, category: str) -> tuple[float, float]:
    """The posterior mean of the model's success for the role and category (its prior, when it
    has no outcome), and the share of it that rests on the prior."""
    outcome = base.outcomes.get((model_id, role, category))
    n, s = (outcome.requests, outcome.successes) if outcome else (0, 0)
    model = base.models.get(model_id)
    # (a bootstrap answer may name a model the catalog does not hold: an even prior)
    prior = base.prior_quality(model, category or None)[0] if model is not None else 0.5
    return learned_quality(s, n, prior), PRIOR_STRENGTH / (n + PRIOR_STRENGTH)
