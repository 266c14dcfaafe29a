"""Shared fixtures for the health checks: catalog models the fake OpenRouter knows, endpoint
lists in OpenRouter's published shape, and chat completions in the recorded shape."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.factories import CatalogModelFactory
from tests.fake_openrouter import Reply, load_recorded, published_endpoint, recorded_dir

RECORDED_COMPLETION = "chat_completions/chat_completion_2026-04-27_openai-gpt-5.4-nano.json"
PROMPT_PRICE, COMPLETION_PRICE = Decimal("0.000001"), Decimal("0.000002")


def endpoint(provider: str = "Acme", **overrides) -> dict:
    return published_endpoint(provider, **overrides)


UP = endpoint("Acme")
DOWN = endpoint("Slowco", status=-2, uptime_last_30m=40.0)


def completion(model: str, cost: str | None = "0.0000125", prompt_tokens: int = 10, completion_tokens: int = 2) -> dict:
    """A small chat completion body as OpenRouter answers it (the fields of the recorded ones)."""
    usage: dict = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": 0},
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    if cost is not None:
        usage["cost"] = float(cost)
    return {
        "id": f"gen-{model.replace('/', '-')}",
        "object": "chat.completion",
        "created": 1777319808,
        "model": model,
        "provider": "Acme",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "OK"}}],
        "usage": usage,
    }


@pytest.fixture
def recorded_completion() -> dict:
    """The recorded gpt-5.4-nano completion (request and response); skips when the recorded
    data is absent."""
    if not (recorded_dir() / RECORDED_COMPLETION).is_file():
        pytest.skip("the recorded OpenRouter data (../shared/openrouter) is absent")
    return load_recorded(RECORDED_COMPLETION)


def recorded_reply(recorded: dict) -> Reply:
    """The recorded body as OpenRouter sends it: whitespace first (it keeps the connection
    alive while the model works), then the JSON."""
    return Reply(body="\n         \n" + json.dumps(recorded["response"]["body"]))


@pytest.fixture
def fast(settings):
    settings.LLMHIVE_HEALTH_TIMEOUT_SECONDS = 1.0
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 1.0


@pytest.fixture
def no_key(settings):
    settings.OPENROUTER_API_KEY = ""


@pytest.fixture
def keyed(settings):
    settings.OPENROUTER_API_KEY = "sk-or-v1-test"


@pytest.fixture
def acme(db, fake_openrouter, fast):
    """Four enabled, active models, each with one endpoint up and one degraded, answering pings
    for 0.0000125 USD; a key with a limit of 25 USD and 3.5 used."""
    made = [
        CatalogModelFactory(id=f"acme/m{i}", price_prompt=PROMPT_PRICE, price_completion=COMPLETION_PRICE)
        for i in range(4)
    ]
    for m in made:
        fake_openrouter.set_endpoints(m.id, [UP, DOWN])
        fake_openrouter.set_chat(m.id, completion(m.id))
    fake_openrouter.set_key({"data": {"label": "sk-or-v1-abc...def", "limit": 25, "usage": 3.5, "is_free_tier": False}})
    return made


def ids(models) -> list[str]:
    return [m.id for m in models]
