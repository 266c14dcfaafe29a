"""A typed client for the parts of OpenRouter's API that LLMHive uses.

`OpenRouterClient` (blocking) and `AsyncOpenRouterClient` (asyncio, for concurrent health
checks) share everything except the line that sends a request: building requests, retrying,
mapping failures to exceptions and parsing bodies into frozen dataclasses live once, below.

Money is `decimal.Decimal` throughout. OpenRouter sends prices as decimal strings, and the few
money values it sends as JSON numbers (`usage.cost`, the key's `usage`) are parsed straight into
Decimal, so no price ever passes through a float.

This module must not import Django at module level: `from_settings()` reads the settings lazily.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import quote

import httpx

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
# Sent as HTTP-Referer, which OpenRouter uses to attribute traffic to an app.
APP_URL = "https://github.com/llmhive/llmhive"
APP_TITLE = "LLMHive"

PRICE_KEYS = (
    "prompt",
    "completion",
    "request",
    "image",
    "web_search",
    "internal_reasoning",
    "input_cache_read",
    "input_cache_write",
)
# Always sent, and "0" there means free; every other key is optional.
REQUIRED_PRICE_KEYS = ("prompt", "completion")
# The catalog stores prices with 14 decimals (DecimalField(24, 14)).
PRICE_DECIMAL_PLACES = 14
_PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMAL_PLACES)
# A router model (openrouter/auto, openrouter/bodybuilder, ...) prices at "-1": "it depends on
# the model the router picks", not a negative price.
VARIABLE_PRICE = Decimal(-1)
_MESSAGE_LIMIT = 500


# --- Exceptions -------------------------------------------------------------------------------


class OpenRouterError(Exception):
    """Base of every failure the client raises. `str()` is always one readable line."""

    def __init__(self, message: str, *, status_code: int | None = None, error_code: int | str | None = None) -> None:
        message = " ".join(str(message).split())
        if len(message) > _MESSAGE_LIMIT:
            message = message[: _MESSAGE_LIMIT - 1] + "…"
        super().__init__(message)
        self.message = message
        # The HTTP status of the answer (None when there was no answer)...
        self.status_code = status_code
        # ...and OpenRouter's own `error.code` when the body carried one (it can differ: a
        # 200 whose body says 402).
        self.error_code = error_code

    def _append(self, note: str) -> None:
        self.message = f"{self.message} {note}"
        self.args = (self.message,)


class OpenRouterUnreachable(OpenRouterError):
    """No answer: connection refused, reset or dropped, DNS failure, or a timeout."""


class OpenRouterRateLimited(OpenRouterError):
    """429 after the retries ran out."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OpenRouterServerError(OpenRouterError):
    """5xx after the retries ran out, whatever the body (a proxy's HTML 502 page included:
    it is an outage, retried like any 5xx, not a parsing problem)."""


class OpenRouterAuthError(OpenRouterError):
    """401 or 403: no key, a bad key, or a key without the right."""


class OpenRouterPaymentRequired(OpenRouterError):
    """402: the account is out of credits."""


class OpenRouterBadResponse(OpenRouterError):
    """An answer we cannot use: not JSON (an HTML page where JSON was due), cut short, the
    wrong shape, a 4xx other than 401/402/403/429, or a 200 whose body is an error. Not
    retried."""


class MalformedEntry(ValueError):
    """One entry of a list cannot be used; the reason reads as a sentence fragment."""


# --- Typed results ----------------------------------------------------------------------------


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


@dataclass(frozen=True)
class SkippedEntry:
    index: int
    id: str | None
    reason: str


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


# --- Parsing ----------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal:
    """An exact Decimal from a decimal string or a JSON number; ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError("not a number") from None
    if not number.is_finite():
        raise ValueError("not a number")
    return number


def _money(value: Any) -> Decimal | None:
    """Lenient money for secondary fields (key usage, costs): None when absent or unusable."""
    try:
        return _decimal(value)
    except ValueError:
        return None


def parse_price(key: str, value: Any) -> tuple[Decimal | None, bool]:
    """(price, is_variable) for one pricing key; MalformedEntry when unusable."""
    optional = key not in REQUIRED_PRICE_KEYS
    if value is None:
        if optional:
            return None, False
        raise MalformedEntry(f"pricing.{key} is missing")
    try:
        price = _decimal(value)
    except ValueError:
        raise MalformedEntry(f"pricing.{key} is not a number: {value!r}") from None
    if price == VARIABLE_PRICE:
        return None, True
    if price < 0:
        raise MalformedEntry(f"pricing.{key} is negative: {value!r}")
    if optional and price == 0:
        # OpenRouter stopped sending zero-valued optional keys in late January 2026; reading
        # "0" and "absent" alike keeps that change from looking like a price change.
        return None, False
    if price.as_tuple().exponent < -PRICE_DECIMAL_PLACES:  # type: ignore[operator]
        # A few prices carry float noise past 14 decimals ("0.00000008333333333333334");
        # round to what the catalog stores so an unchanged price compares equal next time.
        price = price.quantize(_PRICE_QUANTUM)
    return price, False


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        try:
            return int(value) if value == int(value) else None
        except (ValueError, OverflowError):
            return None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return None


def _p50(value: Any) -> float | None:
    """Newer endpoint responses give percentiles ({p50, p75, p90, p99}); older ones a number."""
    if isinstance(value, dict):
        return _float(value.get("p50"))
    return _float(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _author(model_id: str) -> str:
    # Alias ids such as "~anthropic/claude-sonnet-latest" (seen from mid-2026) belong to the
    # author after the tilde.
    author, slash, _ = model_id.partition("/")
    return author.lstrip("~") if slash else ""


def parse_model(raw: Any) -> ModelEntry:
    """One entry of `GET /models`. Unknown keys are ignored (they stay in `raw`)."""
    if not isinstance(raw, dict):
        raise MalformedEntry(f"entry is not an object but {type(raw).__name__}")
    model_id = raw.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise MalformedEntry("id is missing or empty")
    pricing_raw = raw.get("pricing")
    if not isinstance(pricing_raw, dict):
        raise MalformedEntry("pricing is missing")
    pricing: dict[str, Decimal | None] = {}
    variable = False
    for key in PRICE_KEYS:
        pricing[key], is_variable = parse_price(key, pricing_raw.get(key))
        variable = variable or is_variable

    architecture = raw.get("architecture") if isinstance(raw.get("architecture"), dict) else {}
    top_provider = raw.get("top_provider") if isinstance(raw.get("top_provider"), dict) else {}
    default_parameters = raw.get("default_parameters")
    return ModelEntry(
        id=model_id,
        canonical_slug=_str(raw.get("canonical_slug")),
        name=_str(raw.get("name")) or "",
        description=_str(raw.get("description")) or "",
        author=_author(model_id),
        created=_timestamp(raw.get("created")),
        context_length=_int(raw.get("context_length")),
        max_completion_tokens=_int(top_provider.get("max_completion_tokens")),
        modality=_str(architecture.get("modality")),
        input_modalities=_strings(architecture.get("input_modalities")),
        output_modalities=_strings(architecture.get("output_modalities")),
        tokenizer=_str(architecture.get("tokenizer")),
        supported_parameters=_strings(raw.get("supported_parameters")),
        default_parameters=dict(default_parameters) if isinstance(default_parameters, dict) else {},
        pricing=pricing,
        variable_pricing=variable,
        expiration_date=_date(raw.get("expiration_date")),
        raw=raw,
    )


def _data(payload: Any, kind: type, what: str) -> Any:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, kind):
        shape = f"an object with keys {sorted(payload)[:8]}" if isinstance(payload, dict) else type(payload).__name__
        raise OpenRouterBadResponse(f"OpenRouter's {what} has no `data` {kind.__name__}: got {shape}")
    return data


def parse_models_payload(payload: Any) -> ModelList:
    """`{"data": [...]}` -> ModelList. A malformed entry or a repeated id is skipped and
    reported; a payload of the wrong shape raises OpenRouterBadResponse."""
    data = _data(payload, list, "model list")
    entries: list[ModelEntry] = []
    skipped: list[SkippedEntry] = []
    first_seen: dict[str, int] = {}
    for index, raw in enumerate(data):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        raw_id = raw_id if isinstance(raw_id, str) and raw_id else None
        try:
            entry = parse_model(raw)
        except MalformedEntry as exc:
            skipped.append(SkippedEntry(index=index, id=raw_id, reason=str(exc)))
            continue
        if entry.id in first_seen:
            skipped.append(SkippedEntry(index=index, id=entry.id, reason=f"duplicate id (first at index {first_seen[entry.id]})"))
            continue
        first_seen[entry.id] = index
        entries.append(entry)
    return ModelList(entries=entries, skipped=skipped)


def _endpoint_pricing(raw: Any) -> dict[str, Decimal | None]:
    # Endpoint pricing also carries non-price keys (`discount`, a list of `overrides`);
    # only scalar values are read, the rest stays in raw.
    if not isinstance(raw, dict):
        return {}
    return {key: _money(value) for key, value in raw.items() if isinstance(value, (str, int, float)) and not isinstance(value, bool)}


def parse_endpoint(raw: Any) -> EndpointEntry:
    if not isinstance(raw, dict):
        raise MalformedEntry(f"endpoint is not an object but {type(raw).__name__}")
    status = raw.get("status")
    return EndpointEntry(
        name=_str(raw.get("name")) or "",
        model_name=_str(raw.get("model_name")),
        provider_name=_str(raw.get("provider_name")) or "",
        tag=_str(raw.get("tag")),
        quantization=_str(raw.get("quantization")),
        context_length=_int(raw.get("context_length")),
        max_completion_tokens=_int(raw.get("max_completion_tokens")),
        max_prompt_tokens=_int(raw.get("max_prompt_tokens")),
        pricing=_endpoint_pricing(raw.get("pricing")),
        status=_int(status),
        uptime_last_30m=_float(raw.get("uptime_last_30m")),
        uptime_last_5m=_float(raw.get("uptime_last_5m")),
        uptime_last_1d=_float(raw.get("uptime_last_1d")),
        latency_last_30m=_p50(raw.get("latency_last_30m")),
        throughput_last_30m=_p50(raw.get("throughput_last_30m")),
        supported_parameters=_strings(raw.get("supported_parameters")),
        raw=raw,
    )


def parse_endpoints_payload(payload: Any, model_id: str = "") -> ModelEndpoints:
    data = _data(payload, dict, "endpoint list")
    raw_endpoints = data.get("endpoints")
    if not isinstance(raw_endpoints, list):
        raise OpenRouterBadResponse(f"OpenRouter's endpoint list for {model_id or 'the model'} has no `endpoints` list")
    endpoints: list[EndpointEntry] = []
    skipped: list[SkippedEntry] = []
    for index, raw in enumerate(raw_endpoints):
        try:
            endpoints.append(parse_endpoint(raw))
        except MalformedEntry as exc:
            skipped.append(SkippedEntry(index=index, id=None, reason=str(exc)))
    return ModelEndpoints(
        id=_str(data.get("id")) or model_id,
        name=_str(data.get("name")) or "",
        endpoints=endpoints,
        skipped=skipped,
        raw=data,
    )


def parse_key_payload(payload: Any) -> KeyInfo:
    data = _data(payload, dict, "key info")
    return KeyInfo(
        label=_str(data.get("label")) or "",
        limit=_money(data.get("limit")),
        limit_remaining=_money(data.get("limit_remaining")),
        limit_reset=_str(data.get("limit_reset")),
        usage=_money(data.get("usage")),
        usage_daily=_money(data.get("usage_daily")),
        usage_weekly=_money(data.get("usage_weekly")),
        usage_monthly=_money(data.get("usage_monthly")),
        is_free_tier=data.get("is_free_tier") is True,
        # `is_provisioning_key` is the deprecated name of the same flag.
        is_management_key=data.get("is_management_key") is True or data.get("is_provisioning_key") is True,
        expires_at=_datetime(data.get("expires_at")),
        raw=_plain(data),
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def parse_chat_completion(payload: Any) -> ChatCompletion:
    if not isinstance(payload, dict):
        raise OpenRouterBadResponse(f"OpenRouter's chat completion is not an object but {type(payload).__name__}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise OpenRouterBadResponse("OpenRouter's chat completion has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    completion_details = usage.get("completion_tokens_details") if isinstance(usage.get("completion_tokens_details"), dict) else {}
    prompt_details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    return ChatCompletion(
        id=_str(payload.get("id")) or "",
        model=_str(payload.get("model")) or "",
        provider=_str(payload.get("provider")),
        content=_content_text(message.get("content")),
        finish_reason=_str(choice.get("finish_reason")),
        usage=Usage(
            prompt_tokens=_int(usage.get("prompt_tokens")) or 0,
            completion_tokens=_int(usage.get("completion_tokens")) or 0,
            total_tokens=_int(usage.get("total_tokens")) or 0,
            reasoning_tokens=_int(completion_details.get("reasoning_tokens")) or 0,
            cached_tokens=_int(prompt_details.get("cached_tokens")) or 0,
            cost=_money(usage.get("cost")),
        ),
        raw=_plain(payload),
    )


def _plain(value: Any) -> Any:
    """A copy with Decimals turned back into floats, so `raw` is what json.loads would give
    and can go straight into a JSONField."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# --- Requests, retries and errors, shared by both clients ---------------------------------------


def endpoints_path(model_id: str) -> str:
    """`author/slug` (the slug may hold `:`, e.g. `:free`) -> `/models/author/slug/endpoints`."""
    author, slash, slug = model_id.partition("/")
    if not slash or not author or not slug:
        raise ValueError(f"a model id looks like 'author/slug', not {model_id!r}")
    return f"/models/{quote(author, safe='~:')}/{quote(slug, safe='~:')}/endpoints"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _error_class(code: int | None) -> type[OpenRouterError]:
    if code in (401, 403):
        return OpenRouterAuthError
    if code == 402:
        return OpenRouterPaymentRequired
    if code == 429:
        return OpenRouterRateLimited
    if code is not None and 500 <= code <= 599:
        return OpenRouterServerError
    return OpenRouterBadResponse


def _error_details(body: Any) -> tuple[str | None, int | str | None]:
    """(message, code) of OpenRouter's error body `{"error": {"code", "message", "metadata"}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
    provider = metadata.get("provider_name")
    if message and isinstance(provider, str) and provider:
        message = f"{message} (provider: {provider})"
    code = error.get("code")
    code = code if isinstance(code, (int, str)) and not isinstance(code, bool) else None
    return message, code


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    # Parse JSON numbers with a fraction as Decimal (bodies that carry money as numbers).
    exact: bool = False

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class _Verdict:
    """What one attempt came to: a payload, or an error and whether to try again."""

    payload: Any = None
    error: OpenRouterError | None = None
    retry: bool = False
    retry_after: float | None = None


def _looks_like_html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("content-type", "") or response.content.lstrip()[:1] == b"<"


def _decode(response: httpx.Response, call: _Call) -> Any:
    """The JSON body, or OpenRouterBadResponse saying what is wrong with it."""
    text = response.content.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise OpenRouterBadResponse(f"OpenRouter answered {call.describe()} with an empty body", status_code=response.status_code)
    if _looks_like_html(response):
        raise OpenRouterBadResponse(
            f"OpenRouter answered {call.describe()} with an HTML page ({response.status_code}), not JSON",
            status_code=response.status_code,
        )
    # Non-streamed completions arrive with whitespace before the JSON (OpenRouter sends it to
    # keep the connection alive while the model works); json.loads skips leading whitespace.
    try:
        return json.loads(text, parse_float=Decimal) if call.exact else json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpenRouterBadResponse(
            f"OpenRouter answered {call.describe()} with invalid or truncated JSON "
            f"({exc.msg} at line {exc.lineno} column {exc.colno}; {len(response.content)} bytes)",
            status_code=response.status_code,
        ) from None


class _ClientBase:
    """Configuration, request building, retry decisions and error mapping."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout: float = 20.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key or ""
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = max(0.0, float(backoff))
        self.max_retry_after = max(0.0, float(max_retry_after))

    @classmethod
    def from_settings(cls, **overrides: Any) -> Self:
        """A client configured from Django settings; keyword arguments override them."""
        from django.conf import settings

        options: dict[str, Any] = {
            "base_url": getattr(settings, "OPENROUTER_BASE_URL", DEFAULT_BASE_URL) or DEFAULT_BASE_URL,
            "api_key": getattr(settings, "OPENROUTER_API_KEY", "") or "",
            "timeout": float(getattr(settings, "LLMHIVE_OPENROUTER_TIMEOUT", 20.0)),
            "max_retries": int(getattr(settings, "LLMHIVE_OPENROUTER_MAX_RETRIES", 3)),
        }
        options.update(overrides)
        return cls(**options)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"LLMHive httpx/{httpx.__version__}",
            "HTTP-Referer": APP_URL,
            "X-Title": APP_TITLE,
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _http_options(self) -> dict[str, Any]:
        return {"base_url": self.base_url + "/", "headers": self._headers(), "timeout": httpx.Timeout(self.timeout)}

    def _url(self, call: _Call) -> str:
        return self.base_url + call.path

    # Requests -------------------------------------------------------------------------------

    @staticmethod
    def _models_call(category: str | None) -> _Call:
        return _Call("GET", "/models", params={"category": category} if category else None)

    @staticmethod
    def _endpoints_call(model_id: str) -> _Call:
        return _Call("GET", endpoints_path(model_id))

    def _key_call(self) -> _Call:
        self._require_key("/key")
        return _Call("GET", "/key", exact=True)

    def _chat_call(
        self,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
        reasoning: dict[str, Any] | None,
        extra: dict[str, Any] | None,
    ) -> _Call:
        self._require_key("/chat/completions")
        body: dict[str, Any] = {"model": model, "messages": messages, "usage": {"include": True}}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if reasoning is not None:
            body["reasoning"] = reasoning
        body.update(extra or {})
        body["stream"] = False
        return _Call("POST", "/chat/completions", body=body, exact=True)

    def _require_key(self, path: str) -> None:
        if not self.api_key:
            raise OpenRouterAuthError(f"OpenRouter's {path} needs an API key and none is configured (OPENROUTER_API_KEY)")

    # Verdicts -------------------------------------------------------------------------------

    def _judge_failure(self, call: _Call, exc: httpx.RequestError) -> _Verdict:
        url = self._url(call)
        if isinstance(exc, httpx.TimeoutException):
            error = OpenRouterUnreachable(f"OpenRouter did not answer {call.method} {url} within {self.timeout:g} s ({type(exc).__name__})")
        elif isinstance(exc, httpx.RemoteProtocolError):
            error = OpenRouterUnreachable(f"OpenRouter closed the connection without a complete answer to {call.method} {url}")
        elif isinstance(exc, httpx.TransportError):
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error = OpenRouterUnreachable(f"cannot reach OpenRouter at {call.method} {url}: {detail}")
        else:  # a body we could not decode (bad gzip), too many redirects...
            return _Verdict(error=OpenRouterBadResponse(f"OpenRouter's answer to {call.describe()} is unusable: {type(exc).__name__}: {exc}"))
        return _Verdict(error=error, retry=True)

    def _judge_response(self, call: _Call, response: httpx.Response) -> _Verdict:
        status = response.status_code
        if 200 <= status < 300:
            try:
                payload = _decode(response, call)
            except OpenRouterBadResponse as exc:
                return _Verdict(error=exc)
            message, code = _error_details(payload)
            if message is None and code is None:
                return _Verdict(payload=payload)
            # OpenRouter sometimes answers 200 and puts the failure in the body (the status
            # line went out before the provider failed). Not retried: a completion may already
            # have been paid for.
            cls = _error_class(code if isinstance(code, int) else None)
            text = f"OpenRouter answered {call.describe()} with 200 but an error in the body"
            text += f" (code {code})" if code is not None else ""
            text += f": {message}" if message else ""
            return _Verdict(error=cls(text, status_code=status, error_code=code))

        try:
            body = _decode(response, call)
        except OpenRouterBadResponse:
            body = None
        message, code = _error_details(body)
        if body is None and _looks_like_html(response):
            message = "an HTML page, not JSON"
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "error"
        text = f"OpenRouter answered {call.describe()} with {status} {reason}"
        text += f": {message}" if message and message != reason else ""
        cls = _error_class(status)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if cls is OpenRouterRateLimited:
            error: OpenRouterError = OpenRouterRateLimited(text, status_code=status, error_code=code, retry_after=retry_after)
        else:
            error = cls(text, status_code=status, error_code=code)
        retry = cls in (OpenRouterRateLimited, OpenRouterServerError)
        return _Verdict(error=error, retry=retry, retry_after=retry_after)

    def _pause(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `attempt + 1`."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = self.backoff * (2**attempt)
        return base + random.uniform(0, base * 0.1)

    def _give_up(self, verdict: _Verdict, attempts: int) -> OpenRouterError:
        assert verdict.error is not None
        if verdict.retry and attempts > 1:
            verdict.error._append(f"(after {attempts} attempts)")
        return verdict.error


class OpenRouterClient(_ClientBase):
    """Blocking client. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout: float = 20.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, backoff, max_retry_after)
        self._http = httpx.Client(transport=transport, **self._http_options())

    def __enter__(self) -> OpenRouterClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> Any:
        verdict = _Verdict()
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(call.method, call.path.lstrip("/"), params=call.params, json=call.body)
            except httpx.RequestError as exc:
                verdict = self._judge_failure(call, exc)
            else:
                verdict = self._judge_response(call, response)
            if verdict.error is None:
                return verdict.payload
            if not verdict.retry or attempt == self.max_retries:
                break
            time.sleep(self._pause(attempt, verdict.retry_after))
        raise self._give_up(verdict, attempt + 1)

    def list_models(self, category: str | None = None) -> ModelList:
        return parse_models_payload(self._send(self._models_call(category)))

    def list_endpoints(self, model_id: str) -> ModelEndpoints:
        return parse_endpoints_payload(self._send(self._endpoints_call(model_id)), model_id)

    def get_key(self) -> KeyInfo:
        return parse_key_payload(self._send(self._key_call()))

    def chat_completion(
        self,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None = 16,
        reasoning: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatCompletion:
        """A non-streamed completion; `extra` is merged into the request body."""
        return parse_chat_completion(self._send(self._chat_call(model, messages, max_tokens, reasoning, extra)))


class AsyncOpenRouterClient(_ClientBase):
    """The same client for asyncio (`async with`, `await client.aclose()`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout: float = 20.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, backoff, max_retry_after)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def __aenter__(self) -> AsyncOpenRouterClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    close = aclose

    async def _send(self, call: _Call) -> Any:
        verdict = _Verdict()
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._http.request(call.method, call.path.lstrip("/"), params=call.params, json=call.body)
            except httpx.RequestError as exc:
                verdict = self._judge_failure(call, exc)
            else:
                verdict = self._judge_response(call, response)
            if verdict.error is None:
                return verdict.payload
            if not verdict.retry or attempt == self.max_retries:
                break
            await asyncio.sleep(self._pause(attempt, verdict.retry_after))
        raise self._give_up(verdict, attempt + 1)

    async def list_models(self, category: str | None = None) -> ModelList:
        return parse_models_payload(await self._send(self._models_call(category)))

    async def list_endpoints(self, model_id: str) -> ModelEndpoints:
        return parse_endpoints_payload(await self._send(self._endpoints_call(model_id)), model_id)

    async def get_key(self) -> KeyInfo:
        return parse_key_payload(await self._send(self._key_call()))

    async def chat_completion(
        self,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None = 16,
        reasoning: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatCompletion:
        return parse_chat_completion(await self._send(self._chat_call(model, messages, max_tokens, reasoning, extra)))
