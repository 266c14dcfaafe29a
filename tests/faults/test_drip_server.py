"""A server that answers a byte a second: each wait for a byte is short, so a socket timeout
never fires. The call's deadline (and the run's) ends it; an oversized answer is cut at the cap."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from catalog.models import SyncStatus
from catalog.sync import sync_catalog
from openrouter import AsyncOpenRouterClient, OpenRouterBadResponse, OpenRouterClient, OpenRouterUnreachable

pytestmark = pytest.mark.django_db

MARGIN = 1.5  # seconds past the deadline a call may end: one trickled byte, the thread's wake-up
BODY = json.dumps({"data": []}).encode() * 50


class DripServer:
    """A real HTTP server on 127.0.0.1. `mode`: "body" sends the headers at once and the body a
    byte a second; "headers" trickles the status line itself; "big" sends `big_bytes` at once."""

    def __init__(self, mode: str, big_bytes: int = 0) -> None:
        self.mode = mode
        self.big_bytes = big_bytes
        self.sent = 0
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/api/v1"

    def serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                if self.mode == "big":
                    body = b"[" + b"0," * (self.big_bytes // 2) + b"0]"
                    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    conn.sendall(head.encode() + body)
                    return
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
                if self.mode == "body":
                    conn.sendall(head.encode())
                    trickle = BODY
                else:
                    trickle = head.encode() + BODY
                for byte in trickle:
                    conn.sendall(bytes([byte]))
                    self.sent += 1
                    if self.stopping.wait(1.0):
                        return
            except OSError:
                return  # the client hung up: what the deadline is for

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def drip() -> Iterator[type[DripServer]]:
    servers: list[DripServer] = []

    def start(mode: str, big_bytes: int = 0) -> DripServer:
        server = DripServer(mode, big_bytes)
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.stop()


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_a_sync_against_a_trickle_ends_at_the_call_deadline(drip, settings, mode):
    server = drip(mode)
    settings.OPENROUTER_BASE_URL = server.base_url
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 3.0  # each wait for a byte: never reached at a byte a second
    settings.LLMHIVE_OPENROUTER_DEADLINE = 3.0
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 2

    started = time.monotonic()
    run = sync_catalog()
    elapsed = time.monotonic() - started

    print(f"\ndrip ({mode}): deadline 3 s, the sync ended after {elapsed:.2f} s, {server.sent} bytes trickled")
    assert run.status == SyncStatus.FAILED
    assert "within the call's deadline of 3 s" in run.error, run.error
    assert 3.0 <= elapsed < 3.0 + MARGIN


def test_the_run_deadline_bounds_the_call_when_it_is_shorter(drip, settings):
    server = drip("body")
    settings.OPENROUTER_BASE_URL = server.base_url
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 10.0
    settings.LLMHIVE_OPENROUTER_DEADLINE = 30.0
    settings.LLMHIVE_SYNC_DEADLINE_SECONDS = 2.0

    started = time.monotonic()
    run = sync_catalog()
    elapsed = time.monotonic() - started

    print(f"\ndrip (run deadline): 2 s, the sync ended after {elapsed:.2f} s")
    assert run.status == SyncStatus.FAILED and "deadline" in run.error
    assert 1.9 <= elapsed < 2.0 + MARGIN


def test_the_asyncio_client_ends_at_the_deadline_too(drip):
    server = drip("body")

    async def call() -> Exception:
        async with AsyncOpenRouterClient(server.base_url, timeout=3.0, deadline=2.0, max_retries=0) as client:
            with pytest.raises(OpenRouterUnreachable) as failure:
                await client.list_models()
        return failure.value

    started = time.monotonic()
    error = asyncio.run(call())
    elapsed = time.monotonic() - started

    print(f"\ndrip (asyncio): deadline 2 s, the call ended after {elapsed:.2f} s")
    assert "deadline of 2 s" in str(error)
    assert 2.0 <= elapsed < 2.0 + MARGIN


def test_an_oversized_answer_is_cut_at_the_cap(drip, settings):
    cap = 1_000_000
    server = drip("big", big_bytes=8 * cap)
    settings.OPENROUTER_BASE_URL = server.base_url
    settings.LLMHIVE_OPENROUTER_MAX_RESPONSE_BYTES = cap

    started = time.monotonic()
    run = sync_catalog()
    elapsed = time.monotonic() - started

    read = int(re.search(r"reading stopped at (\d+) bytes", run.error).group(1))
    print(f"\noversized answer: {8 * cap} bytes offered, cap {cap}, {read} read, the sync failed after {elapsed:.2f} s")
    assert run.status == SyncStatus.FAILED
    assert f"is larger than {cap} bytes" in run.error
    assert cap < read <= cap + 128 * 1024  # at most one read past the cap
    assert elapsed < 5


def test_the_client_reads_at_most_a_chunk_past_the_cap(drip):
    cap = 200_000
    server = drip("big", big_bytes=5 * cap)
    with OpenRouterClient(server.base_url, max_retries=0, max_response_bytes=cap) as client:
        with pytest.raises(OpenRouterBadResponse) as failure:
            client.list_models()
    assert "larger than 200000 bytes" in str(failure.value)
