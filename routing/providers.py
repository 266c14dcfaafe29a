"""OpenRouter's provider preferences for a role: what its endpoints must be, and the `provider`
object /route answers with, to pass unchanged in the chat completion request.

A role sets sort, order / only / ignore, allow_fallbacks, require_parameters, data_collection, ZDR
and quantizations in the admin; the snapshot turns them once into the role's part of the object
(`provider_rules`), and each decision adds `max_price` from the request's cost cap
(`provider_object`). The catalog knows each endpoint's provider, quantization and latency, so
`endpoint_rejection` leaves out a model none of whose endpoints meets the role's demands; it knows
nothing of providers' data policies, so data collection and ZDR are left to OpenRouter.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Context, Decimal
from typing import TYPE_CHECKING

from core.money import decimal_str

if TYPE_CHECKING:
    from routing.models import Role
    from routing.snapshot import EndpointInfo, ModelInfo, RoleInfo

PER_MILLION = Decimal(1_000_000)
# max_price is USD per million tokens (per request for `request`): 10 decimals is far below a cent.
MAX_PRICE_PLACES = Decimal("1e-10")
# Ceilings grow as cap / estimate: up to 10^24 and more for the largest cap the API takes over a
# lopsided price (a completion price a billionth of the prompt's). Rounded to MAX_PRICE_PLACES
# that is past the 28 digits of decimal's default context, where quantize raises; 60 holds them.
WIDE = Context(prec=60)


def provider_key(slug: str) -> str:
    """A provider slug or name reduced to letters and digits: "Amazon Bedrock", "amazon-bedrock"
    and "amazonbedrock" meet (OpenRouter's slugs are not always its names, lower-cased)."""
    return "".join(ch for ch in slug.lower() if ch.isalnum())


def provider_rules(role: Role) -> dict:
    """The RoleInfo fields for a role's provider preferences (computed once per snapshot)."""
    static: dict = {}
    if role.provider_sort:
        static["sort"] = role.provider_sort
    for key in ("order", "only", "ignore"):
        if value := list(getattr(role, f"provider_{key}") or []):
            static[key] = value
    if not role.provider_allow_fallbacks:
        static["allow_fallbacks"] = False
    if role.provider_require_parameters:
        static["require_parameters"] = True
    if role.provider_data_collection:
        static["data_collection"] = role.provider_data_collection
    if role.provider_zdr:
        static["zdr"] = True
    if role.provider_quantizations:
        static["quantizations"] = list(role.provider_quantizations)
    if role.max_latency_ms:
        # OpenRouter's preferred_max_latency is in seconds (p50 time to first token).
        static["preferred_max_latency"] = role.max_latency_ms / 1000

    # Without fallbacks OpenRouter uses only the providers of the order: they are all it may use.
    only = role.provider_only or (role.provider_order if not role.provider_allow_fallbacks else None)
    return {
        "endpoint_only": frozenset(only) if only else None,
        "endpoint_ignore": frozenset(role.provider_ignore or ()),
        "quantizations": frozenset(role.provider_quantizations) if role.provider_quantizations else None,
        "max_latency_ms": role.max_latency_ms or None,
        "provider": static or None,
    }


def _names(endpoint: EndpointInfo, slugs: frozenset[str]) -> bool:
    """Whether one of `slugs` (a provider, or one endpoint as "provider/variant") names this endpoint."""
    for slug in slugs:
        if "/" in slug:
            if slug == endpoint.tag:
                return True
        elif slug == endpoint.provider or provider_key(slug) == endpoint.name_key:
            return True
    return False


def endpoint_allowed(endpoint: EndpointInfo, role: RoleInfo) -> bool:
    if role.endpoint_only is not None and not _names(endpoint, role.endpoint_only):
        return False
    if role.endpoint_ignore and _names(endpoint, role.endpoint_ignore):
        return False
    return role.quantizations is None or endpoint.quantization in role.quantizations


def endpoint_rejection(model: ModelInfo, role: RoleInfo) -> str | None:
    """`no_matching_endpoint` when the catalog knows the model's endpoints and none meets the role's
    provider demands; `too_slow` when every one it may use is known to be over the latency ceiling.
    A model whose endpoints are unknown (or whose latency is) stays a candidate."""
    if not model.endpoints:
        return None
    usable = [e for e in model.endpoints if endpoint_allowed(e, role)]
    if not usable:
        return "no_matching_endpoint"
    if role.max_latency_ms:
        latencies = [e.latency_ms for e in usable if e.latency_ms is not None]
        if latencies and len(latencies) == len(usable) and min(latencies) > role.max_latency_ms:
            return "too_slow"
    return None


def _round_down(value: Decimal) -> Decimal:
    return value.quantize(MAX_PRICE_PLACES, rounding=ROUND_DOWN, context=WIDE)


def max_price(model: ModelInfo, max_cost_usd: Decimal, input_tokens: int, output_tokens: int) -> dict[str, str]:
    """OpenRouter's max_price (USD per million prompt and completion tokens, USD per request) that
    keeps this request within `max_cost_usd` on any endpoint OpenRouter may choose.

    The chosen model's prices scaled by cap / its estimated cost: an endpoint priced at or under
    each of them costs at most `scale × estimate = cap` for these token counts. (A free model's
    estimate is 0: each token then gets an equal share of the cap.) Rounded down, but never under
    the chosen model's own prices, which the cap already admits.
    """
    prompt = model.prices.get("prompt") or Decimal(0)
    completion = model.prices.get("completion") or Decimal(0)
    request = model.prices.get("request") or Decimal(0)
    estimate = prompt * input_tokens + completion * output_tokens + request
    if estimate > 0:
        scale = max_cost_usd / estimate
        ceilings = (prompt * scale * PER_MILLION, completion * scale * PER_MILLION, request * scale)
    elif input_tokens + output_tokens > 0:
        share = max_cost_usd / (input_tokens + output_tokens) * PER_MILLION
        ceilings = (share, share, Decimal(0))
    else:
        ceilings = (Decimal(0), Decimal(0), max_cost_usd)
    ceilings = tuple(_round_down(c) for c in ceilings)
    if estimate <= max_cost_usd:  # rounding must not shut out the chosen model itself
        ceilings = tuple(
            max(c, own)
            for c, own in zip(ceilings, (prompt * PER_MILLION, completion * PER_MILLION, request), strict=True)
        )
    # `request` always: an endpoint with a per-request fee the estimate did not count would pass otherwise.
    answer = dict(zip(("prompt", "completion", "request"), ceilings, strict=True))
    return {key: decimal_str(value) for key, value in answer.items()}


def provider_object(
    role: RoleInfo, model: ModelInfo | None, max_cost_usd: Decimal | None, input_tokens: int, output_tokens: int
) -> dict | None:
    """The `provider` object for OpenRouter's chat completion: only the keys the role sets, plus
    max_price when the request has a cost cap; None when there is nothing to say."""
    answer = dict(role.provider) if role.provider else {}
    if model is not None and max_cost_usd is not None and model.priced:
        answer["max_price"] = max_price(model, max_cost_usd, input_tokens, output_tokens)
    return answer or None
