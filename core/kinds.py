"""The kinds of alert, registered by the apps that raise them.

Core stores alerts but owns no kind: each app declares its kinds as `TextChoices` and registers
them in its `AppConfig.ready()`, so the admin, the API and the dashboard can name every kind
while core imports none of the apps.
"""

from __future__ import annotations

from django.db import models

_KINDS: dict[str, str] = {}


def register_kinds(kinds: type[models.TextChoices]) -> None:
    for value, label in kinds.choices:
        if _KINDS.get(value, label) != label:
            raise ValueError(f"alert kind {value!r} is registered twice, as {_KINDS[value]!r} and {label!r}")
        _KINDS[value] = label


def alert_kinds() -> list[tuple[str, str]]:
    """The registered kinds as choices, by label (the Alert.kind field's choices)."""
    return sorted(_KINDS.items(), key=lambda item: item[1])


def alert_kind_label(kind: str) -> str:
    return _KINDS.get(kind) or kind.replace("_", " ").capitalize()
