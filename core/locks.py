"""A named lock that works on PostgreSQL and SQLite alike: a row claimed by a conditional UPDATE.

A holder that died (a worker killed mid-run, a machine lost) must not block the lock until a
person notices. The lock records who holds it (`host`, `pid`) and until when (`locked_until`,
pushed ahead by the holder's heartbeat, `HeldLock.refresh()`). A holder is dead when:

- it runs on this host (same host name) and its process no longer exists (recognised at once
  after a SIGKILL; a process id reused within that time would pass for the holder, a risk the
  expiry below bounds), or
- its lock expired: no heartbeat for `ttl_seconds`, wherever it runs.

A claim over a dead holder says whom it displaced and why (`HeldLock.displaced`,
`HeldLock.displaced_because`), so the caller can record what that holder left unfinished.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError
from django.utils import timezone

from core.models import Lock

HOST = socket.gethostname()[:255]


class LockBusy(Exception):
    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"the {name} lock is held by {holder or 'another run'}")
        self.holder = holder


@dataclass
class HeldLock:
    name: str
    holder: str
    ttl_seconds: int
    # The dead holder this claim took the lock from, and how it was found dead ("" if none).
    displaced: str = ""
    displaced_because: str = ""
    # The heartbeat writes at most this often.
    refresh_every: float = 5.0
    _refreshed: float = 0.0

    def refresh(self, *, force: bool = False) -> None:
        """The heartbeat: push the lock's expiry `ttl_seconds` ahead (at most every few seconds)."""
        now = time.monotonic()
        if force or now - self._refreshed >= self.refresh_every:
            Lock.objects.filter(name=self.name, holder=self.holder).update(
                locked_until=timezone.now() + timedelta(seconds=self.ttl_seconds)
            )
            self._refreshed = now


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def dead_because(lock: Lock, now) -> str:
    """Why the lock's holder is dead, or "" while it may be alive."""
    if lock.locked_until < now:
        return f"its lock expired at {lock.locked_until.isoformat(timespec='seconds')} without a heartbeat"
    if lock.host == HOST and lock.pid and lock.pid != os.getpid() and not process_exists(lock.pid):
        return f"its process (pid {lock.pid} on {lock.host}) no longer exists"
    return ""


@contextmanager
def hold_lock(name: str, *, holder: str, ttl_seconds: int) -> Iterator[HeldLock]:
    """Hold `name` for the block, or raise LockBusy at once if a live holder has it.

    It must be taken outside any transaction, so that other processes see the claim.
    """
    now = timezone.now()
    if not Lock.objects.filter(name=name).exists():
        try:
            Lock.objects.create(name=name, locked_until=now - timedelta(seconds=1))
        except IntegrityError:
            pass  # another process created it first; the UPDATE below decides who holds it
    current = Lock.objects.get(name=name)
    because = dead_because(current, now) if current.holder else ""
    if current.holder and not because:
        raise LockBusy(name, current.holder)
    # Compare and swap: only if nobody claimed it since we looked.
    claimed = Lock.objects.filter(name=name, holder=current.holder, locked_until=current.locked_until).update(
        locked_until=now + timedelta(seconds=ttl_seconds), holder=holder, host=HOST, pid=os.getpid()
    )
    if not claimed:
        raise LockBusy(name, Lock.objects.filter(name=name).values_list("holder", flat=True).first() or "")
    held = HeldLock(name, holder, ttl_seconds, displaced=current.holder if because else "", displaced_because=because)
    held._refreshed = time.monotonic()
    try:
        yield held
    finally:
        Lock.objects.filter(name=name, holder=holder).update(locked_until=timezone.now(), holder="", host="", pid=None)
