"""A load generator that runs in its own process, so the server's figures are not the client's.

Plain sockets and prepared request bytes keep the client's own cost per request small (tens of
microseconds). Each request opens a connection and sends `Connection: close`, which is what
gunicorn's sync workers do anyway; `--keepalive` keeps one connection per sender instead (what
an orchestrator's HTTP client does), reconnecting when the server closes it.

    python loadgen.py rate  --url URL --key KEY --bodies FILE --rate 300 --duration 10
    python loadgen.py max   --url URL --key KEY --bodies FILE --connections 4 --duration 5
    python loadgen.py usage --url URL/api/v1/usage --key KEY --usage FILE --rate 1000 --batch 20 --duration 12

`--bodies` is a JSON list of request bodies, sent round robin (GET when the list is empty).
`usage` sends fresh usage batches at `--rate` events/s (see `usage_batches`); `--usage` is a JSON
object: `flow` (model ids), `roles`, and optionally `trip` (model ids whose cooldowns are tripped
and cleared `--trips` times a second with retryable failures, then a success).
Prints one JSON object: requests, errors, statuses, rate achieved and latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from queue import Empty, SimpleQueue
from urllib.parse import urlsplit


def prepared(url: str, key: str, bodies: list, keepalive: bool = False) -> tuple[tuple[str, int], list[bytes]]:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    connection = "keep-alive" if keepalive else "close"
    head = f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\nConnection: {connection}\r\n"
    if not bodies:
        return (host, port), [f"GET {parts.path} HTTP/1.1\r\n{head}\r\n".encode()]
    return (host, port), [post(parts.path, head, body) for body in bodies]


def post(path: str, head: str, body) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\n{head}Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


def send(address: tuple[str, int], request: bytes) -> tuple[float, int]:
    """(seconds from connect to the last byte, HTTP status); status 0 for a transport error."""
    start = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        response = b"".join(chunks)
        status = int(response[9:12]) if response.startswith(b"HTTP/1.") else 0
    except OSError:
        status = 0
    return time.perf_counter() - start, status


class Connection:
    """One kept-alive connection: reads each answer by its Content-Length, reconnects when the
    server closes (the sync worker closes after every answer; gthread after its keepalive)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        self.connects = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _exchange(self, request: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
        self.sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed before the answer")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").lower().split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines if line.startswith("content-length:")), None)
        closing = any(line.startswith("connection:") and "close" in line for line in lines) or length is None
        if length is None:  # no length: the body ends when the server closes
            while chunk := self.sock.recv(65536):
                body += chunk
        else:
            while len(body) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed inside the answer")
                body += chunk
        if closing:
            self.close()
        return int(lines[0][9:12]) if lines[0].startswith("http/1.") else 0

    def send(self, request: bytes) -> tuple[float, int]:
        """(seconds from sending (or connecting) to the answer's last byte, HTTP status); 0 for a
        transport error. A kept connection the server closed meanwhile is reopened once."""
        start = time.perf_counter()
        reused = self.sock is not None
        try:
            try:
                status = self._exchange(request)
            except OSError:
                self.close()
                if not reused:
                    raise
                start = time.perf_counter()
                status = self._exchange(request)
        except OSError:
            self.close()
            status = 0
        return time.perf_counter() - start, status


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def summary(latencies: list[float], statuses: dict[int, int], elapsed: float, late: int = 0) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "requests": len(ms),
        "ok": ok,
        "errors": len(ms) - ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "elapsed_s": round(elapsed, 3),
        "rate_rps": round(len(ms) / elapsed, 1) if elapsed else 0,
        "late_starts": late,
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 3) if ms else None,
    }


def fixed_rate(
    address,
    requests: list[bytes] | Callable[[int], bytes],
    rate: float,
    duration: float,
    senders: int = 8,
    keepalive: bool = False,
) -> dict:
    """Open loop: request i is due at start + i / rate, whatever the previous ones are doing.
    `requests` is a list sent round robin, or a function making request i when it is due."""
    due: SimpleQueue = SimpleQueue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    late = 0
    make = requests if callable(requests) else lambda i: requests[i % len(requests)]

    def sender() -> None:
        connection = Connection(address) if keepalive else None
        while True:
            try:
                item = due.get(timeout=1)
            except Empty:
                continue
            if item is None:
                if connection is not None:
                    connection.close()
                return
            seconds, status = connection.send(item) if connection is not None else send(address, item)
            with lock:
                latencies.append(seconds)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    for t in threads:
        t.start()
    total = int(rate * duration)
    start = time.perf_counter()
    for i in range(total):
        when = start + i / rate
        delay = when - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.001:
            late += 1
        due.put(make(i))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    return summary(latencies, statuses, time.perf_counter() - start, late)


def max_throughput(address, requests: list[bytes], connections: int, duration: float, keepalive: bool = False) -> dict:
    """Closed loop: each connection sends its next request as soon as the last one is answered."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + duration

    def worker(offset: int) -> None:
        mine, codes, i = [], {}, offset
        connection = Connection(address) if keepalive else None
        while time.perf_counter() < stop:
            request = requests[i % len(requests)]
            seconds, status = connection.send(request) if connection is not None else send(address, request)
            mine.append(seconds)
            codes[status] = codes.get(status, 0) + 1
            i += connections
        if connection is not None:
            connection.close()
        with lock:
            latencies.extend(mine)
            for k, v in codes.items():
                statuses[k] = statuses.get(k, 0) + v

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(latencies, statuses, time.perf_counter() - start)


RETRYABLE = ("rate_limited", "provider_error", "timeout")


def usage_batches(
    url: str, key: str, plan: dict, batch: int, batches_per_second: float, trips_per_second: float
) -> tuple[Callable[[int], bytes], dict]:
    """Batch i of usage events, made when it is due (fresh request ids, `occurred_at` now).

    Every event is a success of a `flow` model, except: trips_per_second times a second (in the
    batches due then: one every few batches, or several in one) three retryable failures of the
    next `trip` model (a cooldown trips at LLMHIVE_COOLDOWN_FAILURES=3), each with a success of
    the model tripped `clear_after` seconds earlier (past its cooldown, half-open: the success
    closes it)."""
    parts = urlsplit(url)
    head = f"Host: {parts.hostname}:{parts.port or 80}\r\nAuthorization: Bearer {key}\r\nConnection: keep-alive\r\n"
    flow, roles, trip = plan["flow"], plan["roles"], plan.get("trip") or []
    clear_after = float(plan.get("clear_after", 1.2))
    per_batch = trips_per_second / batches_per_second if trip else 0.0
    lag = round(clear_after * trips_per_second)
    run = uuid.uuid4().hex[:12]
    rng = random.Random(12)
    counts = {"events": 0, "failures": 0, "trips": 0, "clears": 0}
    serial = itertools.count()

    def event(model: str, error: str = "") -> dict:
        n = next(serial)
        prompt = rng.randint(200, 4000)
        out = {
            "request_id": f"churn-{run}-{n}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "model": model,
            "role": roles[n % len(roles)],
            "strategy": "single",
            "prompt_tokens": prompt,
            "completion_tokens": rng.randint(50, 800),
            "success": not error,
            "latency_ms": rng.randint(300, 4000),
        }
        if error:
            out["error"] = error
        return out

    def make(i: int) -> bytes:
        events = []
        for k in range(math.floor(i * per_batch + 1e-9), math.floor((i + 1) * per_batch + 1e-9)):
            events += [event(trip[k % len(trip)], RETRYABLE[(k + j) % 3]) for j in range(3)]
            counts["failures"] += 3
            counts["trips"] += 1
            if k >= lag:
                events.append(event(trip[(k - lag) % len(trip)]))
                counts["clears"] += 1
        events += [event(rng.choice(flow)) for _ in range(batch - len(events))]
        counts["events"] += len(events)
        return post(parts.path, head, {"events": events})

    return make, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["rate", "max", "usage"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--bodies", help="a JSON file with a list of request bodies; none for GET")
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--keepalive", action="store_true", help="keep connections open (HTTP/1.1 keep-alive)")
    parser.add_argument("--usage", help="usage mode: a JSON file with flow, roles and trip model lists")
    parser.add_argument("--batch", type=int, default=20, help="usage mode: events per batch")
    parser.add_argument("--trips", type=float, default=10, help="usage mode: cooldown trips per second")
    parser.add_argument(
        "--nice", type=int, default=0, help="change this process's CPU priority by this much (negative: root only)"
    )
    args = parser.parse_args()
    if args.nice:
        try:
            os.nice(args.nice)
        except PermissionError:
            pass  # (its figures then carry its own waits for a core, as before)
    if args.mode == "usage":
        with open(args.usage) as handle:
            plan = json.load(handle)
        per_second = args.rate / args.batch
        make, counts = usage_batches(args.url, args.key, plan, args.batch, per_second, args.trips)
        address, _ = prepared(args.url, args.key, [])
        result = fixed_rate(address, make, per_second, args.duration, senders=8, keepalive=True)
        result.update(counts, events_per_s=round(counts["events"] / result["elapsed_s"], 1))
        print(json.dumps(result))
        return
    bodies = []
    if args.bodies:
        with open(args.bodies) as handle:
            bodies = json.load(handle)
    address, requests = prepared(args.url, args.key, bodies, args.keepalive)
    if args.warmup:
        max_throughput(address, requests, 2, args.warmup, args.keepalive)
    if args.mode == "rate":
        result = fixed_rate(address, requests, args.rate, args.duration, keepalive=args.keepalive)
    else:
        result = max_throughput(address, requests, args.connections, args.duration, args.keepalive)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
