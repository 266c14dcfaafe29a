"""Simulation with known truth: each policy routes a simulated stream of requests online, through
the real decision, memory and cooldown code, in a world whose hidden success probabilities only
the oracle knows.

- The world (`World`): each model of the current snapshot has a hidden success probability per
  category: its prior (Snapshot.prior_quality: the category ranking, else the imported or catalog
  prior) plus seeded normal noise, clipped to [0.02, 0.98]. A test may give its own (a planted
  best model, a prior that is wrong). The policies are told nothing of it.
- The requests come in the mix the ledger shows (the last 30 days' role, category, token counts
  and tools), drawn with the seed; with an empty ledger, every active role with its default
  category and token counts, evenly. The clock is simulated: `rate` requests a second.
- Each policy (the one in force, "explore_10": the same with every role exploring 10 % of the
  time, the baselines of routing.policies, and any given) starts from an empty strategy memory
  (the world's truth is not the ledger's), decides each request with
  routing.policies.decide_under, and the outcome is drawn from the truth (the same uniform draw
  per request for every policy, so that they are compared on the same luck). Every `batch`
  requests the outcomes are reported as a usage batch would be: the strategy memory moves
  through routing.memory.memory_deltas into the snapshot's OutcomeBook (`_take`), and the
  snapshot updates the rankings of the shapes touched (routing.snapshot.keep_memoised), as live.
- The outage: at 2/3 of the requests, the model the current policy relies on most at that
  moment (the one it chose most in the OUTAGE_LOOKBACK requests before: its best, as far as it
  knows, with its budgets as they stand) starts failing every call with `provider_error`. The reports go through the real
  cooldown rules (routing.cooldowns.step, on rows held in memory and the simulated clock) and
  the snapshot carries a real CooldownBook, so decide() (told the simulated time) leaves the model
  out, then half-opens it, exactly as live.
- The oracle takes, for each request, the model with the highest true success probability among
  those eligible for it under the policy in force (the cheaper on ties; the failing model is worth
  nothing once the outage began). A policy's regret is the sum over requests of the oracle's true
  probability less that of the model chosen: expected regret, exact given the decisions. (A
  policy that widens eligibility, allowing free models say, may beat the oracle on a request.)

Nothing is written to the database and nothing is locked: it can run beside live traffic.
decision.seed(seed) before each policy makes a run repeat exactly (the draws of live decisions
are given back afterwards; decisions made meanwhile by other threads of the same process would
share the draws, so a run meant to repeat exactly belongs in its own process: the command).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from django.db.models import Count
from django.utils import timezone

from core.money import decimal_str, money_per
from costs.models import ErrorClass, UsageEvent
from routing import cooldowns as cooldown_rules
from routing import decision
from routing.cooldowns import EMPTY_BOOK, CooldownsInMemory
from routing.cooldowns import Policy as CooldownPolicy
from routing.decision import DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS, RouteRequest, RoutingError
from routing.memory import IGNORED_STRATEGIES, memory_deltas
from routing.models import CooldownState
from routing.policies import Policy, RoleChanges, baselines, decide_under, planned_budgets
from routing.scoring import ranked_for
from routing.snapshot import OutcomeBook, Snapshot, current_snapshot, keep_memoised

DEFAULT_NOISE = 0.1
P_LOW, P_HIGH = 0.02, 0.98
LEDGER_DAYS = 30
OUTAGE_ERROR = ErrorClass.PROVIDER_ERROR
# The simulated clock's origin: the answer holds only durations, so any fixed instant will do.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
CURVE_POINTS = (25, 50, 75, 100)
# The outage hits the model the policy in force chose most in this many requests before it.
OUTAGE_LOOKBACK = 100
MAX_REQUESTS = 100_000  # about a minute per policy on a catalog of a few hundred models


@dataclass
class World:
    """The hidden truth: (model id, category slug or "") -> probability that a call succeeds."""

    truth: dict[tuple[str, str], float]
    noise: float = DEFAULT_NOISE
    default: float = 0.5  # a (model, category) the truth does not name (a world given by hand)

    @classmethod
    def from_priors(cls, snap: Snapshot, seed: int, noise: float = DEFAULT_NOISE) -> World:
        """Each model's prior per category plus normal noise of sd `noise`, drawn with the seed."""
        models = sorted(snap.models)
        categories = ["", *sorted(snap.categories)]
        draws = np.random.default_rng(seed).normal(0.0, noise, size=(len(models), len(categories)))
        truth = {}
        for i, model_id in enumerate(models):
            info = snap.models[model_id]
            for j, category in enumerate(categories):
                prior, _ = snap.prior_quality(info, category or None)
                truth[model_id, category] = float(np.clip(prior + draws[i, j], P_LOW, P_HIGH))
        return cls(truth=truth, noise=noise)

    def p(self, model_id: str, category: str | None) -> float:
        return self.truth.get((model_id, category or ""), self.default)

    @property
    def categories(self) -> int:
        return len({category for _, category in self.truth})

    @property
    def models(self) -> int:
        return len({model for model, _ in self.truth})


@dataclass(frozen=True)
class Shape:
    """A kind of request in the mix."""

    role: str
    category: str | None
    input_tokens: int
    output_tokens: int
    tools: bool

    def request(self) -> RouteRequest:
        return RouteRequest(
            role=self.role,
            category=self.category,
            required_capabilities=["supports_tools"] if self.tools else [],
            estimated_input_tokens=self.input_tokens,
            estimated_output_tokens=self.output_tokens,
        )


def request_mix(snap: Snapshot) -> list[tuple[Shape, int]]:
    """The shapes of the last 30 days' requests with their counts (roles and categories still
    active); with none, every active role once, with its default category and token counts."""
    since = timezone.now() - timedelta(days=LEDGER_DAYS)
    rows = (
        UsageEvent.objects.filter(occurred_at__gte=since)
        .exclude(strategy__in=IGNORED_STRATEGIES)
        .values_list("role", "category", "prompt_tokens", "completion_tokens", "tools")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: Counter[Shape] = Counter()
    for role, category, prompt, completion, tools, n in rows:
        if role in snap.roles and (not category or category in snap.categories):
            counts[Shape(role, category or None, prompt, completion, bool(tools))] += n
    if counts:
        return sorted(counts.items(), key=lambda item: _order(item[0]))
    return [(Shape(slug, None, DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS, False), 1) for slug in sorted(snap.roles)]


def _order(shape: Shape) -> tuple:
    return (shape.role, shape.category or "", shape.input_tokens, shape.output_tokens, shape.tools)


def default_policies() -> list[Policy]:
    return [
        Policy(name="current", description="The policy in force."),
        Policy(
            name="explore_10",
            every_role=RoleChanges(exploration_rate=0.1),
            description="The policy in force, every role exploring 10 % of the time.",
        ),
        *baselines(),
    ]


@dataclass
class Outage:
    at_request: int
    model: str | None = None


@dataclass
class Run:
    """One policy's way through the requests."""

    name: str
    chosen: list[str | None] = field(default_factory=list)
    p: list[float] = field(default_factory=list)
    successes: int = 0
    cost: Decimal = Decimal(0)
    sent_to_failing: int = 0
    tripped_at: float | None = None  # simulated seconds since the outage began
    half_open_tries: int = 0


class _Oracle:
    """The best true probability among the models eligible under the policy in force (the same
    eligibility as its rankings), the cheaper on ties, then the first by id."""

    def __init__(self, snap: Snapshot, world: World) -> None:
        self.snap, self.world = snap, world
        self._truth: dict[str | None, np.ndarray] = {}
        self._best: dict[tuple[Shape, str | None], tuple[str | None, float]] = {}

    def best(self, shape: Shape, failing: str | None) -> tuple[str | None, float]:
        key = (shape, failing)
        found = self._best.get(key)
        if found is None:
            found = self._best[key] = self._find(shape, failing)
        return found

    def _find(self, shape: Shape, failing: str | None) -> tuple[str | None, float]:
        role = self.snap.roles[shape.role]
        category = shape.category or role.default_category
        req = shape.request()
        ranking = ranked_for(
            self.snap,
            role,
            category,
            role.default_accuracy,
            role.required | frozenset(req.required_capabilities),
            role.min_context,
            shape.input_tokens,
            shape.output_tokens,
        )
        idx, cols = ranking.idx, ranking.cols
        if not len(idx):
            return None, 0.0
        truth = self._truth.get(category)
        if truth is None:
            truth = self._truth[category] = np.array([self.world.p(m.id, category) for m in cols.models])
        p = truth[idx].copy()
        if failing is not None and failing in cols.index:
            p[idx == cols.index[failing]] = 0.0
        cost = cols.prompt[idx] * shape.input_tokens + cols.completion[idx] * shape.output_tokens + cols.request[idx]
        best = int(np.lexsort((idx, cost, -p))[0])  # (the columns are in id order)
        return cols.models[int(idx[best])].id, float(p[best])


def simulate(
    *,
    seed: int,
    requests: int,
    policies: list[Policy] | None = None,
    world: World | None = None,
    outage: bool = True,
    batch: int = 20,
    rate: float = 10.0,
    trace: bool = False,
) -> dict:
    """Run each policy through the same simulated requests (the default policies, then those
    given); the answer is described in the module. With `trace`, each policy's entry also holds
    `choices`: the model chosen for each request in turn (None where none could be)."""
    if not 1 <= requests <= MAX_REQUESTS:
        raise ValueError(f"requests: between 1 and {MAX_REQUESTS}")
    if batch < 1:
        raise ValueError("batch: at least 1")
    if not rate > 0:
        raise ValueError("rate: a positive number of requests per second")
    live = current_snapshot()
    if live.bootstrap or not live.models:
        raise ValueError("the catalog is empty: there is nothing to route between (sync it first)")
    if not live.roles:
        raise ValueError("no active role: there is no request to simulate")
    # The simulated snapshot: the live catalog, roles and health, an empty memory, no cooldown.
    base = live.without_memo(book=OutcomeBook(read_at=timezone.now()), cooldowns=EMPTY_BOOK, columns=None)
    world = world or World.from_priors(base, seed)
    mix = request_mix(base)
    weights = np.array([n for _, n in mix], dtype=float)
    drawn = np.random.default_rng([seed, 1]).choice(len(mix), size=requests, p=weights / weights.sum())
    shapes = [mix[i][0] for i in drawn.tolist()]
    luck = np.random.default_rng([seed, 2]).random(requests).tolist()

    given = list(policies or [])
    for policy in given:
        policy.check_against(live)  # PolicyError (a ValueError) names what it names that does not exist
    runs_of = default_policies() + given
    names = [p.name for p in runs_of]
    if len(set(names)) != len(names):
        raise ValueError(f"policies: each needs its own name ({', '.join(sorted(names))})")

    oracle = _Oracle(runs_of[0].apply(base), world)  # the eligibility of the policy in force
    the_outage = Outage(at_request=(2 * requests) // 3) if outage and requests >= 3 else None
    live_cooldowns = dict(cooldown_rules.policies())
    # The runs seed the decisions' draws; live decisions in this process get theirs back after.
    state = decision.rng.getstate()
    try:
        runs = [
            _run(policy, base, world, shapes, luck, the_outage, oracle, live_cooldowns, seed, batch, rate)
            for policy in runs_of
        ]
    finally:
        decision.rng.setstate(state)

    oracle_p, oracle_cost = [], Decimal(0)
    for i, shape in enumerate(shapes):
        failing = the_outage.model if the_outage and i >= the_outage.at_request else None
        model_id, p = oracle.best(shape, failing)
        oracle_p.append(p)
        if model_id is not None:
            oracle_cost += _cost(base, model_id, shape)
    return {
        "seed": seed,
        "requests": requests,
        "world": {"models": world.models, "categories": world.categories, "noise": world.noise},
        "outage": {"model": the_outage.model, "at_request": the_outage.at_request} if the_outage else None,
        "policies": [_report(run, oracle_p, requests) | ({"choices": run.chosen} if trace else {}) for run in runs],
        "oracle": {
            "expected_success": round(sum(oracle_p) / requests, 4),
            "cost_usd": decimal_str(oracle_cost),
        },
    }


def _cost(snap: Snapshot, model_id: str, shape: Shape) -> Decimal:
    return snap.models[model_id].estimated_cost(shape.input_tokens, shape.output_tokens) or Decimal(0)


def _run(
    policy: Policy,
    base: Snapshot,
    world: World,
    shapes: list[Shape],
    luck: list[float],
    outage: Outage | None,
    oracle: _Oracle,
    live_cooldowns: dict[str, CooldownPolicy],
    seed: int,
    batch: int,
    rate: float,
) -> Run:
    decision.seed(seed)
    run = Run(policy.name)
    # Its own empty memory: the book learns in place (nothing else reads it).
    snap = policy.apply(dataclasses.replace(base, book=OutcomeBook(read_at=base.book.read_at)))
    budgets = planned_budgets(policy)
    budgets.at(timezone.now().date())
    cooldowns = CooldownsInMemory(policy.cooldown_policies(live_cooldowns, snap.roles))
    totals: dict[tuple, tuple] = {}
    pending: list[dict] = []
    outage_start = None
    for i, shape in enumerate(shapes):
        seconds = i / rate
        now = EPOCH + timedelta(seconds=seconds)
        if outage is not None and i == outage.at_request:
            outage_start = seconds
            if outage.model is None:
                outage.model = _outage_model(run, oracle, shapes, outage.at_request)
        failing = outage.model if outage_start is not None else None
        snap.cooldowns = cooldowns.book()
        try:
            answer = decide_under(policy, snap, shape.request(), budgets, now=now.timestamp())
        except RoutingError:
            run.chosen.append(None)
            run.p.append(0.0)
            continue
        model_id, category = answer["model"], answer["category"]
        p = 0.0 if model_id == failing else world.p(model_id, category)
        success = luck[i] < p
        cost = _cost(snap, model_id, shape)
        run.chosen.append(model_id)
        run.p.append(p)
        run.successes += success
        run.cost += cost
        budgets.spend(cost, role=shape.role, strategy="", model=model_id)
        if model_id == failing:
            row = cooldowns.row(model_id, shape.role)
            if run.tripped_at is None:
                run.sent_to_failing += 1
            elif row is not None and row.state == CooldownState.OPEN and row.until <= now:
                run.half_open_tries += 1
        pending.append(
            {
                "model_id": model_id,
                "model_ref": model_id,
                "role": shape.role,
                "category": category or "",
                "strategy": "",
                "success": success,
                "error": "" if success else (OUTAGE_ERROR if model_id == failing else ErrorClass.QUALITY),
                "quality_score": None,
                "cost_usd": cost,
                "computed_cost_usd": None,
                "latency_ms": None,
                "occurred_at": now,
            }
        )
        if len(pending) >= batch or i == len(shapes) - 1:
            if policy.learn:
                snap = _learn(snap, pending, totals)
            opened = cooldowns.report(pending, now)
            if failing in opened and run.tripped_at is None:
                run.tripped_at = seconds - outage_start
            pending = []
    return run


def _outage_model(run: Run, oracle: _Oracle, shapes: list[Shape], at: int) -> str | None:
    """The model the run chose most in the OUTAGE_LOOKBACK requests before the outage (else the
    oracle's most chosen)."""
    counts = Counter(m for m in run.chosen[max(at - OUTAGE_LOOKBACK, 0) : at] if m is not None)
    if not counts:
        counts = Counter(oracle.best(shape, None)[0] for shape in shapes[:at])
        counts.pop(None, None)
    if not counts:
        return None
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


def _learn(snap: Snapshot, rows: list[dict], totals: dict[tuple, tuple]) -> Snapshot:
    """The batch through the real memory code: its deltas move the memory rows' totals, the
    book takes them in, and a new snapshot keeps what was memoised but for the shapes touched."""
    changed = []
    for key, d in memory_deltas(rows).items():
        old = totals.get(key, (0, 0, Decimal(0), 0, 0))
        new = (
            old[0] + d["requests"],
            old[1] + d["successes"],
            old[2] + d["cost_usd"],
            old[3] + d["latency_ms_sum"],
            old[4] + d["latency_count"],
        )
        totals[key] = new
        changed.append((*key, *new))
    touched = snap.book._take(changed)
    fresh = snap.without_memo()
    keep_memoised(fresh, snap, touched, health_changed=False)
    return fresh


def _report(run: Run, oracle_p: list[float], requests: int) -> dict:
    regret = np.cumsum(np.array(oracle_p) - np.array(run.p))
    curve = {f"{point}%": round(float(regret[max(requests * point // 100, 1) - 1]), 4) for point in CURVE_POINTS}
    mix = Counter(m for m in run.chosen if m is not None)
    unrouted = sum(1 for m in run.chosen if m is None)
    return {
        "name": run.name,
        "success_rate": round(run.successes / requests, 4),
        "expected_success": round(sum(run.p) / requests, 4),
        "cost_usd": decimal_str(run.cost),
        "cost_per_success_usd": decimal_str(money_per(run.cost, run.successes)),
        "regret": round(float(regret[-1]), 4),
        "regret_curve": curve,
        "model_mix": dict(sorted(mix.items(), key=lambda item: (-item[1], item[0]))),
        "unrouted": unrouted,
        "outage": {
            "sent_to_failing": run.sent_to_failing,
            "seconds_to_cooldown": None if run.tripped_at is None else round(run.tripped_at, 3),
            "half_open_tries": run.half_open_tries,
        },
    }


def format_table(result: dict) -> str:
    """The answer for a person: one line per policy, then the oracle and the outage."""
    lines = [
        f"Simulation: seed {result['seed']}, {result['requests']} requests, {result['world']['models']} models, "
        f"{result['world']['categories']} categories, noise {result['world']['noise']:g}",
        f"{'policy':<14} {'success':>8} {'expected':>9} {'cost USD':>12} {'USD/success':>12} {'regret':>9}"
        f" {'to failing':>10} {'s to trip':>9} {'half-open':>9}  top model",
    ]
    for p in result["policies"]:
        outage = p["outage"]
        seconds = outage["seconds_to_cooldown"]
        top = next(iter(p["model_mix"]), "-")
        lines.append(
            f"{p['name']:<14} {p['success_rate']:>8.3f} {p['expected_success']:>9.3f} {p['cost_usd']:>12.12}"
            f" {p['cost_per_success_usd'] or '-':>12.12} {p['regret']:>9.1f} {outage['sent_to_failing']:>10}"
            f" {('-' if not outage['sent_to_failing'] else 'never') if seconds is None else f'{seconds:g}':>9} {outage['half_open_tries']:>9}  {top}"
        )
    lines.append(
        f"{'oracle':<14} {'':>8} {result['oracle']['expected_success']:>9.3f} {result['oracle']['cost_usd']:>12.12}"
    )
    if result["outage"]:
        lines.append(
            f"Outage: {result['outage']['model']} fails every call from request {result['outage']['at_request']}."
        )
    return "\n".join(lines)
