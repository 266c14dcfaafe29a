"""Real processes for tests and benchmarks: gunicorn serving the project on the test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """DATABASE_URL of the database the tests are using (the test database, not the real one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    auth = f"{user}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmhive_site.settings",
        "DATABASE_URL": database_url(),
        "DEBUG": "false",
        "LLMHIVE_HTTPS": "false",  # plain HTTP on loopback
        "LLMHIVE_LOG_LEVEL": "WARNING",
        "SECRET_KEY": "test-secret-key-for-servers-started-by-the-tests-0123456789",
        **extra,
    }


class Served(str):
    """The base URL, with the gunicorn master's pid."""

    pid: int
    log: typing.BinaryIO

    def output(self) -> str:
        """What the server has written to stdout and stderr so far (tracebacks of 500s...)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []


def peak_rss_mb(pid: int) -> float:
    """The highest resident memory the process has had (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def gunicorn(
    workers: int = 2,
    threads: int | None = None,
    *,
    options: typing.Sequence[str] = (),
    app: str = "llmhive_site.wsgi",
    **env: str,
) -> Iterator[Served]:
    """Serve the project as README's deployment section says (gunicorn.conf.py's worker class and
    threads, unless `threads` is given); yields the base URL. `options` are more gunicorn
    command-line options (`--worker-class`, `--keep-alive`...), for benchmarks."""
    port = free_port()
    # Its output goes to a file, not a pipe: nobody reads a pipe while the server runs, and once
    # its 64 KB are full (a warning per 4xx answer fills it in a few thousand requests) every
    # worker blocks on its next log line.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            app,
            "-w",
            str(workers),
            *(["--threads", str(threads)] if threads is not None else []),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--timeout",
            "120",
            *options,
        ],
        cwd=ROOT,
        env=project_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = Served(f"http://127.0.0.1:{port}")
    base_url.pid = process.pid
    base_url.log = log
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {base_url.output()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/api/v1/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer within 60 s")
            time.sleep(0.2)
        yield base_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def metric_samples(base: str, key: str) -> list:
    """Every sample a server's GET /metrics gives now (its workers' figures, summed)."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(f"{base}/api/v1/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return [sample for family in text_string_to_metric_families(answer.text) for sample in family.samples]


def snapshots_built(base: str, key: str) -> int:
    """How many of a server's workers hold a routing snapshot: those that counted their first
    build (llmhive_snapshot_rebuild_seconds{change="first"})."""
    return round(
        sum(
            sample.value
            for sample in metric_samples(base, key)
            if sample.name == "llmhive_snapshot_rebuild_seconds_count" and sample.labels.get("change") == "first"
        )
    )


def wait_for(condition, seconds: float = 2.0, what: str = "the condition", poll: float = 0.01):
    """condition()'s first true value, asked every `poll` seconds; an AssertionError naming `what`
    after `seconds`."""
    ends = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= ends:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)
