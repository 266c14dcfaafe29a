"""OpenRouter's JSON bodies -> the typed results, plus the small parsers the transport needs
(`endpoints_path`, `parse_retry_after`). Pure functions: no I/O."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from openrouter.errors import MalformedEntry, OpenRouterBadResponse
from openrouter.types import (
    PRICE_DECIMAL_PLACES,
    PRICE_KEYS,
    PRICING_STRUCTURES,
    REQUIRED_PRICE_KEYS,
    VARIABLE_PRICE,
    ChatCompletion,
    EndpointEntry,
    Generation,
    KeyInfo,
    ModelEndpoints,
    ModelEntry,
    ModelList,
    SkippedEntry,
    Usage,
)

_PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMAL_PLACES)


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
        raise MalformedEntry(f"pricing.{key} is missing", field=f"pricing.{key}")
    try:
        price = _decimal(value)
    except ValueError:
        raise MalformedEntry(f"pricing.{key} is not a number: {value!r:.80}", field=f"pricing.{key}") from None
    if price == VARIABLE_PRICE:
        return None, True
    if price < 0:
        raise MalformedEntry(f"pricing.{key} is negative: {value!r}", field=f"pricing.{key}")
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
        return datetime.fromtimestamp(value, tz=UTC)
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
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
        raise MalformedEntry("id is missing or empty", field="id")
    pricing_raw = raw.get("pricing")
    if not isinstance(pricing_raw, dict):
        raise MalformedEntry("pricing is missing", field="pricing")
    pricing: dict[str, Decimal | None] = {}
    variable = False
    for key in PRICE_KEYS:
        pricing[key], is_variable = parse_price(key, pricing_raw.get(key))
        variable = variable or is_variable
    extra_prices = parse_extra_prices(pricing_raw)

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
        extra_prices=extra_prices,
    )


def unknown_price_keys(pricing_raw: Any) -> list[str]:
    """The keys of a `pricing` object that are neither a known price nor a documented structure."""
    if not isinstance(pricing_raw, dict):
        return []
    return sorted(str(key) for key in pricing_raw if key not in PRICE_KEYS and key not in PRICING_STRUCTURES)


def parse_extra_prices(pricing_raw: dict) -> dict[str, Decimal]:
    """The numeric values of the unknown pricing keys, exact (rounded to the catalog's 14
    decimals like the known ones). A new key is how OpenRouter announces a new way to charge,
    so it is kept rather than dropped; a value that is not a number never fails the entry (the
    key may not be a price at all) and stays in `raw`."""
    extra: dict[str, Decimal] = {}
    for key in unknown_price_keys(pricing_raw):
        value = pricing_raw[key]
        if isinstance(value, (dict, list)):
            continue
        try:
            price = _decimal(value)
        except ValueError:
            continue
        if price.as_tuple().exponent < -PRICE_DECIMAL_PLACES:  # type: ignore[operator]
            price = price.quantize(_PRICE_QUANTUM)
        extra[key] = price
    return extra


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
            skipped.append(SkippedEntry(index=index, id=raw_id, reason=str(exc), field=exc.field))
            continue
        if entry.id in first_seen:
            skipped.append(
                SkippedEntry(index=index, id=entry.id, reason=f"duplicate id (first at index {first_seen[entry.id]})")
            )
            continue
        first_seen[entry.id] = index
        entries.append(entry)
    return ModelList(entries=entries, skipped=skipped)


def _endpoint_pricing(raw: Any) -> dict[str, Decimal | None]:
    # Endpoint pricing also carries non-price keys (`discount`, a list of `overrides`);
    # only scalar values are read, the rest stays in raw.
    if not isinstance(raw, dict):
        return {}
    return {
        key: _money(value)
        for key, value in raw.items()
        if isinstance(value, (str, int, float)) and not isinstance(value, bool)
    }


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
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
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
    completion_details = (
        usage.get("completion_tokens_details") if isinstance(usage.get("completion_tokens_details"), dict) else {}
    )
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


# A generation's money and token counts beyond these are not figures but noise (or an attack on
# the columns that store them): read as absent. 1e9 USD is the ledger's own bound on a cost.
GENERATION_MONEY_LIMIT = Decimal(1_000_000_000)
GENERATION_COUNT_LIMIT = 2**63 - 1


def _generation_money(value: Any) -> Decimal | None:
    """A generation's USD figure, exact and rounded (half even) to the catalog's 14 decimals
    (`total_cost` arrives as a JSON number, 1.255e-05); None when absent, not a number or out
    of bounds."""
    money = _money(value)
    if money is None or abs(money) >= GENERATION_MONEY_LIMIT:
        return None
    return money.quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)


def _count(value: Any) -> int | None:
    """A token count: a whole number from 0 to 2**63 - 1 (a string of digits too), else None."""
    number = _int(value)
    return number if number is not None and 0 <= number <= GENERATION_COUNT_LIMIT else None


def parse_generation(payload: Any, generation_id: str = "") -> Generation:
    """`{"data": {...}}` of `GET /generation?id=` -> Generation. A payload without a `data`
    object, or one about another generation, raises OpenRouterBadResponse; each figure is read
    leniently (absent, null, a string or an unusable number -> None)."""
    data = _data(payload, dict, f"generation {generation_id}".strip())
    answered_id = _str(data.get("id")) or ""
    if generation_id and answered_id and answered_id != generation_id:
        raise OpenRouterBadResponse(
            f"OpenRouter answered the generation {generation_id!r} with another one ({answered_id!r:.80})"
        )
    return Generation(
        id=answered_id or generation_id,
        model=_str(data.get("model")) or "",
        provider_name=_str(data.get("provider_name")),
        created_at=_datetime(data.get("created_at")),
        total_cost=_generation_money(data.get("total_cost")),
        usage=_generation_money(data.get("usage")),
        upstream_inference_cost=_generation_money(data.get("upstream_inference_cost")),
        cache_discount=_generation_money(data.get("cache_discount")),
        tokens_prompt=_count(data.get("tokens_prompt")),
        tokens_completion=_count(data.get("tokens_completion")),
        native_tokens_prompt=_count(data.get("native_tokens_prompt")),
        native_tokens_completion=_count(data.get("native_tokens_completion")),
        native_tokens_reasoning=_count(data.get("native_tokens_reasoning")),
        native_tokens_cached=_count(data.get("native_tokens_cached")),
        is_byok=data.get("is_byok") is True,
        cancelled=data.get("cancelled") is True,
        raw=_plain(data),
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


# --- Request paths and Retry-After -----------------------------------------------------------


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
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
