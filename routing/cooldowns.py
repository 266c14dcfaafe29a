"""Cooldowns: a circuit breaker per model, tripped by the retryable failures reported through
POST /usage.

When a model's retryable failures (rate_limited, provider_error, timeout) reported within the
window reach the threshold, it is left out (open) for a while that doubles on each trip in a row,
up to the max. Past that it is half-open: a share of decisions may try it; a success that
happened after its time was up closes it, a retryable failure that happened then reopens it for
longer. Failures are counted over every role's events for the model (an outage is the
provider's); a role with its own cooldown settings has its own row, judged by them.

The check runs in the ingest's transaction (`usage_stored`), only for models with a retryable
failure in the batch, or a success while half-open (known from the in-process read model, without
a query): a batch of successes costs nothing. It locks the model's rows (SELECT … FOR UPDATE, in a
fixed order) before counting, so two ingests at once see each other's failures and trip once.
Every state change bumps COOLDOWN_VERSION: each worker's version watch sees it within a check
interval, and decisions read the open models from the snapshot's `CooldownBook`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.models import DataVersion, version_watch
from core.upsert import update_rows
from core.versions import pause
from costs.models import RETRYABLE_ERRORS, UsageEvent
from routing.models import COOLDOWN_FIELDS, COOLDOWN_VERSION, ROUTING_VERSION, CooldownState, ModelCooldown, Role

DEFAULT_POLICY = ""  # the `role` of the rows judged by the settings


@dataclass(frozen=True, slots=True)
class Policy:
    failures: int
    window_seconds: float
    seconds: float
    max_seconds: float
    half_open_share: float

    @classmethod
    def default(cls) -> Policy:
        return cls(
            failures=settings.LLMHIVE_COOLDOWN_FAILURES,
            window_seconds=settings.LLMHIVE_COOLDOWN_WINDOW_SECONDS,
            seconds=settings.LLMHIVE_COOLDOWN_SECONDS,
            max_seconds=settings.LLMHIVE_COOLDOWN_MAX_SECONDS,
            half_open_share=settings.LLMHIVE_COOLDOWN_HALF_OPEN_SHARE,
        )

    @classmethod
    def for_role(cls, role: Role) -> Policy:
        """The role's overrides over the settings."""
        base = cls.default()

        def pick(field: str):
            value = getattr(role, f"cooldown_{field}")
            return getattr(base, field) if value is None else value

        return cls(
            *(pick(field) for field in ("failures", "window_seconds", "seconds", "max_seconds", "half_open_share"))
        )

    def open_seconds(self, streak: int) -> float:
        """How long the `streak`-th trip in a row leaves the model out."""
        return min(self.seconds * 2 ** max(streak - 1, 0), self.max_seconds)


_policies: tuple[tuple, dict[str, Policy]] | None = None


def policies() -> dict[str, Policy]:
    """The default policy ('') and one per active role with cooldown settings of its own, kept
    while the routing data version and the settings stand (read again when a role is saved
    anywhere)."""
    global _policies
    key = (version_watch.versions().get(ROUTING_VERSION, 0), Policy.default())
    memo = _policies
    if memo is None or memo[0] != key:
        memo = _policies = (key, _load_policies())
    return memo[1]


def forget_policies() -> None:
    global _policies
    _policies = None


def _load_policies() -> dict[str, Policy]:
    own = Q()
    for name in COOLDOWN_FIELDS:
        own |= Q(**{f"{name}__isnull": False})
    found = {DEFAULT_POLICY: Policy.default()}
    for role in Role.objects.filter(own, active=True):
        found[role.slug] = Policy.for_role(role)
    return found


# --- The read model a decision asks ----------------------------------------------------------------


class CooldownBook:
    """The open cooldowns, as the snapshot holds them: one dict lookup per question.

    `until` maps (model, policy role) to the POSIX time its open period ends; `shares` the
    half-open share of each policy; a role without its own policy is judged by the default one.
    """

    __slots__ = ("_until", "_shares", "_earliest")

    def __init__(self, until: dict[tuple[str, str], float], shares: dict[str, float]) -> None:
        self._until = until
        self._shares = shares
        # Per model, the earliest end of an open period: a success after it may close one.
        self._earliest: dict[str, float] = {}
        for (model, _), end in until.items():
            self._earliest[model] = min(end, self._earliest.get(model, math.inf))

    def __bool__(self) -> bool:
        return bool(self._until)

    def _policy(self, role_slug: str) -> str:
        return role_slug if role_slug in self._shares else DEFAULT_POLICY

    def blocks(self, model_id: str, role_slug: str, now: float, draw: float) -> bool:
        """True while the model is open for this role; while half-open (past `until`), True unless
        `draw` (uniform in [0, 1)) falls under the half-open share."""
        policy = self._policy(role_slug)
        until = self._until.get((model_id, policy))
        if until is None:
            return False
        if now < until:
            return True
        return draw >= self._shares[policy]

    def half_open_by(self, model_id: str, occurred: float) -> bool:
        """Whether some open period of this model had ended by `occurred` (a success then may close it)."""
        earliest = self._earliest.get(model_id)
        return earliest is not None and occurred >= earliest

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._earliest

    def until(self, model_id: str, role_slug: str) -> float | None:
        """When the model's open period ends for this role (a POSIX time; past it, half-open), or
        None when it has no cooldown for the role."""
        return self._until.get((model_id, self._policy(role_slug)))

    def state_of(self, model_ids, role_slug: str) -> tuple:
        """What a walk for this role over `model_ids` reads of these cooldowns: the role's
        half-open share, and for each model (in the iteration order of `model_ids`) False when it
        has no cooldown, else when its open period for the role ends (None: cooling for other
        roles only, which a walk still draws for)."""
        policy = self._policy(role_slug)
        earliest, until = self._earliest, self._until
        return (self._shares[policy], *(m in earliest and until.get((m, policy)) for m in model_ids))

    def touches(self, model_ids) -> bool:
        """Whether any of `model_ids` has a cooldown (open or half-open)."""
        return bool(self._earliest) and not self._earliest.keys().isdisjoint(model_ids)


EMPTY_BOOK = CooldownBook({}, {DEFAULT_POLICY: 0.0})


def load_book() -> CooldownBook:
    """Two small queries: the open rows, and the policies' half-open shares."""
    until = {
        (model, role): at.timestamp()
        for model, role, at in ModelCooldown.objects.filter(state=CooldownState.OPEN, until__isnull=False).values_list(
            "model", "role", "until"
        )
    }
    pause()  # (in a background refresh: core.versions)
    shares = {slug: policy.half_open_share for slug, policy in policies().items()}
    return CooldownBook(until, shares)


_current: tuple[tuple[int, int], CooldownBook] | None = None


def current_book() -> CooldownBook:
    """This process's book, reloaded when the cooldowns or the roles changed (read through the
    shared version watch: at most one query per check interval)."""
    global _current
    versions = version_watch.versions()
    key = (versions.get(COOLDOWN_VERSION, 0), versions.get(ROUTING_VERSION, 0))
    memo = _current
    if memo is None or memo[0] != key:
        memo = _current = (key, load_book())
    return memo[1]


# --- Reacting to outcomes --------------------------------------------------------------------------


def react_to_usage(rows: list[dict], **kwargs) -> tuple[str, ...]:
    """On `usage_stored`, in the batch's transaction: trip, close or reopen what the batch says.
    Returns the version that moved (the ingest writes it), if one did."""
    failing, recovering = reported(rows, current_book())
    if (failing or recovering) and evaluate(failing, recovering):
        return (COOLDOWN_VERSION,)
    return ()


def reported(rows: list[dict], book: CooldownBook) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """What a batch of usage rows says to the cooldowns: each model's retryable failures, and its
    successes that happened after one of its open periods in `book` had ended (they may close it)."""
    failing: dict[str, list[dict]] = {}
    for row in rows:
        if row["error"] in RETRYABLE_ERRORS and row["model_id"] is not None:
            failing.setdefault(row["model_id"], []).append(row)
    recovering: dict[str, list[dict]] = {}
    if book:
        for row in rows:
            model_id = row["model_id"]
            if row["success"] and model_id in book and book.half_open_by(model_id, row["occurred_at"].timestamp()):
                recovering.setdefault(model_id, []).append(row)
    return failing, recovering


def _lock(models: list[str], roles: list[str]) -> list[ModelCooldown]:
    # A fixed order, so that two batches locking the same rows cannot deadlock.
    return list(
        ModelCooldown.objects.select_for_update().filter(model__in=models, role__in=roles).order_by("model", "role")
    )


def evaluate(failing: dict[str, list[dict]], recovering: dict[str, list[dict]]) -> list[ModelCooldown]:
    """Judge each model's rows against what was reported and save what changed; returns the rows
    that changed (the caller moves the cooldown version: react_to_usage)."""
    now = timezone.now()
    by_policy = policies()
    roles = sorted(by_policy)
    locked = _lock(sorted(set(failing) | set(recovering)), roles)
    have = {(c.model, c.role) for c in locked}
    missing = [ModelCooldown(model=m, role=r) for m in sorted(failing) for r in roles if (m, r) not in have]
    if missing:
        ModelCooldown.objects.bulk_create(missing, ignore_conflicts=True)
        locked = _lock(sorted(set(failing) | set(recovering)), roles)

    changed: list[ModelCooldown] = []
    recent = (
        _recent_failures(sorted(failing), now - timedelta(seconds=max(p.window_seconds for p in by_policy.values())))
        if failing
        else {}
    )
    for cooldown in locked:
        reported = failing.get(cooldown.model, []) + recovering.get(cooldown.model, [])
        if step(cooldown, by_policy[cooldown.role], reported, recent.get(cooldown.model, []), now):
            changed.append(cooldown)
    if changed:
        update_rows(
            ModelCooldown,
            changed,
            ["state", "reason", "trips", "streak", "opened_at", "until", "closed_at", "updated_at"],
        )
    return changed


OPENED, CLOSED, UNCHANGED = "opened", "closed", "unchanged"


def judge(
    cooldown: ModelCooldown,
    policy: Policy,
    reported: list[dict],
    recent: list[tuple[datetime, str]],
    now: datetime,
) -> tuple[str, str]:
    """The cooldown rules, with no I/O: given a model's cooldown state (a ModelCooldown row, saved
    or not), the policy judging it, the rows just reported for the model (each with
    `occurred_at`, `success`, `error`), its recent retryable failures (time, class; those just
    reported included) and the time now, whether it opens, closes or stays as it is, and why.
    evaluate() judges the stored rows by it; routing.simulation judges rows held in memory on a
    simulated clock."""
    if cooldown.state == CooldownState.OPEN:
        if cooldown.until is None or cooldown.until > now:
            return UNCHANGED, ""  # still open: reports of calls made before the trip change nothing
        # Half-open: what happened since its time was up decides, the latest report first.
        since = [r for r in reported if r["occurred_at"] >= cooldown.until]
        if not since:
            return UNCHANGED, ""
        latest = max(since, key=lambda r: (r["occurred_at"], not r["success"]))
        if latest["success"]:
            return CLOSED, "a success after its time was up"
        return OPENED, f"{latest['error']} while half-open"
    if not any(r["error"] in RETRYABLE_ERRORS for r in reported):
        return UNCHANGED, ""
    start = now - timedelta(seconds=policy.window_seconds)
    if cooldown.closed_at is not None and cooldown.closed_at > start:
        start = cooldown.closed_at
    counts = Counter(error for at, error in recent if start <= at)
    if sum(counts.values()) >= policy.failures:
        parts = ", ".join(f"{n} {error}" for error, n in sorted(counts.items()) if n)
        return OPENED, f"{parts} in {policy.window_seconds:g} s"
    return UNCHANGED, ""


def step(
    cooldown: ModelCooldown,
    policy: Policy,
    reported: list[dict],
    recent: list[tuple[datetime, str]],
    now: datetime,
) -> bool:
    """Judge the cooldown (see judge) and change the row in memory as judged; True when it changed."""
    verdict, reason = judge(cooldown, policy, reported, recent, now)
    if verdict == OPENED:
        _open(cooldown, now, policy, reason)
    elif verdict == CLOSED:
        _close(cooldown, now, reason)
    return verdict != UNCHANGED


class CooldownsInMemory:
    """Cooldowns judged by the same rules (step) on rows held in memory and a clock the caller
    gives: a replay (routing.replay: the failures the ledger saw, at their times) and a simulation
    (routing.simulation: the simulated clock). Nothing is stored, nothing locked."""

    def __init__(self, by_policy: dict[str, Policy]) -> None:
        self.by_policy = by_policy  # "" (DEFAULT_POLICY) and the roles with their own
        self.shares = {slug: p.half_open_share for slug, p in by_policy.items()}
        self.rows: dict[tuple[str, str], ModelCooldown] = {}
        self._failures: dict[str, list[tuple[datetime, str]]] = {}
        self._window = timedelta(seconds=max(p.window_seconds for p in by_policy.values()))

    def _open(self) -> dict[tuple[str, str], float]:
        return {
            key: c.until.timestamp()
            for key, c in self.rows.items()
            if c.state == CooldownState.OPEN and c.until is not None
        }

    def book(self) -> CooldownBook:
        """The open cooldowns as routing.decision reads them (with the policies' half-open shares)."""
        return CooldownBook(self._open(), self.shares)

    def row(self, model_id: str, role: str) -> ModelCooldown | None:
        """The cooldown judging `model_id` for `role` (the settings' when the role has no policy of its own)."""
        return self.rows.get((model_id, role if role in self.by_policy else DEFAULT_POLICY))

    def report(self, rows: list[dict], now: datetime) -> set[str]:
        """A batch of usage rows, as react_to_usage and evaluate() take one at `now`; returns the
        models a cooldown opened for."""
        failing, recovering = reported(rows, CooldownBook(self._open(), {}))
        opened = set()
        for model_id in sorted(set(failing) | set(recovering)):
            # (the model's recent failures, those just reported included, as the ledger holds them)
            recent = [f for f in self._failures.get(model_id, ()) if f[0] >= now - self._window]
            recent += [(row["occurred_at"], row["error"]) for row in failing.get(model_id, ())]
            self._failures[model_id] = recent
            reports = failing.get(model_id, []) + recovering.get(model_id, [])
            for role in sorted(self.by_policy):
                cooldown = self.rows.get((model_id, role))
                if cooldown is None:
                    if model_id not in failing:
                        continue
                    cooldown = self.rows[model_id, role] = ModelCooldown(model=model_id, role=role, updated_at=now)
                if step(cooldown, self.by_policy[role], reports, recent, now) and cooldown.state == CooldownState.OPEN:
                    opened.add(model_id)
        return opened


def _recent_failures(models: list[str], since: datetime) -> dict[str, list[tuple[datetime, str]]]:
    """Each model's retryable failures since `since` (time, class), in one query over the partial
    index usage_retryable_idx: the failures of the last window are few, whatever the ledger holds."""
    found: dict[str, list[tuple[datetime, str]]] = {model: [] for model in models}
    rows = UsageEvent.objects.filter(model_id__in=models, error__in=RETRYABLE_ERRORS, occurred_at__gte=since)
    for model_id, occurred_at, error in rows.values_list("model_id", "occurred_at", "error"):
        found[model_id].append((occurred_at, error))
    return found


def _open(cooldown: ModelCooldown, now: datetime, policy: Policy, reason: str) -> None:
    cooldown.streak += 1
    cooldown.trips += 1
    seconds = policy.open_seconds(cooldown.streak)
    cooldown.state = CooldownState.OPEN
    cooldown.opened_at = now
    cooldown.until = now + timedelta(seconds=seconds)
    cooldown.reason = f"{reason}; out for {seconds:g} s"[:300]
    cooldown.updated_at = now


def _close(cooldown: ModelCooldown, now: datetime, reason: str) -> None:
    cooldown.state = CooldownState.CLOSED
    cooldown.streak = 0
    cooldown.until = None
    cooldown.closed_at = now
    cooldown.reason = f"closed: {reason}"[:300]
    cooldown.updated_at = now


def close(queryset, reason: str) -> int:
    """Close the given cooldowns now (the admin's action); returns how many were open."""
    now = timezone.now()
    rows = list(queryset.select_for_update().filter(state=CooldownState.OPEN).order_by("model", "role"))
    for cooldown in rows:
        _close(cooldown, now, reason)
    if rows:
        ModelCooldown.objects.bulk_update(rows, ["state", "reason", "streak", "until", "closed_at", "updated_at"])
        DataVersion.bump(COOLDOWN_VERSION)
    return len(rows)


def cooldown_out(cooldown: ModelCooldown) -> dict:
    return {"state": cooldown.shown_state, "reason": cooldown.reason, "until": cooldown.until, "trips": cooldown.trips}


def cooldowns_by_model(**kwargs) -> dict[str, dict]:
    """For GET /health/models (health's `model_cooldowns` signal): each model that has ever been
    tripped, with its default-policy cooldown and those of roles with their own policy."""
    found: dict[str, dict] = {}
    for cooldown in ModelCooldown.objects.filter(trips__gt=0).order_by("model", "role"):
        entry = found.setdefault(cooldown.model, {"cooldown": None, "role_cooldowns": {}})
        if cooldown.role == DEFAULT_POLICY:
            entry["cooldown"] = cooldown_out(cooldown)
        else:
            entry["role_cooldowns"][cooldown.role] = cooldown_out(cooldown)
    return found
