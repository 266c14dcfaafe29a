"""Project-wide state that no single app owns."""

from __future__ import annotations

import secrets
import threading
import time

from django.conf import settings
from django.db import models
from django.utils import timezone


class DataVersion(models.Model):
    """A version per kind of data that in-process snapshots are built from.

    Whatever changes the catalog, the routing data, the learned stats or health bumps its counter
    (on save and delete, at the end of a sync, after an ingest). Each web worker compares the
    counters with those its snapshot was built from, at most every few hundred milliseconds, and
    rebuilds when they differ: between checks a routing decision touches no database.
    """

    CATALOG = "catalog"
    ROUTING = "routing"
    STATS = "stats"
    HEALTH = "health"
    SPEND = "spend"  # the ledger's rollups moved (budgets read them)
    BUDGETS = "budgets"

    name = models.CharField(max_length=32, primary_key=True)
    version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "data version"

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @classmethod
    def bump(cls, *names: str) -> None:
        # A random value rather than a counter: a bump rolled back and made again (a failed
        # transaction, a test) can never bring back a value a cache has already seen.
        now = timezone.now()
        for name in names:
            value = secrets.randbits(62)
            if not cls.objects.filter(name=name).update(version=value, changed_at=now):
                cls.objects.get_or_create(name=name, defaults={"version": value, "changed_at": now})
        version_watch.expire()  # this process sees its own change at once

    @classmethod
    def current(cls) -> dict[str, int]:
        return dict(cls.objects.values_list("name", "version"))


class VersionWatch:
    """What this process knows of the data versions, re-read at most every `interval` seconds.

    Every in-process cache (the routing snapshot, the API key cache) asks `versions()`; the one
    query it costs is shared by all of them and made at most once per interval, so a change made
    anywhere is seen by every worker within that interval and a request between checks makes
    no query.
    """

    def __init__(self, interval: float | None = None) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._versions: dict[str, int] | None = None
        self._checked_at = 0.0

    @property
    def interval(self) -> float:
        if self._interval is not None:
            return self._interval
        return getattr(settings, "LLMHIVE_SNAPSHOT_CHECK_SECONDS", 0.5)

    def versions(self) -> dict[str, int]:
        now = time.monotonic()
        if self._versions is None or now - self._checked_at >= self.interval:
            with self._lock:
                if self._versions is None or now - self._checked_at >= self.interval:
                    self._versions = DataVersion.current()
                    self._checked_at = time.monotonic()
        return self._versions

    def expire(self) -> None:
        """Check again on the next call (after a change made in this process)."""
        self._checked_at = 0.0


version_watch = VersionWatch()
