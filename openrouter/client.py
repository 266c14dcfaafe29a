"""`OpenRouterClient` (blocking) and `AsyncOpenRouterClient` (asyncio, for concurrent health
checks). They share everything but the lines that send a request and wait: configuration and
request building live in `_ClientBase`, the retry loop in `transport.exchange()`, which each
client's `_send` drives."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import httpx

from openrouter.errors import OpenRouterAuthError
from openrouter.parsing import (
    endpoints_path,
    parse_chat_completion,
    parse_endpoints_payload,
    parse_generation,
    parse_key_payload,
    parse_models_payload,
)
from openrouter.transport import (
    Call,
    Outcome,
    RetryPolicy,
    Send,
    Sleep,
    Steps,
    aread_capped,
    exchange,
    judge,
    read_capped,
)
from openrouter.types import ChatCompletion, Generation, KeyInfo, ModelEndpoints, ModelList

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
# Sent as HTTP-Referer, which OpenRouter uses to attribute traffic to an app.
APP_URL = "https://github.com/llmhive/llmhive"
APP_TITLE = "LLMHive"
# The largest answer read by default: OpenRouter's whole model list is under 1 MB (2026).
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class _ClientBase:
    """Configuration, request building, and the retry loop for one call."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout: float = 20.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        """`timeout` bounds each wait (to connect, for the next bytes); `deadline` a whole call,
        retries and pauses included; `max_response_bytes` the size of an answer."""
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.deadline = None if deadline is None or deadline <= 0 else float(deadline)
        self.max_response_bytes = max(1, int(max_response_bytes))
        self.api_key = api_key or ""
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = max(0.0, float(backoff))
        self.max_retry_after = max(0.0, float(max_retry_after))

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, backoff=self.backoff, max_retry_after=self.max_retry_after)

    def _steps(self, call: Call) -> Steps:
        """The shared retry loop for `call`, judged with this client's URL and timeout."""
        return exchange(
            call, self.retry_policy, partial(judge, base_url=self.base_url, timeout=self.timeout), self.deadline
        )

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

    @staticmethod
    def _request_args(call: Call) -> dict[str, Any]:
        return {"method": call.method, "url": call.path.lstrip("/"), "params": call.params, "json": call.body}

    # Requests -------------------------------------------------------------------------------

    @staticmethod
    def _models_call(category: str | None) -> Call:
        return Call("GET", "/models", params={"category": category} if category else None)

    @staticmethod
    def _endpoints_call(model_id: str) -> Call:
        return Call("GET", endpoints_path(model_id))

    def _key_call(self) -> Call:
        self._require_key("/key")
        return Call("GET", "/key", exact=True)

    def _generation_call(self, generation_id: str) -> Call:
        if not generation_id or not generation_id.strip():
            raise ValueError("a generation id is needed (the `id` OpenRouter answered a completion with)")
        self._require_key("/generation")
        # Costs arrive as JSON numbers: read them as Decimal, never through a float.
        return Call("GET", "/generation", params={"id": generation_id}, exact=True)

    def _chat_call(
        self,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
        reasoning: dict[str, Any] | None,
        extra: dict[str, Any] | None,
    ) -> Call:
        self._require_key("/chat/completions")
        body: dict[str, Any] = {"model": model, "messages": messages, "usage": {"include": True}}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if reasoning is not None:
            body["reasoning"] = reasoning
        body.update(extra or {})
        body["stream"] = False
        return Call("POST", "/chat/completions", body=body, exact=True)

    def _require_key(self, path: str) -> None:
        if not self.api_key:
            raise OpenRouterAuthError(
                f"OpenRouter's {path} needs an API key and none is configured (OPENROUTER_API_KEY)"
            )


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
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout, max_retries, backoff, max_retry_after, deadline, max_response_bytes
        )
        self._http = httpx.Client(transport=transport, **self._http_options())

    def __enter__(self) -> OpenRouterClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        steps, outcome = self._steps(call), None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
            else:
                outcome = self._attempt(step)

    def _attempt(self, send: Send) -> Outcome:
        return read_capped(self._http, self._request_args(send.call), send, self.timeout, self.max_response_bytes)

    def list_models(self, category: str | None = None) -> ModelList:
        return parse_models_payload(self._send(self._models_call(category)))

    def list_endpoints(self, model_id: str) -> ModelEndpoints:
        return parse_endpoints_payload(self._send(self._endpoints_call(model_id)), model_id)

    def get_key(self) -> KeyInfo:
        return parse_key_payload(self._send(self._key_call()))

    def generation(self, generation_id: str) -> Generation:
        """What OpenRouter recorded for one generation: its cost and native token counts. Needs
        a key. OpenRouter answers 404 (OpenRouterBadResponse, `status_code` 404) for a few
        seconds to minutes after a generation, until it has recorded it, and for ids it never
        made."""
        return parse_generation(self._send(self._generation_call(generation_id)), generation_id)

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
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout, max_retries, backoff, max_retry_after, deadline, max_response_bytes
        )
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def __aenter__(self) -> AsyncOpenRouterClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    close = aclose

    async def _send(self, call: Call) -> Any:
        steps, outcome = self._steps(call), None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = None
            else:
                outcome = await self._attempt(step)

    async def _attempt(self, send: Send) -> Outcome:
        return await aread_capped(
            self._http, self._request_args(send.call), send, self.timeout, self.max_response_bytes
        )

    async def list_models(self, category: str | None = None) -> ModelList:
        return parse_models_payload(await self._send(self._models_call(category)))

    async def list_endpoints(self, model_id: str) -> ModelEndpoints:
        return parse_endpoints_payload(await self._send(self._endpoints_call(model_id)), model_id)

    async def get_key(self) -> KeyInfo:
        return parse_key_payload(await self._send(self._key_call()))

    async def generation(self, generation_id: str) -> Generation:
        return parse_generation(await self._send(self._generation_call(generation_id)), generation_id)

    async def chat_completion(
        self,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None = 16,
        reasoning: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatCompletion:
        return parse_chat_completion(await self._send(self._chat_call(model, messages, max_tokens, reasoning, extra)))
