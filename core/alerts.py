"""Raising alerts without duplicates: an open alert with the same key is bumped, not repeated."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import F
from django.utils import timezone

from core.models import Alert


@dataclass
class NewAlert:
    kind: str
    message: str
    model_id: str | None = None
    details: dict = field(default_factory=dict)
    # What makes two alerts the same; defaults to kind + model.
    subject: str | None = None
    # Raise only if no alert with this key was ever raised (open or acknowledged): for states such
    # as "expires on 2026-02-01" that should be announced once, not after every sync.
    once: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject or self.model_id or ''}"


def raise_alerts(alerts: Iterable[NewAlert]) -> dict[str, int]:
    """Create new alerts and bump open ones with the same key, in a fixed number of queries.

    Returns {"created": n, "bumped": m}.
    """
    by_key: dict[str, NewAlert] = {}
    for alert in alerts:
        by_key[alert.key] = alert  # the last word on a key wins
    if not by_key:
        return {"created": 0, "bumped": 0}

    keys = list(by_key)
    now = timezone.now()
    open_alerts = {a.key: a for a in Alert.objects.open().filter(key__in=keys)}
    once_keys = [k for k, a in by_key.items() if a.once]
    ever_raised = set(Alert.objects.filter(key__in=once_keys).values_list("key", flat=True)) if once_keys else set()

    to_create = [
        Alert(
            kind=a.kind,
            model_id=a.model_id,
            key=key,
            message=a.message,
            details=a.details,
            created_at=now,
            last_raised_at=now,
        )
        for key, a in by_key.items()
        if key not in open_alerts and key not in ever_raised
    ]
    # ignore_conflicts: if another process raised the same alert a moment ago, theirs stands.
    Alert.objects.bulk_create(to_create, ignore_conflicts=True)

    to_bump, reworded = [], []
    for key, existing in open_alerts.items():
        new = by_key[key]
        if new.once:
            continue
        to_bump.append(existing.pk)
        if (existing.message, existing.details) != (new.message, new.details):
            existing.message, existing.details = new.message, new.details
            reworded.append(existing)
    if reworded:
        Alert.objects.bulk_update(reworded, ["message", "details"])
    if to_bump:
        # A repeat that says the same thing (a model reported in every batch) costs one statement.
        Alert.objects.filter(pk__in=to_bump).update(times=F("times") + 1, last_raised_at=now)
    return {"created": len(to_create), "bumped": len(to_bump)}
