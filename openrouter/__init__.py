"""A typed client for the parts of OpenRouter's API that LLMHive uses.

A plain package: it needs httpx and the standard library, reads no settings and imports nothing
from the project. Callers pass the configuration (the project builds its clients from its
settings in `catalog/client.py`).

    errors     the exception hierarchy (OpenRouterError and its subclasses, MalformedEntry)
    types      the frozen result dataclasses and the pricing constants
    parsing    JSON bodies -> typed results; no I/O
    transport  requests, verdicts on answers and failures, and the one retry loop
    client     OpenRouterClient (blocking) and AsyncOpenRouterClient (asyncio)

Money is `decimal.Decimal` throughout; no price ever passes through a float.
"""

from openrouter.client import APP_TITLE, APP_URL, DEFAULT_BASE_URL, AsyncOpenRouterClient, OpenRouterClient
from openrouter.errors import (
    MalformedEntry,
    OpenRouterAuthError,
    OpenRouterBadResponse,
    OpenRouterError,
    OpenRouterPaymentRequired,
    OpenRouterRateLimited,
    OpenRouterServerError,
    OpenRouterUnreachable,
)
from openrouter.parsing import (
    endpoints_path,
    parse_chat_completion,
    parse_endpoint,
    parse_endpoints_payload,
    parse_key_payload,
    parse_model,
    parse_models_payload,
    parse_price,
    parse_retry_after,
)
from openrouter.transport import RetryPolicy
from openrouter.types import (
    PRICE_DECIMAL_PLACES,
    PRICE_KEYS,
    REQUIRED_PRICE_KEYS,
    VARIABLE_PRICE,
    ChatCompletion,
    EndpointEntry,
    KeyInfo,
    ModelEndpoints,
    ModelEntry,
    ModelList,
    SkippedEntry,
    Usage,
)

__all__ = [
    # clients
    "OpenRouterClient",
    "AsyncOpenRouterClient",
    "RetryPolicy",
    "DEFAULT_BASE_URL",
    "APP_URL",
    "APP_TITLE",
    # errors
    "OpenRouterError",
    "OpenRouterUnreachable",
    "OpenRouterRateLimited",
    "OpenRouterServerError",
    "OpenRouterAuthError",
    "OpenRouterPaymentRequired",
    "OpenRouterBadResponse",
    "MalformedEntry",
    # results and constants
    "ModelEntry",
    "SkippedEntry",
    "ModelList",
    "EndpointEntry",
    "ModelEndpoints",
    "KeyInfo",
    "Usage",
    "ChatCompletion",
    "PRICE_KEYS",
    "REQUIRED_PRICE_KEYS",
    "VARIABLE_PRICE",
    "PRICE_DECIMAL_PLACES",
    # parsing
    "parse_model",
    "parse_models_payload",
    "parse_endpoint",
    "parse_endpoints_payload",
    "parse_key_payload",
    "parse_chat_completion",
    "parse_price",
    "parse_retry_after",
    "endpoints_path",
]
