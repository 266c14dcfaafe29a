"""A fake OpenRouter: a real HTTP server on 127.0.0.1 that each test scripts.

The `fake_openrouter` fixture starts one on a free port and points
`settings.OPENROUTER_BASE_URL` at it, so the code under test uses the real client:

    def test_it_survives_a_500(fake_openrouter):
        fake_openrouter.set_models([...])                       # what GET /models answers
        fake_openrouter.script("/models", status(500))          # ...after one 500
        ...
        assert len(fake_openrouter.requests) == 2

Scripted replies (`script`) are consumed one per request, in order, before the path's default
answer. Faults: `timeout`, `drop`, `status`, `rate_limited`, `html_error`, `truncated`,
`empty_list`, `error_body`; anything else is a `Reply`.

Also here: helpers for the recorded OpenRouter responses in `../shared/openrouter/`, which tests
read in place (never copied into the project) and skip when absent.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

API_PREFIX = "/api/v1"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# --- Recorded data ----------------------------------------------------------------------------

SNAPSHOT_DATES = ("2025-10-01", "2025-12-04", "2025-12-18", "2026-01-15", "2026-01-29", "2026-06-29")


def recorded_dir() -> Path:
    """`<project root>/../shared/openrouter` (or LLMHIVE_RECORDED_DIR): real OpenRouter
    responses, read in place."""
    override = os.environ.get("LLMHIVE_RECORDED_DIR")
    return Path(override) if override else PROJECT_ROOT.parent / "shared" / "openrouter"


requires_recorded = pytest.mark.skipif(
    not (recorded_dir() / "models").is_dir(), reason="the recorded OpenRouter data (../shared/openrouter) is absent"
)


@cache
def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")


def snapshot_path(date_str: str) -> Path:
    return recorded_dir() / "models" / f"openrouter_models_{date_str}.json"


def load_snapshot(date_str: str) -> dict:
    """The recorded `GET /models` answer of that date, freshly parsed (safe to modify)."""
    return json.loads(_read_text(snapshot_path(date_str)))


def load_recorded(relative_path: str) -> Any:
    """Any recorded JSON file, by its path under the recorded folder."""
    return json.loads(_read_text(recorded_dir() / relative_path))


@cache
def openapi_document(filename: str) -> dict:
    """OpenRouter's published OpenAPI description (`reference/<filename>`), parsed once per run
    with libyaml's loader (the pure-Python one takes seconds over its 30,000 lines)."""
    import yaml

    return yaml.load(_read_text(recorded_dir() / "reference" / filename), Loader=yaml.CSafeLoader)


def published_endpoint(provider: str = "Acme", **overrides) -> dict:
    """One endpoint as `/models/{author}/{slug}/endpoints` lists it. No recorded endpoint list
    exists under ../shared/openrouter, so this follows the example of OpenRouter's published
    OpenAPI description (reference/openrouter_openapi_2026-08-22.yaml, ListEndpointsResponse):
    an integer status (0 healthy, negative degraded), uptime percentages, percentiles."""
    data = {
        "name": f"{provider}: Model",
        "model_id": "acme/model",
        "model_name": "Model",
        "context_length": 8192,
        "latency_last_30m": {"p50": 0.25, "p75": 0.35, "p90": 0.48, "p99": 0.85},
        "max_completion_tokens": 4096,
        "max_prompt_tokens": 8192,
        "pricing": {"completion": "0.000002", "image": "0", "prompt": "0.000001", "request": "0", "discount": 0},
        "provider_name": provider,
        "quantization": "fp16",
        "status": 0,
        "supported_parameters": ["temperature", "top_p", "max_tokens"],
        "supports_implicit_caching": True,
        "tag": provider.lower(),
        "throughput_last_30m": {"p50": 45.2, "p75": 38.5, "p90": 28.3, "p99": 15.1},
        "uptime_last_1d": 99.8,
        "uptime_last_30m": 99.5,
        "uptime_last_5m": 100,
    }
    data.update(overrides)
    return data


def published_generation(generation_id: str = "gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG", **overrides) -> dict:
    """The `data` object `GET /generation?id=` answers with, as OpenRouter's published OpenAPI
    description gives its example (reference/openrouter_openapi_2026-08-22.yaml,
    GenerationResponse; tests/openrouter/test_generation.py holds it to the schema)."""
    data = {
        "api_type": "completions",
        "app_id": 12345,
        "cache_discount": None,
        "cancelled": False,
        "created_at": "2024-07-15T23:33:19.433273+00:00",
        "data_region": "global",
        "external_user": "user-123",
        "finish_reason": "stop",
        "generation_time": 1200,
        "http_referer": "https://openrouter.ai/",
        "id": generation_id,
        "is_byok": False,
        "latency": 1250,
        "model": "sao10k/l3-stheno-8b",
        "moderation_latency": 50,
        "native_finish_reason": "stop",
        "native_tokens_cached": 3,
        "native_tokens_completion": 25,
        "native_tokens_completion_images": 0,
        "native_tokens_prompt": 10,
        "native_tokens_reasoning": 5,
        "num_fetches": 0,
        "num_input_audio_prompt": 0,
        "num_media_completion": 0,
        "num_media_prompt": 1,
        "num_search_results": 5,
        "origin": "https://openrouter.ai/",
        "preset_id": "a9e8d400-592a-494f-908c-375efa66cafd",
        "provider_name": "Infermatic",
        "provider_responses": None,
        "request_id": "req-1727282430-aBcDeFgHiJkLmNoPqRsT",
        "router": "openrouter/auto",
        "service_tier": "priority",
        "session_id": None,
        "streamed": True,
        "tokens_completion": 25,
        "tokens_prompt": 10,
        "total_cost": 0.0015,
        "upstream_id": "chatcmpl-791bcf62-080e-4568-87d0-94c72e3b4946",
        "upstream_inference_cost": 0.0012,
        "usage": 0.0015,
        "user_agent": "Mozilla/5.0",
        "web_search_engine": "exa",
        "workspace_id": "550e8400-e29b-41d4-a716-446655440000",
    }
    data.update(overrides)
    return data


# --- Replies and faults -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    """One answer: `json` is encoded, `body` (str or bytes) is sent as is; `delay` seconds pass
    first."""

    status: int = 200
    json: Any = None
    body: str | bytes | None = None
    headers: dict[str, str] | None = None
    delay: float = 0.0

    def render(self, fake: FakeOpenRouter, request: RecordedRequest) -> Rendered | None:
        """What to send, or None to close the connection without answering."""
        headers = {"Content-Type": "application/json"}
        if self.body is not None:
            body = self.body.encode() if isinstance(self.body, str) else self.body
        elif self.json is not None:
            body = _encode(self.json)
        else:
            body = b""
        headers.update(self.headers or {})
        return Rendered(self.status, headers, body)


class _Drop(Reply):
    def render(self, fake: FakeOpenRouter, request: RecordedRequest) -> Rendered | None:
        return None


class _Default(Reply):
    """The path's default answer, after the delay."""

    def render(self, fake: FakeOpenRouter, request: RecordedRequest) -> Rendered | None:
        return fake.default_reply(request).render(fake, request)


class _Truncated(Reply):
    """The path's default answer (or `json`), cut in half."""

    def render(self, fake: FakeOpenRouter, request: RecordedRequest) -> Rendered | None:
        whole = (
            Reply(json=self.json).render(fake, request)
            if self.json is not None
            else fake.default_reply(request).render(fake, request)
        )
        assert whole is not None
        return Rendered(200, {"Content-Type": "application/json"}, whole.body[: max(1, len(whole.body) // 2)])


def timeout(seconds: float = 5.0) -> Reply:
    """Sleep `seconds` (make it longer than the client's timeout), then answer as usual."""
    return _Default(delay=seconds)


def drop() -> Reply:
    """Close the connection without sending anything."""
    return _Drop()


def status(code: int, json: Any = None) -> Reply:
    """`code` with OpenRouter's error body (or `json`)."""
    return Reply(status=code, json=json if json is not None else error_json(code, _phrase(code)))


def rate_limited(retry_after: float | int | str | None = 1) -> Reply:
    """429 with a Retry-After header (seconds, or an HTTP date as a string)."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(status=429, json=error_json(429, "Rate limit exceeded: free-models-per-min."), headers=headers)


def html_error(code: int = 502) -> Reply:
    """The HTML page a proxy in front of OpenRouter answers with when things are bad."""
    phrase = _phrase(code)
    page = f"<!DOCTYPE html>\n<html><head><title>{code} {phrase}</title></head>\n<body><h1>{code} {phrase}</h1><hr><p>cloudflare</p></body></html>\n"
    return Reply(status=code, body=page, headers={"Content-Type": "text/html; charset=UTF-8"})


def truncated(json: Any = None) -> Reply:
    """A 200 whose JSON body is cut in half (the path's default answer unless `json` is given)."""
    return _Truncated(json=json)


def empty_list() -> Reply:
    return Reply(json={"data": []})


def error_body(code: int, message: str, metadata: dict | None = None) -> Reply:
    """A 200 carrying `{"error": ...}`: how OpenRouter reports a failure after the status
    line went out."""
    return Reply(status=200, json=error_json(code, message, metadata))


def error_json(code: int, message: str, metadata: dict | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _as_reply(payload: Any, wrap: Any = None) -> Reply:
    """A setter's payload as a Reply, encoded now so later changes to the object don't leak."""
    if isinstance(payload, Reply):
        return payload
    if wrap is not None:
        payload = wrap(payload)
    return Reply(body=_encode(payload))


# --- The server -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the /api/v1 prefix and the query, e.g. "/models"
    query: dict[str, str]
    headers: httpx.Headers  # case-insensitive
    body: bytes
    time: float  # time.monotonic() when the request arrived
    full_path: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


DEFAULT_KEY = {
    "label": "sk-or-v1-fak...e000",
    "limit": None,
    "limit_remaining": None,
    "limit_reset": None,
    "usage": 0,
    "usage_daily": 0,
    "usage_weekly": 0,
    "usage_monthly": 0,
    "is_free_tier": False,
    "is_management_key": False,
    "expires_at": None,
}


@dataclass
class FakeOpenRouter:
    """Scripted answers for the paths LLMHive calls. Every method is thread-safe."""

    host: str = "127.0.0.1"
    handler_delay: float = 0.0  # seconds every request waits before it is answered
    requests: list[RecordedRequest] = field(default_factory=list)
    max_in_flight: int = 0
    in_flight: int = 0
    # When set, GET /generation answers 401 to a request with another bearer key.
    api_key: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._models: Reply = _as_reply({"data": []})
        self._category_models: dict[str, Reply] = {}
        self._endpoints: dict[str, Reply] = {}
        self._key: Reply = _as_reply({"data": DEFAULT_KEY})
        self._chat: dict[str | None, Reply] = {}
        self._generations: dict[str, Reply] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeOpenRouter:
        self._server = _Server((self.host, 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeOpenRouter:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake is not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # Scripting ------------------------------------------------------------------------------

    def set_models(self, payload: dict | list | Reply) -> None:
        """What GET /models answers; a list is wrapped as {"data": list}."""
        with self._lock:
            self._models = _as_reply(payload, _wrap_list)

    def set_category_models(self, category: str, payload: dict | list | Reply) -> None:
        """What GET /models?category=X answers (an unknown category answers an empty list)."""
        with self._lock:
            self._category_models[category] = _as_reply(payload, _wrap_list)

    def set_endpoints(self, model_id: str, payload: dict | list | Reply) -> None:
        """What GET /models/{author}/{slug}/endpoints answers: the whole body, the `data`
        object, or just the list of endpoints. Unknown models answer 404."""
        with self._lock:
            self._endpoints[model_id] = _as_reply(payload, lambda p: _wrap_endpoints(model_id, p))

    def set_key(self, payload: dict | Reply) -> None:
        """What GET /key answers (to a request with a key): the body or its `data` object."""
        with self._lock:
            self._key = _as_reply(payload, lambda p: p if "data" in p else {"data": p})

    def set_chat(self, model: str | None, payload: dict | str | Reply) -> None:
        """What POST /chat/completions answers for that requested model (None: for any model).
        A str is sent as is, e.g. a recorded body with its leading whitespace."""
        with self._lock:
            self._chat[model] = Reply(body=payload) if isinstance(payload, str) else _as_reply(payload)

    def set_generation(self, generation_id: str, payload: dict | Reply | None = None, **fields: Any) -> None:
        """What GET /generation?id=<generation_id> answers: the whole body, its `data` object,
        or (by default) `published_generation` with `fields` changed, e.g.
        `set_generation("gen-1", total_cost=0.0042, native_tokens_prompt=120)`. Unknown ids
        answer 404, as OpenRouter does until it has recorded a generation; to have a known one
        answer 404 first: `script("/generation?id=gen-1", status(404))`."""
        if payload is None:
            payload = published_generation(generation_id, **fields)
        with self._lock:
            self._generations[generation_id] = _as_reply(payload, lambda p: p if "data" in p else {"data": p})

    def script(self, path: str, *replies: Reply) -> None:
        """Queue one-shot replies for `path` ("/models", or "/models?category=x" for that query
        only), consumed in order before the default answer."""
        with self._lock:
            self._scripts[path].extend(replies)

    def pending(self, path: str) -> int:
        """How many scripted replies for `path` are still unused."""
        with self._lock:
            return len(self._scripts.get(path, ()))

    def reset_counters(self) -> None:
        """Forget the recorded requests and the in-flight high-water mark."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # Answering ------------------------------------------------------------------------------

    def _enter(self, request: RecordedRequest, routed: bool = True) -> Reply:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if not routed:
                return status(404, error_json(404, f"Not found: {request.full_path} is not under {API_PREFIX}"))
            query = "&".join(f"{k}={v}" for k, v in request.query.items())
            for key in (f"{request.path}?{query}", request.path):
                if self._scripts.get(key):
                    return self._scripts[key].popleft()
        return self.default_reply(request)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def default_reply(self, request: RecordedRequest) -> Reply:
        """What a path answers when nothing is scripted."""
        with self._lock:
            path, method = request.path, request.method
            if method == "GET" and path == "/models":
                category = request.query.get("category")
                if category is None:
                    return self._models
                return self._category_models.get(category, empty_list())
            parts = path.strip("/").split("/")
            if method == "GET" and len(parts) == 4 and parts[0] == "models" and parts[3] == "endpoints":
                model_id = f"{parts[1]}/{parts[2]}"
                return self._endpoints.get(model_id) or status(404, error_json(404, f"Model {model_id} not found"))
            if method == "GET" and path == "/key":
                if not request.headers.get("authorization"):
                    return status(401, error_json(401, "Missing Authentication header"))
                return self._key
            if method == "GET" and path == "/generation":
                authorization = request.headers.get("authorization")
                if not authorization:
                    return status(401, error_json(401, "Missing Authentication header"))
                if self.api_key is not None and authorization != f"Bearer {self.api_key}":
                    return status(401, error_json(401, "User not found."))
                generation_id = request.query.get("id", "")
                return self._generations.get(generation_id) or status(
                    404, error_json(404, f"Generation {generation_id} not found")
                )
            if method == "POST" and path == "/chat/completions":
                if not request.headers.get("authorization"):
                    return status(401, error_json(401, "Missing Authentication header"))
                model = (request.json() or {}).get("model")
                return self._chat.get(model) or self._chat.get(None) or Reply(json=_default_completion(model))
            return status(404, error_json(404, f"Not found: {method} {path}"))

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)


def _wrap_list(payload: Any) -> Any:
    return {"data": payload} if isinstance(payload, list) else payload


def _wrap_endpoints(model_id: str, payload: Any) -> Any:
    if isinstance(payload, list):
        payload = {"id": model_id, "name": model_id, "endpoints": payload}
    return payload if "data" in payload else {"data": payload}


def _default_completion(model: str | None) -> dict:
    return {
        "id": "gen-fake-0001",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "provider": "Fake",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "pong"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "cost": 0},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for a handler still sleeping in a fault
    # socketserver's default backlog of 5 drops the SYNs of a burst of concurrent clients,
    # which then retry a second later.
    request_queue_size = 128
    fake: FakeOpenRouter

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) closes its end while the handler still writes;
        # that is the point of the fault, not an error worth printing.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        fake = self.server.fake
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        path = unquote(url.path)
        relative = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else path
        request = RecordedRequest(
            method=self.command,
            path=relative,
            query=dict(parse_qsl(url.query)),
            headers=httpx.Headers(list(self.headers.items())),
            body=body,
            time=arrived,
            full_path=self.path,
        )
        reply = fake._enter(request, routed=path.startswith(API_PREFIX + "/"))
        try:
            fake.sleep(fake.handler_delay + reply.delay)
            rendered = reply.render(fake, request)
            if rendered is None:
                self._drop()
                return
            self.send_response(rendered.status)
            for name, value in rendered.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(rendered.body)))
            self.end_headers()
            self.wfile.write(rendered.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            fake._leave()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            # Linger 0: closing sends a reset, as a proxy that dies mid-request does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


@pytest.fixture
def fake_openrouter(settings) -> Iterator[FakeOpenRouter]:
    """A started fake OpenRouter; settings.OPENROUTER_BASE_URL points at it."""
    fake = FakeOpenRouter().start()
    settings.OPENROUTER_BASE_URL = fake.base_url
    try:
        yield fake
    finally:
        fake.stop()
