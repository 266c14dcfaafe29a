"""The route decision (and the escalation answer), read from the in-process snapshot.

What varies per request (exclusions, max cost, model budgets) is applied while walking the
memoised ranking of routing.scoring; the escalation chain comes from routing.escalation.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.conf import settings

from core import metrics
from core.money import decimal_str, money_per
from costs.budgets import BudgetBook, BudgetStatus, budget_book
from costs.models import BudgetAction, BudgetScope, BudgetState
from routing.cooldowns import CooldownBook
from routing.escalation import escalation_chain
from routing.models import Accuracy
from routing.providers import provider_object
from routing.scoring import PRIOR_STRENGTH, Scored, ranked_for
from routing.snapshot import Snapshot, current_snapshot

# Past a soft budget limit a decision leans one step toward economy.
THRIFTIER = {Accuracy.HIGH: Accuracy.BALANCED, Accuracy.BALANCED: Accuracy.ECONOMY, Accuracy.ECONOMY: Accuracy.ECONOMY}
DEFAULT_INPUT_TOKENS = 1_000
DEFAULT_OUTPUT_TOKENS = 500
CANDIDATES_SHOWN = 10
STRATEGY_MIN_SAMPLES = 20
# An exploratory decision samples among this many of the best eligible candidates.
EXPLORATION_POOL = 50
# Answers kept per snapshot: the answer to the same request, when no exploration was drawn in its
# favour (half-open models let through: VARIANTS_KEPT), is the same but for its decision_id and the
# snapshot's version while what it rests on stands: the models the walk and the escalation chain
# looked at cooling down as they were (none, or the same ones with the same open periods and
# half-open share, with a new draw passing over each half-open one again, as a walk would), and
# the same budget states (the same budget and state for the request, the same model budgets
# past their soft limit; the budget shown is that of the budget state in hand). So a cooldown
# that trips or clears elsewhere, or spend that moves no budget's state, keeps it. Kept on the
# snapshot and carried to the next with the rankings (routing.snapshot.keep_memoised: dropped
# when its ranking's shape is touched), so new outcomes of one shape, health, catalog or roles
# drop them. Up to this many (then started over, as the rankings are).
ANSWERS_KEPT = 4096
# A kept answer's walk that drew for half-open models: the answers given when a draw let some
# through are kept on it too, each under what the walk's draws decided (passed over or let
# through, model by model, for the models it drew for): the same draws give the same walk. Up to
# this many per kept answer (then made afresh each time).
VARIANTS_KEPT = 32
# "optimize" names a goal; quality and cost are the accuracies that weigh them most.
OPTIMIZE_ACCURACY = {"quality": Accuracy.HIGH, "cost": Accuracy.ECONOMY}

# The draws of exploration (and of half-open cooldowns): seeded by LLMHIVE_ROUTING_SEED when set,
# so that a test or a simulation is repeatable.
rng = random.Random(settings.LLMHIVE_ROUTING_SEED)


def seed(value: int | None) -> None:
    rng.seed(value)


def draw_again(kept: KeptAnswer, cooldowns: CooldownBook, role: str, drawn: list[float]) -> tuple[bool, ...] | None:
    """A draw for each model the kept answer's walk drew for, in walk order, as the walk itself
    draws (kept in `drawn`, for a walk to take if a half-open one is let through this time):
    None when they pass over the same models cooling down again (the kept answer stands), else
    what they decided, model by model (True: passed over), to find the answer kept for it."""
    now = time.time()
    passed = []
    let_through = False
    for model_id in kept.drew_for:
        drawn.append(rng.random())
        blocks = cooldowns.blocks(model_id, role, now, drawn[-1])
        passed.append(blocks)
        if not blocks and cooldowns.until(model_id, role) is not None:
            let_through = True
    return tuple(passed) if let_through else None


def new_decision_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as uuid.uuid4().hex, in half the time."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def explores(role) -> bool:
    """Whether this decision explores (a draw, for a role that explores at all)."""
    return role.exploration_rate > 0 and rng.random() < role.exploration_rate


class RoutingError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


@dataclass(slots=True)
class KeptAnswer:
    """A kept answer (see ANSWERS_KEPT), with what it rests on."""

    statuses: list[BudgetStatus]  # the budget state it was given under
    watched: frozenset[str]  # the models whose cooldowns it rests on
    shape: tuple[str, str]  # (role, category or ""): the memoised shape it is dropped with
    answer: dict
    # What it rests on of the budget state (budget_key): another state with the same key gives
    # the same answer, with that state's budget shown.
    budgets: tuple = ()
    # When some of the models it rests on were cooling down: the cooldowns it was given under,
    # what it read of them (CooldownBook.state_of: new cooldowns that read the same keep it), and
    # the models the walk drew for, in walk order (drawn for again on every use, as a walk
    # would: a half-open one must be passed over again).
    cooldowns: CooldownBook | None = None
    cooled: tuple = ()
    drew_for: tuple[str, ...] = ()
    # The answer as JSON but for `decision_id`, `catalog_version` and `degraded`, which change
    # from one call to the next: written once, by routing.api.
    body: bytes | None = None
    # The answers given when draws let half-open models through (see VARIANTS_KEPT), by what the
    # walk's draws decided; they rest on what this one rests on (their walks looked at a part of
    # its models: they stop sooner, with more eligible), and go with it.
    variants: dict[tuple[bool, ...], KeptAnswer] | None = None

    def variant(self, passed: tuple[bool, ...]) -> KeptAnswer | None:
        """The answer kept for these draws: that of the walk whose own draws (a first part of
        these: it drew for fewer models) decided the same. (Read from a copy: the threads of a
        gthread worker may add to them meanwhile.)"""
        if self.variants:
            for decided, answer in tuple(self.variants.items()):
                if passed[: len(decided)] == decided:
                    return answer
        return None

    def keep_variant(self, passed: tuple[bool, ...], answer: KeptAnswer) -> None:
        if self.variants is None:
            self.variants = {}
        if len(self.variants) < VARIANTS_KEPT:
            self.variants[passed] = answer

    def rests(self, cooldowns: CooldownBook) -> bool:
        """Whether the cooldowns it rests on stand (the draws for the models passed over aside)."""
        if self.cooldowns is None:
            return not cooldowns.touches(self.watched)
        if cooldowns is self.cooldowns:
            return True
        if cooldowns.state_of(self.watched, self.shape[0]) != self.cooled:
            return False
        self.cooldowns = cooldowns  # (the same reading: compared by identity from now on)
        return True

    def under(self, book: BudgetBook, statuses: list[BudgetStatus], strategy: str | None) -> KeptAnswer | None:
        """This answer under another budget state: itself with that state's budget shown if what
        it rests on is the same (a copy, written anew), else None."""
        budget, model_budgets = budgets_for(book, self.shape[0], strategy, statuses)
        if budget_key(budget, model_budgets) != self.budgets:
            return None
        shown = {**self.answer, "budget": _budget_out(budget)}
        return replace(self, statuses=statuses, answer=shown, body=None, variants=None)


def budget_key(budget: BudgetStatus | None, model_budgets: dict[str, BudgetStatus]) -> tuple:
    """What a decision reads of the budget state: the budget that applies and its state (a
    downgrade, a refusal), and the model budgets past their soft limit with theirs."""
    applies = None if budget is None else (budget.budget.pk, budget.state)
    return applies, frozenset((model, status.state) for model, status in model_budgets.items())


class Answer(dict):
    """decide()'s answer; `kept` is the entry it comes from (or was kept as), if any."""

    __slots__ = ("kept",)

    def __init__(self, answer: dict, kept: KeptAnswer | None = None) -> None:
        super().__init__(answer)
        self.kept = kept


def request_key(req: RouteRequest) -> tuple:
    return (
        req.role,
        req.category,
        req.accuracy,
        req.optimize,
        tuple(req.required_capabilities),
        req.min_context_length,
        tuple(req.exclude),
        req.max_cost_usd,
        req.fallback_count,
        req.strategy,
        req.estimated_input_tokens,
        req.estimated_output_tokens,
    )


@dataclass
class RouteRequest:
    role: str
    category: str | None = None
    accuracy: str | None = None
    required_capabilities: list[str] = field(default_factory=list)
    min_context_length: int | None = None
    estimated_input_tokens: int | None = None
    estimated_output_tokens: int | None = None
    max_cost_usd: Decimal | None = None
    strategy: str | None = None
    exclude: list[str] = field(default_factory=list)
    fallback_count: int = 2
    optimize: str | None = None


def budgets_for(
    book: BudgetBook, role: str, strategy: str | None, statuses: list[BudgetStatus]
) -> tuple[BudgetStatus | None, dict[str, BudgetStatus]]:
    """What a decision reads of the budget state `statuses` for a role and strategy: the tightest
    budget that applies, and the model budgets past their soft limit, by model."""
    model_budgets = {
        s.budget.scope_value: s
        for s in book.applicable(role=role, strategy=strategy, statuses=statuses)
        if s.budget.scope == BudgetScope.MODEL and s.state != BudgetState.OK
    }
    return book.state_for(role=role, strategy=strategy, statuses=statuses), model_budgets


def _candidate_out(c: Scored, input_tokens: int, output_tokens: int) -> dict:
    """The candidate as /route shows it (kept on it for the same estimate: answers share it)."""
    shown = c.shown
    if shown is not None and shown[0] == input_tokens and shown[1] == output_tokens:
        return shown[2]
    out = {
        "model": c.model.id,
        "score": round(c.score, 4),
        "preferred": c.preferred is not None,
        "estimated_cost_usd": c.model.estimated_cost(input_tokens, output_tokens),
        "parts": c.parts,
    }
    c.shown = (input_tokens, output_tokens, out)
    return out


def _budget_out(status: BudgetStatus | None) -> dict | None:
    if status is None:
        return None
    return {
        "scope": status.budget.scope,
        "scope_value": status.budget.scope_value,
        "limit_usd": status.budget.limit_usd,
        "spent_usd": status.spent_usd,
        "remaining_usd": status.remaining_usd,
        "state": status.state,
        "action": status.budget.action,
    }


def check_category(snap: Snapshot, category: str | None, where: str = "body") -> None:
    """A request that names a category must name an active one: an unknown or retired category
    would otherwise be answered as if none were asked for. The refusal lists the known ones."""
    if category and category not in snap.categories:
        message = f"No active category '{category}'. Categories are OpenRouter's, curated in the admin."
        raise RoutingError(
            422,
            "unknown_category",
            message,
            errors=[{"in": where, "field": "category", "message": message, "type": "unknown_category"}],
            known=sorted(snap.categories),
        )


def bootstrap_answer(req: RouteRequest, bootstrap: tuple[str, ...], provider: dict | None = None) -> dict:
    models = [m for m in bootstrap if m not in set(req.exclude)]
    if not models:
        raise RoutingError(
            422,
            "no_eligible_model",
            "The catalog is empty and every bootstrap model is excluded.",
            rejected={"excluded": len(bootstrap)},
        )
    return {
        "model": models[0],
        "fallbacks": models[1 : 1 + req.fallback_count],
        "escalation": [],
        "estimated_cost_usd": None,
        "budget": None,
        "source": "bootstrap",
        "decision_id": new_decision_id(),
        "explored": False,
        "candidates": [],
        "catalog_version": "bootstrap",
        "category": req.category,
        "accuracy": req.accuracy or Accuracy.BALANCED,
        "recommended_strategy": None,
        "provider": provider,
    }


def decide(
    req: RouteRequest, *, snap: Snapshot | None = None, book: BudgetBook = budget_book, now: float | None = None
) -> dict:
    """The answer to /route. `now` (a Unix time) is when cooldowns are judged: the present,
    unless a simulation runs on its own clock (routing.simulation)."""
    snap = snap or current_snapshot()
    role = snap.roles.get(req.role)
    if role is None:
        raise RoutingError(404, "unknown_role", f"No active role '{req.role}'. Roles are made in the admin.")
    check_category(snap, req.category)
    if snap.bootstrap:  # no routable model, and the last sync failed (catalog.selectors)
        # The role's provider demands (ZDR, data collection…) hold for bootstrap models too.
        return bootstrap_answer(req, snap.bootstrap, provider_object(role, None, None, 0, 0))

    statuses = book.statuses()
    cooldowns = snap.cooldowns
    # The answer to this request is kept while nothing it rests on moves (see ANSWERS_KEPT).
    memo_key, explore, base = None, None, None
    drawn: list[float] = []  # the walk's draws for models cooling down, drawn for a kept answer
    if now is None and book is budget_book:
        memo_key = request_key(req)
        kept = snap.answers.get(memo_key)
        if kept is not None and kept.statuses is not statuses:
            kept = kept.under(book, statuses, req.strategy)
            if kept is not None:
                snap.answers[memo_key] = kept
        if kept is not None and kept.rests(cooldowns):
            explore = explores(role)
            if not explore:
                passed = draw_again(kept, cooldowns, role.slug, drawn)
                if passed is not None:  # a half-open model let through: the answer kept for it, if any
                    base, kept = kept, kept.variant(passed)
                if kept is not None:
                    answer = Answer(kept.answer, kept)
                    answer["decision_id"], answer["catalog_version"] = new_decision_id(), snap.catalog_version
                    metrics.route_answers_kept.inc()
                    return answer

    category = req.category or role.default_category
    accuracy = req.accuracy or OPTIMIZE_ACCURACY.get(req.optimize) or role.default_accuracy
    optimize = req.optimize
    budget, model_budgets = budgets_for(book, role.slug, req.strategy, statuses)
    downgraded = None
    if budget is not None and budget.state == BudgetState.EXHAUSTED:
        if budget.budget.action == BudgetAction.BLOCK:
            raise RoutingError(
                402,
                "budget_exhausted",
                f"Budget '{budget.budget.name}' is exhausted ({decimal_str(budget.spent_usd)} of {decimal_str(budget.budget.limit_usd)} USD this {budget.budget.period}).",
                budget=_budget_out(budget),
            )
        downgraded, accuracy, optimize = "budget_exhausted", Accuracy.ECONOMY, None
    elif budget is not None and budget.state == BudgetState.SOFT_LIMIT and THRIFTIER[accuracy] != accuracy:
        downgraded, accuracy, optimize = "budget_soft_limit", THRIFTIER[accuracy], None

    required = role.required | frozenset(req.required_capabilities)
    min_context = max(role.min_context, req.min_context_length or 0)
    input_tokens = req.estimated_input_tokens if req.estimated_input_tokens is not None else DEFAULT_INPUT_TOKENS
    output_tokens = req.estimated_output_tokens if req.estimated_output_tokens is not None else DEFAULT_OUTPUT_TOKENS
    # An exhausted budget that downgrades wants the cheaper model it promises: the role's
    # preferences (often its dearest models) no longer come first, they compete on the score.
    ranking = ranked_for(
        snap,
        role,
        category,
        accuracy,
        required,
        min_context,
        input_tokens,
        output_tokens,
        optimize,
        preferences=downgraded != "budget_exhausted",
    )

    wanted = 1 + req.fallback_count
    if explore is None:  # (drawn here, after the budget's refusal, unless drawn for a kept answer)
        explore = explores(role)
    if explore:
        memo_key = None
    excluded = set(req.exclude)
    pool_size = EXPLORATION_POOL if explore else 0
    chosen: list[Scored] = []
    shown: list[Scored] = []
    pool: list[Scored] = []
    rejected: dict[str, int] = {}
    at = time.time() if now is None else now
    draws = iter(drawn)
    walked: list[str] = []  # the models whose cooldowns were looked at (a kept answer's `watched`)
    drew_for: list[str] = []  # those cooling down (for some role) the walk drew for
    decided: list[bool] = []  # what each of those draws decided (True: passed over)
    let_through = False  # a half-open model let through by a draw
    for candidate in ranking.ordered:
        model = candidate.model
        walked.append(model.id)
        reason = None
        if model.id in excluded:
            reason = "excluded"
        elif req.max_cost_usd is not None and model.estimated_cost(input_tokens, output_tokens) > req.max_cost_usd:
            reason = "over_max_cost"
        elif model.id in model_budgets and model_budgets[model.id].state == BudgetState.EXHAUSTED:
            reason = "budget_exhausted"
        elif model.id in cooldowns:
            draw = next(draws, None)
            drew_for.append(model.id)
            decided.append(cooldowns.blocks(model.id, role.slug, at, rng.random() if draw is None else draw))
            if decided[-1]:
                reason = "cooling_down"
            elif cooldowns.until(model.id, role.slug) is not None:
                let_through = True
        if reason:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        if len(chosen) < wanted:
            chosen.append(candidate)
        if len(shown) < CANDIDATES_SHOWN:
            shown.append(candidate)
        if len(pool) < pool_size:
            pool.append(candidate)
        if len(chosen) >= wanted and len(shown) >= CANDIDATES_SHOWN and len(pool) >= pool_size:
            break  # (the whole ranking is walked only when nothing is eligible, to count why)
    if not chosen:
        for reason, count in ranking.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
        raise RoutingError(
            422,
            "no_eligible_model",
            f"No model can serve role '{role.slug}' with these requirements ({sum(rejected.values())} rejected).",
            rejected=dict(sorted(rejected.items())),
        )

    explored = False
    if pool and downgraded:
        # A downgraded decision promises a cheaper model: exploration may still try others (so
        # that they keep gathering outcomes while a budget is tight), but none dearer, for this
        # request's tokens, than the deterministic choice (pool[0], which is chosen[0]).
        ceiling = pool[0].model.estimated_cost(input_tokens, output_tokens)
        pool = [c for c in pool if c.model.estimated_cost(input_tokens, output_tokens) <= ceiling]
    if pool:
        pick = thompson_pick(pool)
        if pick is not chosen[0]:
            chosen = [pick, *(c for c in chosen if c is not pick)][:wanted]
            explored = True
    best = chosen[0]
    blocked = excluded | {c.model.id for c in chosen}
    escalation = escalation_chain(
        snap,
        role,
        best.model.id,
        ranking,
        blocked,
        model_budgets,
        max_cost=req.max_cost_usd,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        looked_at=walked,
    )
    answer = {
        "model": best.model.id,
        "fallbacks": [c.model.id for c in chosen[1:]],
        "escalation": [step["model"] for step in escalation],
        "estimated_cost_usd": best.model.estimated_cost(input_tokens, output_tokens),
        "budget": _budget_out(budget),
        "downgraded": downgraded,
        "source": "catalog",
        "decision_id": new_decision_id(),
        "explored": explored,
        "candidates": [_candidate_out(c, input_tokens, output_tokens) for c in shown],
        "catalog_version": snap.catalog_version,
        "category": category,
        "accuracy": accuracy,
        "recommended_strategy": None if req.strategy else recommend_strategy(snap, role.slug, category),
        "provider": provider_object(role, best.model, req.max_cost_usd, input_tokens, output_tokens),
    }
    if memo_key is None or (let_through and base is None):
        return answer
    watched = frozenset(walked)
    kept = KeptAnswer(statuses, watched, (role.slug, category or ""), answer, budget_key(budget, model_budgets))
    if let_through:  # kept only beside the answer its draws passed over (which it rests on)
        base.keep_variant(tuple(decided), kept)
        return Answer(answer, kept)
    if cooldowns.touches(watched):  # (the escalation chain's steps pass over any model cooling down)
        kept.cooldowns, kept.cooled = cooldowns, cooldowns.state_of(watched, role.slug)
        kept.drew_for = tuple(drew_for)
    if len(snap.answers) >= ANSWERS_KEPT:
        snap.answers.clear()  # many distinct requests: start over rather than grow
    snap.answers[memo_key] = kept
    return Answer(answer, kept)


def thompson_pick(pool: list[Scored]) -> Scored:
    """Thompson sampling: draw each candidate's quality from its Beta posterior (the one whose
    mean the score uses: the prior weighing PRIOR_STRENGTH outcomes, plus the outcomes) and take
    the best score with the drawn quality. A model with few outcomes has a wide posterior, so it
    is tried now and then; as outcomes come in, the draws settle on the best. When the
    deterministic choice is one of the role's preferences, only preferred models are drawn."""
    if pool[0].preferred is not None:
        pool = [c for c in pool if c.preferred is not None]
    best, best_score = pool[0], -1.0
    for candidate in pool:
        prior = min(max(candidate.prior, 0.01), 0.99)
        alpha = candidate.successes + PRIOR_STRENGTH * prior
        beta = candidate.samples - candidate.successes + PRIOR_STRENGTH * (1.0 - prior)
        drawn = candidate.w_quality * rng.betavariate(alpha, beta) + candidate.rest
        if drawn > best_score:
            best, best_score = candidate, drawn
    return best


def recommend_strategy(snap: Snapshot, role: str, category: str | None) -> dict | None:
    """The strategy with the best success rate for this role and category, once it has enough samples."""
    options = snap.strategy_outcomes.get((role, category or ""), {})
    best = None
    for slug, outcome in options.items():
        if outcome.requests < STRATEGY_MIN_SAMPLES:
            continue
        # Shrink toward 0.5 so that 3 of 3 does not beat 95 of 100.
        rate = (outcome.successes + 1) / (outcome.requests + 2)
        key = (rate, -outcome.cost / outcome.requests)
        if best is None or key > best[0]:
            best = (key, slug, outcome)
    if best is None:
        return None
    _, slug, outcome = best
    return {
        "strategy": slug,
        "success_rate": round(outcome.successes / outcome.requests, 4),
        "samples": outcome.requests,
        "cost_per_request_usd": money_per(outcome.cost, outcome.requests),
    }


@dataclass
class EscalateRequest:
    role: str
    failed_model: str
    reason: str = ""
    category: str | None = None
    strategy: str | None = None
    exclude: list[str] = field(default_factory=list)
    estimated_input_tokens: int | None = None
    estimated_output_tokens: int | None = None
    max_cost_usd: Decimal | None = None


def escalate(req: EscalateRequest, *, snap: Snapshot | None = None, book: BudgetBook = budget_book) -> dict:
    snap = snap or current_snapshot()
    role = snap.roles.get(req.role)
    if role is None:
        raise RoutingError(404, "unknown_role", f"No active role '{req.role}'. Roles are made in the admin.")
    check_category(snap, req.category)
    if req.failed_model not in snap.models:
        raise RoutingError(
            404, "unknown_model", f"No model '{req.failed_model}' in the catalog: there is nothing to escalate from."
        )
    category = req.category or role.default_category
    input_tokens = req.estimated_input_tokens if req.estimated_input_tokens is not None else DEFAULT_INPUT_TOKENS
    output_tokens = req.estimated_output_tokens if req.estimated_output_tokens is not None else DEFAULT_OUTPUT_TOKENS
    ranking = ranked_for(
        snap, role, category, Accuracy.HIGH, role.required, role.min_context, input_tokens, output_tokens
    )
    budget, model_budgets = budgets_for(book, role.slug, req.strategy, book.statuses())
    if budget is not None and budget.state == BudgetState.EXHAUSTED and budget.budget.action == BudgetAction.BLOCK:
        raise RoutingError(
            402, "budget_exhausted", f"Budget '{budget.budget.name}' is exhausted.", budget=_budget_out(budget)
        )
    chain = escalation_chain(
        snap,
        role,
        req.failed_model,
        ranking,
        set(req.exclude),
        model_budgets,
        max_cost=req.max_cost_usd,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    return {
        "model": chain[0]["model"] if chain else None,
        "chain": [step["model"] for step in chain],
        "steps": chain,
        "source": chain[0]["source"] if chain else None,
        "catalog_version": snap.catalog_version,
    }
