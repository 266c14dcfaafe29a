"""The per-process watch over the data versions (`core.models.DataVersion`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.conf import settings


class VersionWatch:
    """What this process knows of the data versions, re-read at most every `interval` seconds.

    Every in-process cache (the routing snapshot, the API key cache, the budget book) asks
    `versions()`; the one query it costs is shared by all of them and made at most once per
    interval, so a change made anywhere is seen by every worker within that interval and a
    request between checks makes no query.
    """

    def __init__(self, load: Callable[[], dict[str, int]], interval: float | None = None) -> None:
        self._load = load
        self._interval = interval
        self._lock = threading.Lock()
        self._versions: dict[str, int] | None = None
        self._checked_at = 0.0
        # Wall-clock time of the last successful read, for the snapshot's age in GET /metrics.
        self.loaded_at = 0.0

    @property
    def interval(self) -> float:
        if self._interval is not None:
            return self._interval
        return settings.LLMHIVE_SNAPSHOT_CHECK_SECONDS

    def versions(self) -> dict[str, int]:
        now = time.monotonic()
        if self._versions is None or now - self._checked_at >= self.interval:
            with self._lock:
                if self._versions is None or now - self._checked_at >= self.interval:
                    self._versions = self._load()
                    self._checked_at = time.monotonic()
                    self.loaded_at = time.time()
        return self._versions

    def expire(self) -> None:
        """Check again on the next call (after a change made in this process)."""
        self._checked_at = 0.0
