"""django-q2 entry point for the hourly reconciliation with OpenRouter's generation records."""

from __future__ import annotations

import logging

from core.locks import LockBusy
from costs.reconcile import ReconcileError, reconcile

logger = logging.getLogger(__name__)


def reconcile_costs_task() -> str:
    """One line for the task's result. No key, a refused key or another run in progress is an
    outcome the line says (and the log), not a task failure to retry."""
    try:
        return reconcile().summary()
    except ReconcileError as exc:
        logger.warning("cost reconciliation skipped: %s", exc)
        return f"cost reconciliation skipped: {exc}"
    except LockBusy as exc:
        return f"cost reconciliation skipped: {exc}"
