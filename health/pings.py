"""The ping completion of a health check: how to ask (a handful of tokens, reasoning off or
minimal), what it may cost at the catalog's prices, and the day's budget it must fit in."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalog.models import CatalogModel
from core.money import money_field
from costs.models import UsageEvent
from health.selectors import HEALTH_STRATEGY
from openrouter import EndpointEntry

PING_MESSAGES = [{"role": "user", "content": "Reply with OK."}]
PING_MAX_TOKENS = 5
# OpenAI's Responses API refuses max_output_tokens below 16 and OpenRouter passes the 400 on
# ("Expected a value >= 16, but got 5"), so a ping that may land on such an endpoint asks for 16.
PROVIDER_MIN_MAX_TOKENS = {"OpenAI": 16, "Azure": 16}
# "Reply with OK." inside any chat template stays under this many prompt tokens.
PING_PROMPT_TOKENS = 32
# What a model that cannot stop reasoning may think at the lowest effort, for the estimate.
PING_REASONING_TOKENS = 64
EFFORTS_LOWEST_FIRST = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class PingPlan:
    """How to ping one model, and what that may cost at the catalog's prices."""

    reasoning: dict | None
    prompt_price: Decimal
    completion_price: Decimal
    reasoning_price: Decimal
    request_price: Decimal
    reasoning_tokens: int

    def estimate(self, max_tokens: int) -> Decimal:
        return (
            self.prompt_price * PING_PROMPT_TOKENS
            + self.completion_price * max_tokens
            + self.reasoning_price * self.reasoning_tokens
            + self.request_price
        )


def plan_ping(model: CatalogModel) -> PingPlan | None:
    """None when the model has no price to bound a ping's cost (variable-priced routers, unpriced)."""
    if model.variable_pricing or model.price_prompt is None or model.price_completion is None:
        return None
    reasoning, thinking = None, 0
    if model.supports_reasoning:
        # OpenRouter says per model whether reasoning can be turned off (`reasoning.mandatory`,
        # from 2026). Off when it can; otherwise, or when we do not know, the lowest effort it
        # takes — asking a model that must reason to stop is a 400, not a ping.
        info = (model.raw or {}).get("reasoning")
        info = info if isinstance(info, dict) else {}
        if info.get("mandatory") is False:
            reasoning = {"enabled": False}
        else:
            supported = [e for e in info.get("supported_efforts") or [] if e in EFFORTS_LOWEST_FIRST and e != "none"]
            effort = min(supported, key=EFFORTS_LOWEST_FIRST.index) if supported else "minimal"
            reasoning, thinking = {"effort": effort, "exclude": True}, PING_REASONING_TOKENS
    completion = model.price_completion
    return PingPlan(
        reasoning=reasoning,
        prompt_price=model.price_prompt,
        completion_price=completion,
        reasoning_price=max(completion, model.price_internal_reasoning or Decimal(0)),
        request_price=model.price_request or Decimal(0),
        reasoning_tokens=thinking,
    )


def ping_max_tokens(endpoints_up: list[EndpointEntry]) -> int:
    """PING_MAX_TOKENS, or more when an endpoint the ping may land on refuses fewer."""
    return max([PING_MAX_TOKENS] + [PROVIDER_MIN_MAX_TOKENS.get(e.provider_name, 0) for e in endpoints_up])


class Allowance:
    """The day's ping budget left, shared by the concurrent checks of one run.

    A ping reserves its estimate before it is sent (so concurrent pings cannot together pass
    the cap), then settles at what OpenRouter reports it cost."""

    def __init__(self, usd: Decimal) -> None:
        self.usd = usd

    def reserve(self, estimate: Decimal) -> bool:
        if estimate > self.usd:
            return False
        self.usd -= estimate
        return True

    def settle(self, estimate: Decimal, actual: Decimal) -> None:
        self.usd += estimate - actual


def spent_today() -> Decimal:
    """Today's (UTC) ping spend from the ledger: the reported cost, else the computed one."""
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    money = money_field()
    total = UsageEvent.objects.filter(strategy=HEALTH_STRATEGY, occurred_at__gte=midnight).aggregate(
        total=Sum(Coalesce("cost_usd", "computed_cost_usd", Value(Decimal(0)), output_field=money))
    )["total"]
    return Decimal(total or 0)
