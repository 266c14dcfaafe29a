"""A smoke test of README's run command, `bin/run`, as a real process tree: it starts with no
network, prints an admin login, serves the admin and the API with a django-q2 worker beside
it, and stops cleanly on SIGTERM; a second start reuses the login.

It needs no test database, SQLite or PostgreSQL: `bin/run` gets a SQLite file of its own in a
temporary folder (DATABASE_URL is overridden for the subprocess, whatever the suite runs on).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PROC = Path("/proc")

pytestmark = pytest.mark.skipif(
    not (PROC / "self" / "stat").exists(), reason="reads the process table from /proc (Linux)"
)

LOGIN = re.compile(r"\((admin login(?: created)?): user (\S+), password ([\w-]+)\)")
WORKER = re.compile(r"django-q2 qcluster \(pid (\d+), log (.+)\)")


def processes_in_session(sid: int) -> dict[int, str]:
    """pid -> command line of the live (not zombie) processes of a session."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state != "Z":
            found[int(entry.name)] = cmdline
    return found


class RunCommand:
    """`bin/run` in a session of its own, its output collected as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bin/run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.output)
            if match:
                return match
            assert self.process.poll() is None, f"bin/run exited with {self.process.returncode}:\n{self.output}"
            time.sleep(0.1)
        raise AssertionError(f"bin/run did not print {pattern.pattern!r} within {timeout} s:\n{self.output}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the process group, as a supervisor or Ctrl-C does; returns the exit status."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(5)
        return returncode

    def kill_everything(self) -> None:
        """Clean-up after a failed test: nothing of ours is left running."""
        for pid in processes_in_session(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def wait_until_served(url: str, run: RunCommand, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        assert run.process.poll() is None, f"bin/run exited with {run.process.returncode}:\n{run.output}"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answered {url} within {timeout} s:\n{run.output}") from None
            time.sleep(0.2)


def log_in(base_url: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        page = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return client.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"},
            headers={"Referer": f"{base_url}/admin/login/"},
        )


def start_and_check(env: dict[str, str]) -> tuple[str, str, str]:
    """Start bin/run, check it serves with a worker beside it, stop it, check nothing is left.
    Returns (what the login line says, username, password)."""
    run = RunCommand(env)
    base_url = f"http://127.0.0.1:{env['PORT']}"
    try:
        said, username, password = run.wait_for(LOGIN, timeout=45).groups()
        worker_pid, worker_log = run.wait_for(WORKER, timeout=5).groups()
        worker_pid = int(worker_pid)
        assert "database ready (sqlite)" in run.lines, run.output
        assert any(line.startswith("catalog sync failed (OpenRouter unreachable?)") for line in run.lines), run.output

        login_page = wait_until_served(f"{base_url}/admin/login/", run, timeout=20)
        assert login_page.status_code == 200
        assert 'name="username"' in login_page.text
        signed_in = log_in(base_url, username, password)
        assert signed_in.status_code == 302 and signed_in.headers["location"] == "/admin/", (
            "the printed login does not work"
        )

        health = httpx.get(f"{base_url}/api/v1/health", timeout=10)
        assert health.headers["content-type"].startswith("application/json")
        body = health.json()
        assert body["checks"]["database"] == {"status": "ok", "vendor": "sqlite"}
        assert body["checks"]["catalog"]["last_run"]["status"] == "failed"

        # the web server and a qcluster beside it, both children of bin/run
        running = processes_in_session(run.process.pid)
        assert "qcluster" in running.get(worker_pid, ""), running
        web = [pid for pid, cmd in running.items() if f"runserver 127.0.0.1:{env['PORT']}" in cmd]
        assert len(web) == 1, running
        assert Path(worker_log) == Path(env["LLMHIVE_VAR_DIR"]) / "qcluster.log"
        deadline = time.monotonic() + 20
        while " running." not in Path(worker_log).read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert " running." in Path(worker_log).read_text(), Path(worker_log).read_text()
        # /health sees the worker (django-q2's cluster statistics in the shared cache).
        while time.monotonic() < deadline:
            queue = httpx.get(f"{base_url}/api/v1/health", timeout=10).json()["checks"]["task_queue"]
            if queue["status"] == "ok":
                break
            time.sleep(0.3)
        assert queue["status"] == "ok" and queue["workers"] >= 1, queue
    except BaseException:
        run.kill_everything()
        raise

    started = time.monotonic()
    try:
        returncode = run.stop()
    except subprocess.TimeoutExpired:
        left = processes_in_session(run.process.pid)
        run.kill_everything()
        raise AssertionError(f"bin/run did not stop within 30 s of a SIGTERM; still running: {left}") from None
    assert time.monotonic() - started < 25
    assert returncode == 128 + signal.SIGTERM, run.output  # its trap stopped the worker, then it exited
    # neither the web server nor any process of the worker is left
    assert processes_in_session(run.process.pid) == {}, "bin/run left processes behind"
    assert "has stopped." in Path(worker_log).read_text()  # the cluster shut down, it was not killed
    return said, username, password


def test_bin_run_starts_serves_and_stops_and_a_second_start_reuses_the_login(tmp_path):
    database = tmp_path / "db.sqlite3"
    closed_port = free_port()  # nothing listens there: OpenRouter is unreachable
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",  # four slashes: an absolute path
        "LLMHIVE_VAR_DIR": str(tmp_path / "var"),
        "PORT": str(free_port()),
        "OPENROUTER_BASE_URL": f"http://127.0.0.1:{closed_port}/api/v1",
        "OPENROUTER_API_KEY": "",
        "LLMHIVE_REDIS_URL": "",
        "DEBUG": "true",
    }

    said, username, password = start_and_check(env)

    assert said == "admin login created" and username == "admin" and password
    # the failed sync is an alert in that database
    with sqlite3.connect(database) as db:
        alerts = db.execute(
            "SELECT message FROM catalog_catalogalert WHERE kind = 'sync_failed' AND acknowledged_at IS NULL"
        ).fetchall()
        runs = db.execute("SELECT kind, status FROM catalog_syncrun ORDER BY id").fetchall()
    assert len(alerts) == 1 and "cannot reach OpenRouter" in alerts[0][0]
    assert runs[0] == ("sync", "failed")

    env["PORT"] = str(free_port())
    said_again, username_again, password_again = start_and_check(env)

    assert said_again == "admin login"  # not created again
    assert (username_again, password_again) == (username, password)


def test_bin_run_help_prints_only_the_usage_and_runs_nothing(tmp_path):
    env = {**os.environ, "LLMHIVE_VAR_DIR": str(tmp_path / "var"), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    done = subprocess.run(["bin/run", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=10)

    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "Usage: bin/run [--from-file PATH]"
    assert not any(line.startswith("#") or "set -euo" in line for line in lines), done.stdout  # no script text
    assert "PORT=9000 bin/run" in done.stdout and "admin-login.txt" in done.stdout
    assert not (tmp_path / "db.sqlite3").exists() and not (tmp_path / "var").exists()


def test_bin_run_on_a_port_in_use_stops_before_touching_anything(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    worker_log = var_dir / "qcluster.log"
    worker_log.write_text("the running worker's log\n")
    database = tmp_path / "db.sqlite3"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{database}",
            "LLMHIVE_VAR_DIR": str(var_dir),
            "PORT": str(port),
            "OPENROUTER_BASE_URL": f"http://127.0.0.1:{free_port()}/api/v1",
        }
        done = subprocess.run(["bin/run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)

    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"run: port {port} is already in use (another bin/run?); stop it or pick another: PORT=9000 bin/run"
    ]
    assert worker_log.read_text() == "the running worker's log\n"  # not truncated
    assert not database.exists()  # no migration ran


def test_bin_run_refuses_a_port_that_is_not_a_number(tmp_path):
    env = {**os.environ, "PORT": "80a", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    done = subprocess.run(["bin/run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=10)

    assert done.returncode == 2
    assert done.stderr.strip() == "run: PORT must be a number from 1 to 65535, not '80a'"
    assert not (tmp_path / "db.sqlite3").exists()
