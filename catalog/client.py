"""The project's OpenRouter clients, configured from Django settings (the `openrouter` package
itself reads no settings)."""

from __future__ import annotations

from typing import Any, overload

from django.conf import settings

from openrouter import DEFAULT_BASE_URL, AsyncOpenRouterClient, OpenRouterClient
from openrouter.client import DEFAULT_MAX_RESPONSE_BYTES


@overload
def openrouter_client(cls: type[OpenRouterClient] = ..., **overrides: Any) -> OpenRouterClient: ...
@overload
def openrouter_client(cls: type[AsyncOpenRouterClient], **overrides: Any) -> AsyncOpenRouterClient: ...


def openrouter_client(cls: type[Any] = OpenRouterClient, **overrides: Any) -> Any:
    """A client (blocking by default; pass AsyncOpenRouterClient for asyncio) configured from
    Django settings: OPENROUTER_BASE_URL, OPENROUTER_API_KEY, LLMHIVE_OPENROUTER_TIMEOUT,
    LLMHIVE_OPENROUTER_MAX_RETRIES, LLMHIVE_OPENROUTER_DEADLINE (each call's total time) and
    LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES; keyword arguments override them."""
    options: dict[str, Any] = {
        "base_url": getattr(settings, "OPENROUTER_BASE_URL", DEFAULT_BASE_URL) or DEFAULT_BASE_URL,
        "api_key": getattr(settings, "OPENROUTER_API_KEY", "") or "",
        "timeout": float(getattr(settings, "LLMHIVE_OPENROUTER_TIMEOUT", 20.0)),
        "max_retries": int(getattr(settings, "LLMHIVE_OPENROUTER_MAX_RETRIES", 3)),
        "deadline": float(getattr(settings, "LLMHIVE_OPENROUTER_DEADLINE", 60.0)),
        "max_response_bytes": int(
            getattr(settings, "LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES)
        ),
    }
    options.update(overrides)
    return cls(**options)
