"""Routing policies to compare before one runs: the one in force, a proposed one, the baselines.

A policy is what an admin may change about routing, written as JSON (a file for
`manage.py evaluate_routing --policy`, or a draft edited in the admin):

    {"name": "cheaper coder",
     "weights": {"balanced": {"quality": 0.4, "reliability": 0.2, "cost": 0.4, "latency": 0}},
     "every_role": {"exploration_rate": 0.1},
     "roles": {"coder": {"default_accuracy": "economy", "preferences": ["family:claude"],
                         "allow_free": false, "required_capabilities": ["supports_tools"],
                         "cooldown": {"failures": 5}}},
     "budgets": [{"name": "month", "scope": "global", "period": "month", "limit_usd": "500",
                  "soft_limit_percent": 80, "action": "downgrade"}],
     "learn": true}

Every key is optional; what a policy does not say is what is in force. `Policy.from_json`
checks each field and names the one that is wrong (PolicyError). A policy is applied to a
snapshot (`Policy.apply`): a copy with the roles and weights changed and nothing memoised, so
the real decision code (routing.decision.decide) decides under it, as a live request would.

The baselines are policies too, so they decide through the same code and honour the same
eligibility (capabilities, context, output modality, health, exclusions, cooldowns, budgets):
- `bootstrap`: the bootstrap fallback list, in its order, for every role;
- `cheapest`: the cheapest eligible model for the request (cost weighs everything);
- `top_ranked`: the best prior quality (the category ranking, else the imported or catalog
  prior), learning nothing, whatever the cost;
- `cost_based`: LiteLLM's cost-based routing: the lowest price per token (prompt plus completion
  per token, whatever the request's size) among the healthy deployments not cooling down.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.utils import timezone

from catalog.models import CAPABILITIES
from costs.budgets import BudgetBook, BudgetStatus
from costs.models import Budget, BudgetAction, BudgetPeriod, BudgetScope
from routing.cooldowns import DEFAULT_POLICY
from routing.cooldowns import Policy as CooldownPolicy
from routing.decision import RouteRequest, decide
from routing.models import Accuracy
from routing.snapshot import OutcomeBook, RoleInfo, Snapshot

WEIGHT_NAMES = ("quality", "reliability", "cost", "latency")
ROLE_FIELDS = (
    "default_accuracy",
    "default_category",
    "exploration_rate",
    "preferences",
    "required_capabilities",
    "min_context_length",
    "allow_free",
    "cooldown",
)
COOLDOWN_FIELDS = ("failures", "window_seconds", "seconds", "max_seconds", "half_open_share")
BUDGET_FIELDS = ("name", "scope", "scope_value", "period", "limit_usd", "soft_limit_percent", "action")
POLICY_FIELDS = ("name", "weights", "every_role", "roles", "budgets", "learn", "price_basis")
PRICE_BASES = ("request", "per_token")
MAX_NAME = 100


class PolicyError(ValueError):
    """A policy that cannot be read: `field` is the path of the wrong value ("roles.coder.exploration_rate")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class RoleChanges:
    """What a policy changes about a role (None: as in force)."""

    default_accuracy: str | None = None
    default_category: str | None = None
    exploration_rate: float | None = None
    preferences: tuple[str, ...] | None = None  # model ids, or "family:<slug>"
    required_capabilities: tuple[str, ...] | None = None
    min_context_length: int | None = None
    allow_free: bool | None = None
    cooldown: dict | None = None  # CooldownPolicy fields it changes

    def merged(self, other: RoleChanges) -> RoleChanges:
        """These changes, with `other`'s where it says something."""
        return RoleChanges(
            **{
                name: getattr(other, name) if getattr(other, name) is not None else getattr(self, name)
                for name in ROLE_FIELDS
            }
        )


@dataclass(frozen=True)
class Policy:
    name: str = "current"
    # accuracy -> (quality, reliability, cost, latency); the accuracies not named keep theirs.
    weights: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    every_role: RoleChanges = RoleChanges()
    roles: dict[str, RoleChanges] = field(default_factory=dict)
    budgets: tuple[Budget, ...] | None = None  # None: the budgets in force (these are not stored)
    learn: bool = True  # False: decide on the priors alone, as if no outcome had been reported
    price_basis: str = "request"  # "per_token": rank by price per token, whatever the request's size
    description: str = ""

    # --- Reading ----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data, *, name: str | None = None) -> Policy:
        """A policy from parsed JSON (a dict), every field checked; PolicyError names the wrong one."""
        if not isinstance(data, dict):
            raise PolicyError("", "a policy is a JSON object")
        _unknown(data, POLICY_FIELDS, "")
        policy_name = name or data.get("name", "proposed")
        if not isinstance(policy_name, str) or not policy_name.strip() or len(policy_name) > MAX_NAME:
            raise PolicyError("name", f"a name of 1 to {MAX_NAME} characters")
        weights = {}
        raw_weights = data.get("weights") or {}
        if not isinstance(raw_weights, dict):
            raise PolicyError("weights", "an object of accuracy -> weights")
        for accuracy, given in raw_weights.items():
            weights[accuracy] = _weights(given, f"weights.{accuracy}", accuracy)
        roles = data.get("roles") or {}
        if not isinstance(roles, dict):
            raise PolicyError("roles", "an object of role slug -> changes")
        budgets = data.get("budgets")
        if budgets is not None and not isinstance(budgets, list):
            raise PolicyError("budgets", "a list of budgets (an empty list: no budget)")
        learn = data.get("learn", True)
        if not isinstance(learn, bool):
            raise PolicyError("learn", "true or false")
        price_basis = data.get("price_basis", "request")
        if price_basis not in PRICE_BASES:
            raise PolicyError("price_basis", f"one of {', '.join(PRICE_BASES)}")
        return cls(
            name=policy_name.strip(),
            weights=weights,
            every_role=_role_changes(data.get("every_role") or {}, "every_role"),
            roles={slug: _role_changes(changes, f"roles.{slug}") for slug, changes in roles.items()},
            budgets=None if budgets is None else tuple(_budget(b, f"budgets.{i}") for i, b in enumerate(budgets)),
            learn=learn,
            price_basis=price_basis,
        )

    @classmethod
    def from_text(cls, text: str | bytes, *, name: str | None = None) -> Policy:
        """A policy from JSON text (a file, a draft): undecodable or malformed text is a PolicyError."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PolicyError("", f"not UTF-8 text (byte {exc.start})") from None
        if "\x00" in text:
            raise PolicyError("", "the text holds a NUL byte")
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise PolicyError("", f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        except ValueError as exc:
            raise PolicyError("", str(exc)) from None
        return cls.from_json(data, name=name)

    def check_against(self, snap: Snapshot) -> None:
        """What the policy names must exist: its roles, categories, preferred models and families."""
        families = set(snap.families.values())
        for path, changes in (("every_role", self.every_role), *((f"roles.{s}", c) for s, c in self.roles.items())):
            if path.startswith("roles.") and path[6:] not in snap.roles:
                raise PolicyError(path, f"no active role '{path[6:]}'")
            if changes.default_category and changes.default_category not in snap.categories:
                raise PolicyError(f"{path}.default_category", f"no active category '{changes.default_category}'")
            for preference in changes.preferences or ():
                if preference.startswith("family:"):
                    if preference[7:] not in families:
                        raise PolicyError(f"{path}.preferences", f"no family '{preference[7:]}'")
                elif preference not in snap.models:
                    raise PolicyError(f"{path}.preferences", f"no model '{preference}' in the catalog")
        for i, budget in enumerate(self.budgets or ()):
            if budget.scope == BudgetScope.ROLE and budget.scope_value not in snap.roles:
                raise PolicyError(f"budgets.{i}.scope_value", f"no active role '{budget.scope_value}'")
            if budget.scope == BudgetScope.MODEL and budget.scope_value not in snap.models:
                raise PolicyError(f"budgets.{i}.scope_value", f"no model '{budget.scope_value}' in the catalog")

    # --- Applying ---------------------------------------------------------------------------

    def changes_for(self, role_slug: str) -> RoleChanges:
        own = self.roles.get(role_slug)
        return self.every_role if own is None else self.every_role.merged(own)

    def cooldown_policy(self, role_slug: str, base: CooldownPolicy) -> CooldownPolicy:
        """The cooldown policy of a role under this policy, over `base` (the one in force)."""
        changes = self.changes_for(role_slug).cooldown
        return dataclasses.replace(base, **changes) if changes else base

    def cooldown_policies(self, live: dict[str, CooldownPolicy], roles) -> dict[str, CooldownPolicy]:
        """The cooldown policies under this policy, over those in force (`live`: routing.cooldowns.policies()):
        the default one (the settings', with `every_role`'s changes) and one per role with its own."""
        found = {DEFAULT_POLICY: self.cooldown_policy(DEFAULT_POLICY, live[DEFAULT_POLICY])}
        for slug in sorted(roles):
            if slug in live or (slug in self.roles and self.roles[slug].cooldown):
                found[slug] = self.cooldown_policy(slug, live.get(slug, live[DEFAULT_POLICY]))
        return found

    def apply(self, snap: Snapshot) -> Snapshot:
        """A copy of `snap` deciding under this policy: its roles and weights changed, nothing
        memoised (the catalog arrays are rebuilt for the changed roles). `snap` is untouched."""
        family_ids = {slug: family_id for family_id, slug in snap.families.items()}
        roles = {slug: _role(role, self.changes_for(slug), family_ids) for slug, role in snap.roles.items()}
        weights = dict(snap.weights or {})
        weights.update(self.weights)
        book = snap.book if self.learn else OutcomeBook(read_at=timezone.now())
        return snap.without_memo(roles=roles, weights=weights or None, book=book, columns=None)

    def request(self, req: RouteRequest) -> RouteRequest:
        """The request as this policy ranks it: by price per token, a request of one token each way."""
        if self.price_basis == "per_token":
            return dataclasses.replace(req, estimated_input_tokens=1, estimated_output_tokens=1)
        return req


def planned_budgets(policy: Policy) -> PlannedBudgets:
    """The policy's budgets (those in force when it names none), followed from nothing."""
    if policy.budgets is not None:
        return PlannedBudgets(list(policy.budgets))
    return PlannedBudgets(list(Budget.objects.filter(active=True).order_by("pk")))


def decide_under(policy: Policy, snap: Snapshot, req: RouteRequest, book: BudgetBook, now: float | None = None) -> dict:
    """routing.decision.decide for `req` under `policy` (`snap` is `policy.apply(...)`'s), with
    cooldowns judged at `now` (a Unix time; the present when None)."""
    return decide(policy.request(req), snap=snap, book=book, now=now)


def baselines() -> list[Policy]:
    """The baselines every evaluation compares with (see the module's docstring)."""
    no_preferences = RoleChanges(preferences=(), exploration_rate=0.0)
    cost_only = dict.fromkeys(Accuracy.values, (0.0, 0.0, 1.0, 0.0))
    return [
        Policy(
            name="bootstrap",
            every_role=RoleChanges(preferences=tuple(settings.BOOTSTRAP_FALLBACK_MODELS), exploration_rate=0.0),
            description="The bootstrap fallback list, in its order.",
        ),
        Policy(
            name="cheapest",
            weights=cost_only,
            every_role=no_preferences,
            description="Always the cheapest eligible model for the request.",
        ),
        Policy(
            name="top_ranked",
            weights=dict.fromkeys(Accuracy.values, (1.0, 0.0, 0.0, 0.0)),
            every_role=no_preferences,
            learn=False,
            description="Always the best prior quality (the category ranking), whatever the cost.",
        ),
        Policy(
            name="cost_based",
            weights=cost_only,
            every_role=no_preferences,
            price_basis="per_token",
            description="LiteLLM's cost-based routing: the lowest price per token among healthy models.",
        ),
    ]


# --- Checking one field at a time ------------------------------------------------------------


def _no_constant(name: str):
    raise ValueError(f"not JSON: {name} is not a number JSON allows")


def _unknown(data: dict, allowed: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise PolicyError(where, f"unknown field (expected one of {', '.join(allowed)})")


def _number(value, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(path, "a number")
    if not low <= value <= high:
        raise PolicyError(path, f"between {low:g} and {high:g}")
    return float(value)


def _weights(given, path: str, accuracy: str) -> tuple[float, float, float, float]:
    if accuracy not in Accuracy.values:
        raise PolicyError(path, f"unknown accuracy (expected one of {', '.join(Accuracy.values)})")
    if not isinstance(given, dict):
        raise PolicyError(path, f"an object of {', '.join(WEIGHT_NAMES)}")
    _unknown(given, WEIGHT_NAMES, path)
    values = tuple(_number(given.get(name, 0), f"{path}.{name}", 0.0, 1.0) for name in WEIGHT_NAMES)
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise PolicyError(path, f"the weights add up to {sum(values):g}, not 1")
    return values  # type: ignore[return-value]


def _role_changes(given, path: str) -> RoleChanges:
    if not isinstance(given, dict):
        raise PolicyError(path, "an object of role changes")
    _unknown(given, ROLE_FIELDS, path)
    values: dict = {}
    if "default_accuracy" in given:
        if given["default_accuracy"] not in Accuracy.values:
            raise PolicyError(f"{path}.default_accuracy", f"one of {', '.join(Accuracy.values)}")
        values["default_accuracy"] = given["default_accuracy"]
    if "default_category" in given:
        if not isinstance(given["default_category"], str) or not given["default_category"]:
            raise PolicyError(f"{path}.default_category", "a category slug")
        values["default_category"] = given["default_category"]
    if "exploration_rate" in given:
        values["exploration_rate"] = _number(given["exploration_rate"], f"{path}.exploration_rate", 0.0, 1.0)
    if "preferences" in given:
        values["preferences"] = _strings(given["preferences"], f"{path}.preferences")
    if "required_capabilities" in given:
        capabilities = _strings(given["required_capabilities"], f"{path}.required_capabilities")
        for capability in capabilities:
            if capability not in CAPABILITIES:
                raise PolicyError(
                    f"{path}.required_capabilities", f"unknown capability '{capability}' ({', '.join(CAPABILITIES)})"
                )
        values["required_capabilities"] = capabilities
    if "min_context_length" in given:
        values["min_context_length"] = int(_number(given["min_context_length"], f"{path}.min_context_length", 0, 1e8))
    if "allow_free" in given:
        if not isinstance(given["allow_free"], bool):
            raise PolicyError(f"{path}.allow_free", "true or false")
        values["allow_free"] = given["allow_free"]
    if "cooldown" in given:
        cooldown = given["cooldown"]
        if not isinstance(cooldown, dict):
            raise PolicyError(f"{path}.cooldown", f"an object of {', '.join(COOLDOWN_FIELDS)}")
        _unknown(cooldown, COOLDOWN_FIELDS, f"{path}.cooldown")
        checked = {}
        for name, value in cooldown.items():
            high = 1.0 if name == "half_open_share" else 86_400.0 * 7
            low = 1.0 if name == "failures" else 0.0
            number = _number(value, f"{path}.cooldown.{name}", low, high)
            checked[name] = int(number) if name == "failures" else number
        values["cooldown"] = checked
    return RoleChanges(**values)


def _strings(value, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v and len(v) <= 200 for v in value):
        raise PolicyError(path, "a list of non-empty strings")
    return tuple(value)


def _budget(given, path: str) -> Budget:
    if not isinstance(given, dict):
        raise PolicyError(path, "a budget object")
    _unknown(given, BUDGET_FIELDS, path)
    name = given.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{path}.name", "a name")
    scope = given.get("scope", BudgetScope.GLOBAL)
    if scope not in BudgetScope.values:
        raise PolicyError(f"{path}.scope", f"one of {', '.join(BudgetScope.values)}")
    scope_value = given.get("scope_value", "")
    if not isinstance(scope_value, str) or (scope != BudgetScope.GLOBAL) != bool(scope_value):
        raise PolicyError(f"{path}.scope_value", "what the scope names (empty for a global budget)")
    period = given.get("period", BudgetPeriod.MONTH)
    if period not in BudgetPeriod.values:
        raise PolicyError(f"{path}.period", f"one of {', '.join(BudgetPeriod.values)}")
    action = given.get("action", BudgetAction.DOWNGRADE)
    if action not in BudgetAction.values:
        raise PolicyError(f"{path}.action", f"one of {', '.join(BudgetAction.values)}")
    raw_limit = given.get("limit_usd")
    try:
        limit = (
            Decimal(str(raw_limit)) if isinstance(raw_limit, str | int) and not isinstance(raw_limit, bool) else None
        )
    except InvalidOperation:
        limit = None
    if limit is None or not limit.is_finite() or limit <= 0 or limit >= Decimal("1e12"):
        raise PolicyError(f"{path}.limit_usd", 'a positive amount in USD, as a string ("500.00")')
    soft = int(_number(given.get("soft_limit_percent", 80), f"{path}.soft_limit_percent", 1, 100))
    return Budget(
        name=name.strip(),
        scope=scope,
        scope_value=scope_value,
        period=period,
        limit_usd=limit,
        soft_limit_percent=soft,
        action=action,
    )


def _role(role: RoleInfo, changes: RoleChanges, family_ids: dict[str, int]) -> RoleInfo:
    """A copy of `role` with the changes (the snapshot's RoleInfo is shared: never changed in place)."""
    values: dict = {}
    if changes.default_accuracy is not None:
        values["default_accuracy"] = changes.default_accuracy
    if changes.default_category is not None:
        values["default_category"] = changes.default_category
    if changes.exploration_rate is not None:
        values["exploration_rate"] = changes.exploration_rate
    if changes.preferences is not None:
        values["preferences"] = [
            (None, family_ids.get(p[7:])) if p.startswith("family:") else (p, None) for p in changes.preferences
        ]
    if changes.required_capabilities is not None:
        values["required"] = frozenset(changes.required_capabilities)
    if changes.min_context_length is not None:
        values["min_context"] = changes.min_context_length
    if changes.allow_free is not None:
        values["allow_free"] = changes.allow_free
    if not values:
        return role
    return dataclasses.replace(role, preferences=list(values.pop("preferences", role.preferences)), **values)


class PlannedBudgets(BudgetBook):
    """Budgets followed through a replay or a simulation: each spends only what the decisions
    under evaluation spend, from nothing at the start of its window, and is in the state a live
    BudgetBook would give it then. routing.decision reads it as it reads the live book."""

    def __init__(self, budgets: list[Budget]) -> None:
        super().__init__()
        self.budgets = list(budgets)
        self.day: date | None = None
        self._spent: dict[tuple[int, date], Decimal] = {}
        # A decision reads the statuses several times and an evaluation makes thousands: they
        # are kept until something spends or the day moves, each budget's window per day.
        self._windows: dict[date, list[tuple[date, date]]] = {}
        self._held: tuple[date, list[BudgetStatus]] | None = None
        self.state_changes = 0  # how many times spending moved a budget to another state

    def at(self, day: date) -> None:
        """Decide as on `day` (each budget's window is the one holding it)."""
        self.day = day

    def _windows_on(self, day: date) -> list[tuple[date, date]]:
        windows = self._windows.get(day)
        if windows is None:
            windows = self._windows[day] = [budget.window(day) for budget in self.budgets]
        return windows

    def statuses(self) -> list[BudgetStatus]:
        day = self.day or timezone.now().date()
        if self._held is not None and self._held[0] == day:
            return self._held[1]
        statuses = [
            BudgetStatus(budget, start, end, self._spent.get((i, start), Decimal(0)))
            for i, (budget, (start, end)) in enumerate(zip(self.budgets, self._windows_on(day), strict=True))
        ]
        self._held = (day, statuses)
        return statuses

    def spend(self, cost: Decimal, *, role: str, strategy: str, model: str) -> None:
        statuses = self.statuses()
        for i, status in enumerate(statuses):
            if status.applies_to(role, strategy, model):
                key = (i, status.window_start)
                spent = self._spent[key] = self._spent.get(key, Decimal(0)) + cost
                statuses[i] = dataclasses.replace(status, spent_usd=spent)
                if statuses[i].state != status.state:
                    self.state_changes += 1
