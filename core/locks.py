"""A named lock that works on PostgreSQL and SQLite alike: a row claimed by a conditional UPDATE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError
from django.utils import timezone

from core.models import Lock


class LockBusy(Exception):
    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"the {name} lock is held by {holder or 'another run'}")
        self.holder = holder


@contextmanager
def hold_lock(name: str, *, holder: str, ttl_seconds: int) -> Iterator[None]:
    """Hold `name` for the block, or raise LockBusy at once.

    The lock expires after ttl_seconds so that a worker killed mid-run cannot block syncs forever.
    It must be taken outside any transaction, so that other processes see the claim.
    """
    now = timezone.now()
    if not Lock.objects.filter(name=name).exists():
        try:
            Lock.objects.create(name=name, locked_until=now - timedelta(seconds=1))
        except IntegrityError:
            pass  # another process created it first; the UPDATE below decides who holds it
    claimed = Lock.objects.filter(name=name, locked_until__lt=now).update(
        locked_until=now + timedelta(seconds=ttl_seconds), holder=holder
    )
    if not claimed:
        current = Lock.objects.filter(name=name).values_list("holder", flat=True).first() or ""
        raise LockBusy(name, current)
    try:
        yield
    finally:
        Lock.objects.filter(name=name, holder=holder).update(locked_until=timezone.now(), holder="")
