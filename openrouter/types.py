"""The typed results (frozen dataclasses) and the pricing constants.

Money is `decimal.Decimal` throughout: OpenRouter sends prices as decimal strings, and the few
money values it sends as JSON numbers (`usage.cost`, the key's `usage`) are parsed straight into
Decimal, so no price ever passes through a float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# Every scalar key of OpenRouter's `PublicPricing` schema (its OpenAPI description of
# 2025-12-16 and 2026-08-22), in the order the admin and the API show them. USD per token,
# except `request` (per request), `image` and `image_output` (per image), `web_search` (per
# search) and `discount` (a fraction: the price is multiplied by 1 - discount).
PRICE_KEYS = (
    "prompt",
    "completion",
    "request",
    "image",
    "image_token",
    "image_output",
    "audio",
    "audio_output",
    "input_audio_cache",
    "web_search",
    "internal_reasoning",
    "input_cache_read",
    "input_cache_write",
    "input_cache_write_1h",
    "discount",
)
# Documented pricing entries that are not a price (`overrides`: a list of conditional prices).
# They stay in the entry's `raw`; any other key is an unknown price (ModelEntry.extra_prices).
PRICING_STRUCTURES = ("overrides",)
# Always sent, and "0" there means free; every other key is optional.
REQUIRED_PRICE_KEYS = ("prompt", "completion")
# The catalog stores prices with 14 decimals (DecimalField(24, 14)).
PRICE_DECIMAL_PLACES = 14
# A router model (openrouter/auto, openrouter/bodybuilder, ...) prices at "-1": "it depends on
# the model the router picks", not a negative price.
VARIABLE_PRICE = Decimal(-1)


@dataclass(frozen=True)
class ModelEntry:
    """One model of `GET /models`. Prices are USD per token (per request/image/search for those
    keys), None when absent; `variable_pricing` marks a router priced at "-1"."""

    id: str
    canonical_slug: str | None
    name: str
    description: str
    author: str
    created: datetime | None
    context_length: int | None
    max_completion_tokens: int | None
    modality: str | None
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    tokenizer: str | None
    supported_parameters: tuple[str, ...]
    default_parameters: dict[str, Any]
    pricing: dict[str, Decimal | None]
    variable_pricing: bool
    expiration_date: date | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    # Pricing keys OpenRouter sends that PRICE_KEYS does not know yet, with their numeric value:
    # kept (and announced) rather than dropped, until a release gives them a column.
    extra_prices: dict[str, Decimal] = field(default_factory=dict)


# The model-level categories of `GET /models?category=X`: OpenRouter publishes no listing
# endpoint, only this enum on the `category` parameter (OpenAPI description of 2026-08-22).
DOCUMENTED_CATEGORIES = (
    "programming",
    "roleplay",
    "marketing",
    "marketing/seo",
    "technology",
    "science",
    "translation",
    "legal",
    "finance",
    "health",
    "trivia",
    "academia",
)


@dataclass(frozen=True)
class SkippedEntry:
    index: int | None
    id: str | None
    reason: str
    # The entry's field at fault, in OpenRouter's terms ("pricing.prompt", "context_length").
    field: str | None = None


@dataclass(frozen=True)
class ModelList:
    entries: list[ModelEntry]
    skipped: list[SkippedEntry] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]


@dataclass(frozen=True)
class EndpointEntry:
    """One provider endpoint of a model. `status` is OpenRouter's integer (0 is healthy,
    negative values are degraded states); latency and throughput are the p50 of the last 30
    minutes (OpenRouter sends percentiles, and only to callers with a key)."""

    name: str
    model_name: str | None
    provider_name: str
    tag: str | None
    quantization: str | None
    context_length: int | None
    max_completion_tokens: int | None
    max_prompt_tokens: int | None
    pricing: dict[str, Decimal | None]
    status: int | None
    uptime_last_30m: float | None
    uptime_last_5m: float | None
    uptime_last_1d: float | None
    latency_last_30m: float | None
    throughput_last_30m: float | None
    supported_parameters: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class ModelEndpoints:
    """`GET /models/{author}/{slug}/endpoints`."""

    id: str
    name: str
    endpoints: list[EndpointEntry]
    skipped: list[SkippedEntry] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class KeyInfo:
    """`GET /key`: the key's label, spending limit and usage in USD."""

    label: str
    limit: Decimal | None
    limit_remaining: Decimal | None
    limit_reset: str | None
    usage: Decimal | None
    usage_daily: Decimal | None
    usage_weekly: Decimal | None
    usage_monthly: Decimal | None
    is_free_tier: bool
    is_management_key: bool
    expires_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # Reasoning tokens are counted inside completion_tokens, cached ones inside prompt_tokens.
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal | None = None


@dataclass(frozen=True)
class ChatCompletion:
    """A non-streamed `POST /chat/completions`. `model` is what OpenRouter answered with: by
    2026 the canonical slug (`openai/gpt-5.4-nano-20260317`), not the id that was asked for."""

    id: str
    model: str
    provider: str | None
    content: str
    finish_reason: str | None
    usage: Usage
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Generation:
    """`GET /generation?id=`: what OpenRouter recorded for one generation, in USD and in the
    provider's own (native) token counts. Every figure is None when OpenRouter sent none (or
    one that is not a usable number); `total_cost` is what the generation was billed."""

    id: str
    model: str
    provider_name: str | None
    created_at: datetime | None
    total_cost: Decimal | None
    # `usage` (the amount charged to the account; equals total_cost unless BYOK), the provider's
    # own charge, and the discount caching gave (negative when a cache write cost extra).
    usage: Decimal | None
    upstream_inference_cost: Decimal | None
    cache_discount: Decimal | None
    # OpenRouter's normalized counts, and the provider's native ones.
    tokens_prompt: int | None
    tokens_completion: int | None
    native_tokens_prompt: int | None
    native_tokens_completion: int | None
    native_tokens_reasoning: int | None
    native_tokens_cached: int | None
    is_byok: bool
    cancelled: bool
    raw: dict[str, Any] = field(repr=False, compare=False)
