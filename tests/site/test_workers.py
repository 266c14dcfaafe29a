"""The project's gunicorn sync worker (llmhive_site.workers.SyncWorker) closes a connection as
soon as its request is answered when the client sent nothing left unread: it does not linger
for the client to close its end (gunicorn's own close waits up to 2 s for that), so one slow
client does not keep the worker from the next request. A request whose body was not read (a
413) still gets gunicorn's lingering close, so its answer reaches the client whole."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.servers import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def exchange(address: tuple[str, int], request: bytes) -> tuple[socket.socket, bytes]:
    """Send `request` on a new connection and read the answer until the server's end closes;
    the connection is returned open (this client does not close its end)."""
    client = socket.create_connection(address, timeout=10)
    client.sendall(request)
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    return client, answer


def test_a_client_that_keeps_its_end_open_does_not_hold_the_worker():
    with gunicorn(workers=1) as base:
        url = urlsplit(base)
        address = (url.hostname, url.port)
        request = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        lingering, first = exchange(address, request)  # read, never closed by this client
        try:
            started = time.monotonic()
            second, answer = exchange(address, request)
            waited = time.monotonic() - started
            second.close()
        finally:
            lingering.close()
    assert first.startswith(b"HTTP/1.1 200") and answer.startswith(b"HTTP/1.1 200"), (first[:80], answer[:80])
    # gunicorn's lingering close would have kept the only worker on the first client for 2 s.
    assert waited < 1.0, waited


def test_an_answer_given_before_the_body_was_read_still_reaches_the_client_whole():
    big = b"[" + b"0," * 3_000_000 + b"0]"  # over the API's body limit: answered 413 unread
    with gunicorn(workers=1) as base:
        url = urlsplit(base)
        head = (
            f"POST /api/v1/usage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(big)}\r\nConnection: close\r\n\r\n"
        ).encode()
        client = socket.create_connection((url.hostname, url.port), timeout=10)
        try:
            try:
                client.sendall(head + big)
            except (BrokenPipeError, ConnectionResetError):
                pass  # (the server answered before taking the whole body; the answer is read below)
            answer = b""
            try:
                while chunk := client.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        finally:
            client.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The JSON body, whole, to the last chunk.
    assert b'"code": "too_large"}' in answer and answer.endswith(b"\r\n0\r\n\r\n"), answer[-200:]
