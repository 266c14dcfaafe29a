"""A load generator that runs in its own process, so the server's figures are not the client's.

Plain sockets and prepared request bytes keep the client's own cost per request small (tens of
microseconds). Each request opens a connection and sends `Connection: close`, which is what
gunicorn's sync workers do anyway.

    python loadgen.py rate --url URL --key KEY --bodies FILE --rate 300 --duration 10
    python loadgen.py max  --url URL --key KEY --bodies FILE --connections 4 --duration 5

`--bodies` is a JSON list of request bodies, sent round robin (GET when the list is empty).
Prints one JSON object: requests, errors, statuses, rate achieved and latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from queue import Empty, SimpleQueue
from urllib.parse import urlsplit


def prepared(url: str, key: str, bodies: list) -> tuple[tuple[str, int], list[bytes]]:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    head = f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n"
    if not bodies:
        return (host, port), [f"GET {parts.path} HTTP/1.1\r\n{head}\r\n".encode()]
    requests = []
    for body in bodies:
        data = json.dumps(body).encode()
        requests.append(
            f"POST {parts.path} HTTP/1.1\r\n{head}Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
    return (host, port), requests


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


def fixed_rate(address, requests: list[bytes], rate: float, duration: float, senders: int = 8) -> dict:
    """Open loop: request i is due at start + i / rate, whatever the previous ones are doing."""
    due: SimpleQueue = SimpleQueue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    late = 0

    def sender() -> None:
        while True:
            try:
                item = due.get(timeout=1)
            except Empty:
                continue
            if item is None:
                return
            seconds, status = send(address, item)
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
        due.put(requests[i % len(requests)])
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    return summary(latencies, statuses, time.perf_counter() - start, late)


def max_throughput(address, requests: list[bytes], connections: int, duration: float) -> dict:
    """Closed loop: each connection sends its next request as soon as the last one is answered."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + duration

    def worker(offset: int) -> None:
        mine, codes, i = [], {}, offset
        while time.perf_counter() < stop:
            seconds, status = send(address, requests[i % len(requests)])
            mine.append(seconds)
            codes[status] = codes.get(status, 0) + 1
            i += connections
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["rate", "max"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--bodies", help="a JSON file with a list of request bodies; none for GET")
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    args = parser.parse_args()
    bodies = []
    if args.bodies:
        with open(args.bodies) as handle:
            bodies = json.load(handle)
    address, requests = prepared(args.url, args.key, bodies)
    if args.warmup:
        max_throughput(address, requests, 2, args.warmup)
    if args.mode == "rate":
        result = fixed_rate(address, requests, args.rate, args.duration)
    else:
        result = max_throughput(address, requests, args.connections, args.duration)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
