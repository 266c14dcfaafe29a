"""A gunicorn worker SIGKILLed while it stores a 1,000-event usage batch: the ledger holds all of
the batch or none of it, and the client's retry of the same batch (same request_ids) leaves each
event stored exactly once.

The worker is killed at two moments: inside the batch's transaction (nothing may remain) and
just after its commit, before it answers (everything must remain; the client never hears of it).
To kill at a known moment, the test holds locks from a connection of its own: the day's rollup
row (the batch's events are inserted, then its rollup update waits inside the transaction), or
the alerts table (the batch is committed, then the alert about the unknown model one of its
events names waits). pg_stat_activity shows the waiting backend; the worker owning that database
connection is killed, then the lock is let go. The data versions the batch moved are committed
with it, so the other workers see it whatever becomes of the one that stored it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import connection
from django.db.models import Sum

from core.models import Alert, DataVersion
from costs.models import DailyCost, UsageEvent
from tests.factories import ApiKeyFactory, CatalogModelFactory
from tests.servers import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 1_000
ROUNDS = ("in_transaction", "after_commit", "in_transaction", "after_commit")


def batch(prefix: str) -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "events": [
            {
                "request_id": f"{prefix}-{i:04d}",
                "occurred_at": now,
                # One event names a model the catalog lacks: its alert is raised after the commit.
                "model": f"acme/unknown-{prefix}" if i == BATCH - 1 else "acme/first",
                "role": "coder",
                "prompt_tokens": 100 + i,
                "completion_tokens": 10,
                "success": i % 7 != 0,
            }
            for i in range(BATCH)
        ]
    }


def worker_owning(base, client_port: int) -> int | None:
    """The gunicorn worker whose socket has `client_port` as its local port (its database connection)."""
    for pid in base.worker_pids():
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == client_port and fields[9] in inodes:
                    return pid
    return None


def backend_waiting_on_a_lock(deadline: float) -> int | None:
    """The client port of a server backend waiting for a lock (a row the test holds)."""
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT client_port FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            row = cursor.fetchone()
            if row:
                return row[0]
            time.sleep(0.005)
    return None


def hold(model, *, table: bool = False) -> psycopg.Connection:
    """A second connection holding every row of `model` locked (or, with `table`, its whole table,
    against reads too), until it is rolled back."""
    db = connection.settings_dict
    holder = psycopg.connect(
        host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432, user=db.get("USER"), dbname=db["NAME"]
    )
    name = model._meta.db_table
    holder.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE' if table else f'SELECT 1 FROM "{name}" FOR UPDATE')
    return holder


def send_with_retries(url: str, auth: dict, body: dict) -> list[str]:
    """What a client that retries transport errors and 5xx saw, try by try, ending with the body of the 200."""
    seen: list[str] = []
    with httpx.Client(timeout=30, headers=auth) as client:
        for _ in range(8):
            try:
                r = client.post(url, json=body)
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
                time.sleep(0.2)
                continue
            if r.status_code < 500:
                seen.append(f"{r.status_code} {r.text}")
                return seen
            seen.append(str(r.status_code))
            time.sleep(0.2)
    return seen


def test_a_worker_killed_during_a_batch_stores_all_or_none_and_the_retry_stores_each_event_once(capsys):
    if connection.vendor != "postgresql":
        pytest.skip("the kill is timed on PostgreSQL's pg_stat_activity (set DATABASE_URL)")
    CatalogModelFactory(id="acme/first", price_prompt="0.000001", price_completion="0.000002")
    key = ApiKeyFactory(name="killed", scopes=["usage:write"]).raw_key
    auth = {"Authorization": f"Bearer {key}"}
    figures = []

    with gunicorn(workers=2) as base:
        url = f"{base}/api/v1/usage"
        # The day's rollup row exists (the lock of the in-transaction rounds is taken on it).
        warm = send_with_retries(url, auth, {"events": batch("warm")["events"][:1]})
        assert warm[-1].startswith("200 "), warm
        for n, moment in enumerate(ROUNDS):
            prefix = f"kill{n}"
            mine = UsageEvent.objects.filter(request_id__startswith=f"{prefix}-")
            body = batch(prefix)
            first: list[str] = []
            sender = threading.Thread(target=first_try, args=(url, auth, body, first))
            holder = hold(DailyCost) if moment == "in_transaction" else hold(Alert, table=True)
            versions = DataVersion.current()
            sender.start()
            port = backend_waiting_on_a_lock(time.monotonic() + 20)
            assert port is not None, "the batch never waited on the test's lock"
            pid = worker_owning(base, port)
            assert pid is not None, f"no worker owns the database connection from port {port}"
            committed = mine.count()
            os.kill(pid, signal.SIGKILL)
            holder.rollback()
            holder.close()
            sender.join()
            time.sleep(0.2)  # PostgreSQL sees the dead connection and rolls back its transaction
            stored_after_kill = mine.count()
            tries = send_with_retries(url, auth, body)
            figures.append((moment, pid, first, stored_after_kill, tries, mine.count()))
            assert stored_after_kill in (0, BATCH), (moment, stored_after_kill)
            if moment == "in_transaction":
                assert stored_after_kill == 0
            else:
                assert committed == stored_after_kill == BATCH
                # The versions moved with the rows: the other workers take the batch in, though
                # the worker that stored it died before doing anything more.
                moved = DataVersion.current()
                assert all(moved[name] != versions[name] for name in ("spend", "stats")), (versions, moved)
            assert tries[-1].startswith("200 "), tries
            assert mine.count() == BATCH

    with capsys.disabled():
        print(f"\nSIGKILL of a gunicorn worker during a {BATCH}-event POST /usage, {len(ROUNDS)} rounds:")
        for moment, pid, first, stored, tries, final in figures:
            print(
                f"  killed {moment:14} (worker {pid}): the client saw {first[0][:40]!r}; "
                f"stored after the kill: {stored}; retry: {[t[:80] for t in tries]}; finally stored: {final}"
            )
    # The request_id is unique in the ledger, so the count is the proof of "exactly once"; the
    # daily rollup moved with the ledger, not once per try.
    assert UsageEvent.objects.count() == BATCH * len(ROUNDS) + 1  # and the warm-up event
    assert DailyCost.objects.aggregate(n=Sum("requests"))["n"] == BATCH * len(ROUNDS) + 1


def first_try(url: str, auth: dict, body: dict, seen: list[str]) -> None:
    """The first try alone (the retry is made after the kill has been looked at)."""
    with httpx.Client(timeout=30, headers=auth) as client:
        try:
            r = client.post(url, json=body)
        except httpx.TransportError as exc:
            seen.append(type(exc).__name__)
        else:
            seen.append(f"{r.status_code} {r.text}")
