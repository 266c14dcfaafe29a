"""Reconciliation: each usage event's cost against OpenRouter's own record of its generation.

The orchestrator reports a call's `generation_id` (the `id` OpenRouter answered the completion
with) and, when it had one, OpenRouter's `usage.cost`; LLMHive computes a cost from the prices in
force. `reconcile()` asks `GET /generation?id=` for what OpenRouter billed (`total_cost`, the
provider's `upstream_inference_cost`) and its native token counts, and keeps one
`GenerationCheck` per event beside the ledger (which it never changes):

    matched    the ledger's cost (reported, else computed) is within the tolerance of OpenRouter's:
               LLMHIVE_RECONCILE_TOLERANCE_USD or LLMHIVE_RECONCILE_TOLERANCE_RELATIVE of the
               ledger's cost, whichever is larger
    drift      further apart, or the ledger has no cost at all
    pending    OpenRouter answered 404: it records a generation some seconds to minutes after
               it ends, so the event is asked again on the next run
    not_found  still 404 after LLMHIVE_RECONCILE_MAX_ATTEMPTS runs: settled
    error      an answer that could not be used; asked again like pending

A run picks the events with a generation id that are not settled (never checked, or pending /
error with attempts left), not older than LLMHIVE_RECONCILE_MAX_AGE_DAYS (or `since`), oldest
first, at most `limit` of them. It asks sequentially, one request at a time: a run is bounded,
runs hourly, and OpenRouter rate-limits per key, so concurrency would buy little and risk 429s
the live traffic shares. Results are written in batches (an upsert on the event), so a run that
stops midway keeps what it learnt and re-running never doubles a row; one run at a time holds
the `costs reconcile` lock (core.locks), a second one is refused at once.

How a run ends early: a refused key (401/403) stops it with `KeyRefused` (nothing more can be
learnt with that key); OpenRouter unreachable, rate-limiting or failing (after the client's own
retries) stops it quietly, the rest left for the next run; no key configured is `NotConfigured`
before anything is asked.

`drift_report()` is finance's view of the checks: per model and in total, over the events of a
window of UTC days.
"""

from __future__ import annotations

import csv
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Abs
from django.utils import timezone

from catalog.client import openrouter_client
from core.locks import hold_lock
from core.money import DECIMAL_PLACES, decimal_str
from costs.csvsafe import escape_cell
from costs.models import UNSETTLED_CHECKS, CheckStatus, GenerationCheck, UsageEvent, utc_midnight
from openrouter import OpenRouterAuthError, OpenRouterBadResponse, OpenRouterClient, OpenRouterError
from openrouter.types import Generation

logger = logging.getLogger(__name__)

LOCK_NAME = "costs reconcile"
# Checks written per transaction.
WRITE_BATCH = 100
MONEY_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)
# The fields a later attempt rewrites (the event and the first check's time stay).
UPDATED_FIELDS = [
    f.name
    for f in GenerationCheck._meta.concrete_fields
    if f.name not in ("id", "event", "first_checked_at", "generation_id")
]

Progress = Callable[[int, int], None]


class ReconcileError(Exception):
    """A run that cannot go on; `str()` is one readable line."""


class NotConfigured(ReconcileError):
    """No OpenRouter key: the generation endpoint needs one."""


class KeyRefused(ReconcileError):
    """OpenRouter answered 401/403: the key is wrong, revoked or lacks the right."""


@dataclass
class RunResult:
    """What one run did: events asked about, the checks written by status, and why it stopped
    early ("" when it went through its list)."""

    selected: int = 0
    asked: int = 0
    statuses: Counter = field(default_factory=Counter)
    stopped: str = ""

    def summary(self) -> str:
        parts = ", ".join(f"{self.statuses[s]} {s}" for s in CheckStatus.values if self.statuses[s])
        line = f"reconciled {self.asked} of {self.selected} events" + (f": {parts}" if parts else "")
        return line + (f"; stopped early: {self.stopped}" if self.stopped else "")


@dataclass(frozen=True)
class Tolerance:
    absolute: Decimal
    relative: Decimal

    @classmethod
    def from_settings(cls) -> Tolerance:
        return cls(
            Decimal(settings.LLMHIVE_RECONCILE_TOLERANCE_USD), Decimal(settings.LLMHIVE_RECONCILE_TOLERANCE_RELATIVE)
        )

    def allows(self, difference: Decimal, ledger: Decimal) -> bool:
        return abs(difference) <= max(self.absolute, self.relative * abs(ledger))


# --- Which events --------------------------------------------------------------------------------


def default_since(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.LLMHIVE_RECONCILE_MAX_AGE_DAYS)


def events_to_check(limit: int, since: datetime):
    """The unsettled events with a generation id since `since`, oldest first, at most `limit`."""
    unsettled = Q(generation_check__isnull=True) | Q(
        generation_check__status__in=UNSETTLED_CHECKS,
        generation_check__attempts__lt=settings.LLMHIVE_RECONCILE_MAX_ATTEMPTS,
    )
    return (
        UsageEvent.objects.exclude(generation_id="")
        .filter(unsettled, occurred_at__gte=since)
        .select_related("generation_check")
        .order_by("occurred_at", "id")[: max(0, limit)]
    )


# --- One event -----------------------------------------------------------------------------------


def ledger_cost(event: UsageEvent) -> Decimal | None:
    """What the ledger counts for the event: OpenRouter's reported cost, else the computed one."""
    return event.cost_usd if event.cost_usd is not None else event.computed_cost_usd


def _check_for(event: UsageEvent, now: datetime) -> GenerationCheck:
    """The event's check with this attempt counted (a new one for a first check)."""
    previous: GenerationCheck | None = getattr(event, "generation_check", None)
    return GenerationCheck(
        event=event,
        generation_id=event.generation_id,
        model=event.model_id or event.model_ref,
        first_checked_at=previous.first_checked_at if previous else now,
        checked_at=now,
        attempts=(previous.attempts if previous else 0) + 1,
        ledger_cost_usd=ledger_cost(event),
    )


def judge(check: GenerationCheck, generation: Generation, tolerance: Tolerance) -> GenerationCheck:
    """Fill `check` from OpenRouter's record: costs, native counts, difference and status."""
    check.provider_name = (generation.provider_name or "")[:200]
    check.openrouter_cost_usd = generation.total_cost
    check.upstream_cost_usd = generation.upstream_inference_cost
    check.native_prompt_tokens = generation.native_tokens_prompt
    check.native_completion_tokens = generation.native_tokens_completion
    check.native_reasoning_tokens = generation.native_tokens_reasoning
    check.native_cached_tokens = generation.native_tokens_cached
    if generation.total_cost is None:
        check.status = CheckStatus.ERROR
        check.last_error = "OpenRouter's record of the generation has no usable total_cost"
        return check
    ledger = check.ledger_cost_usd
    check.difference_usd = (generation.total_cost - (ledger or 0)).quantize(MONEY_QUANTUM)
    matched = ledger is not None and tolerance.allows(check.difference_usd, ledger)
    check.status = CheckStatus.MATCHED if matched else CheckStatus.DRIFT
    check.last_error = ""
    return check


def not_found(check: GenerationCheck, error: OpenRouterError) -> GenerationCheck:
    spent = check.attempts >= settings.LLMHIVE_RECONCILE_MAX_ATTEMPTS
    check.status = CheckStatus.NOT_FOUND if spent else CheckStatus.PENDING
    check.last_error = str(error)
    return check


def failed(check: GenerationCheck, error: Exception) -> GenerationCheck:
    check.status = CheckStatus.ERROR
    check.last_error = str(error)
    return check


def save_checks(checks: list[GenerationCheck]) -> None:
    """One upsert on the event: a check written twice is one row."""
    if not checks:
        return
    with transaction.atomic():
        GenerationCheck.objects.bulk_create(
            checks, update_conflicts=True, unique_fields=["event"], update_fields=UPDATED_FIELDS
        )


# --- A run ---------------------------------------------------------------------------------------


def reconcile(
    limit: int | None = None,
    since: datetime | None = None,
    *,
    progress: Progress | None = None,
) -> RunResult:
    """Check up to `limit` (LLMHIVE_RECONCILE_LIMIT) unsettled events since `since` (default
    LLMHIVE_RECONCILE_MAX_AGE_DAYS ago). Raises NotConfigured without a key, KeyRefused on a
    401/403 (after saving what was learnt), LockBusy while another run holds the lock."""
    if not settings.OPENROUTER_API_KEY:
        raise NotConfigured("no OpenRouter key is configured (OPENROUTER_API_KEY): nothing can be reconciled")
    limit = settings.LLMHIVE_RECONCILE_LIMIT if limit is None else limit
    since = since or default_since()
    tolerance = Tolerance.from_settings()
    result = RunResult()
    holder = f"reconcile run ({uuid.uuid4().hex[:8]})"
    ttl = max(300, int(2 * settings.LLMHIVE_OPENROUTER_DEADLINE))
    with hold_lock(LOCK_NAME, holder=holder, ttl_seconds=ttl) as lock:
        # Read after the lock: a run that just finished has settled its events.
        events = list(events_to_check(limit, since))
        result.selected = len(events)
        client = openrouter_client()
        batch: list[GenerationCheck] = []
        try:
            for done, event in enumerate(events, 1):
                lock.refresh()
                check = _ask(client, event, tolerance, result)
                if check is None:
                    break
                batch.append(check)
                result.asked += 1
                result.statuses[check.status] += 1
                if len(batch) >= WRITE_BATCH:
                    save_checks(batch)
                    batch = []
                if progress:
                    progress(done, result.selected)
        finally:
            save_checks(batch)
            client.close()
    logger.info("%s", result.summary())
    return result


def _ask(
    client: OpenRouterClient, event: UsageEvent, tolerance: Tolerance, result: RunResult
) -> GenerationCheck | None:
    """The event's check after asking OpenRouter, or None when the run must stop here (the
    reason in `result.stopped`). A refused key raises KeyRefused."""
    check = _check_for(event, timezone.now())
    try:
        generation = client.generation(event.generation_id)
    except OpenRouterAuthError as exc:
        raise KeyRefused(
            f"OpenRouter refused the key ({exc}); check OPENROUTER_API_KEY "
            f"({result.asked} events were checked before it stopped)"
        ) from None
    except OpenRouterBadResponse as exc:
        return not_found(check, exc) if exc.status_code == 404 else failed(check, exc)
    except ValueError as exc:  # an id of blanks: no request can name it
        return failed(check, exc)
    except OpenRouterError as exc:
        # Unreachable, rate-limited, failing (after the client's retries) or out of credits:
        # nothing is wrong with this event; the rest waits for the next run.
        result.stopped = f"{exc} ({result.selected - result.asked} events left for the next run)"
        return None
    return judge(check, generation, tolerance)


# --- The report ----------------------------------------------------------------------------------

COUNTED = ("matched", "drift", "pending", "not_found", "error")
REPORT_COLUMNS = [
    "model",
    "checked",
    *COUNTED,
    "ledger_cost_usd",
    "openrouter_cost_usd",
    "difference_usd",
]


def _figures(aggregates: dict) -> dict:
    row = {"checked": aggregates["checked"] or 0}
    row.update({status: aggregates[status] or 0 for status in COUNTED})
    for key in ("ledger_cost_usd", "openrouter_cost_usd", "difference_usd"):
        row[key] = (aggregates[key] or Decimal(0)).quantize(MONEY_QUANTUM)
    return row


_AGGREGATES = {
    "checked": Count("id"),
    **{status: Count("id", filter=Q(status=status)) for status in COUNTED},
    # Over the checks OpenRouter gave a cost for, so that difference = OpenRouter − ledger.
    "ledger_cost_usd": Sum("ledger_cost_usd", filter=Q(openrouter_cost_usd__isnull=False)),
    "openrouter_cost_usd": Sum("openrouter_cost_usd"),
    "difference_usd": Sum("difference_usd"),
}


def drift_report(start: date, end: date, filters: dict[str, str | None] | None = None, largest: int = 10) -> dict:
    """The checks of the events that occurred from `start` to `end` (UTC days, included), with
    the cost reports' filters (`model`: the catalog id, else the model reported; `strategy`,
    `role`): per model and in total the events checked, how many matched, drift, are pending, not found or
    failed, and the ledger's cost, OpenRouter's and the difference over those OpenRouter costed
    (Decimals); then the `largest` drifts by size."""
    checks = GenerationCheck.objects.filter(
        event__occurred_at__gte=utc_midnight(start), event__occurred_at__lt=utc_midnight(end + timedelta(days=1))
    )
    filters = filters or {}
    if filters.get("model") is not None:
        checks = checks.filter(model=filters["model"])
    for key in ("strategy", "role"):
        if filters.get(key) is not None:
            checks = checks.filter(**{f"event__{key}": filters[key]})
    models = [
        {"model": row.pop("model"), **_figures(row)}
        for row in checks.values("model").annotate(**_AGGREGATES).order_by("model")
    ]
    drifts = (
        checks.filter(status=CheckStatus.DRIFT)
        .order_by(Abs("difference_usd").desc(), "id")
        .values_list(
            "event__request_id", "generation_id", "model", "ledger_cost_usd", "openrouter_cost_usd", "difference_usd"
        )[: max(0, largest)]
    )
    return {
        "start": start,
        "end": end,
        "total": _figures(checks.aggregate(**_AGGREGATES)),
        "models": models,
        "largest_drifts": [
            {
                "request_id": request_id,
                "generation_id": generation_id,
                "model": model_key,
                "ledger_cost_usd": ledger,
                "openrouter_cost_usd": openrouter,
                "difference_usd": difference,
            }
            for request_id, generation_id, model_key, ledger, openrouter, difference in drifts
        ],
    }


def money_strings(row: dict) -> dict:
    """A report row with its money as the API's decimal strings."""
    return {key: decimal_str(value) if isinstance(value, Decimal) else value for key, value in row.items()}


def write_report_csv(report: dict, out: IO[str]) -> int:
    """The per-model rows and a `(total)` row as CSV; returns the rows written. Only the model
    cell is text (escaped against formula injection); amounts stay numbers, a negative one too."""
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    rows: Iterable[dict] = [*report["models"], {"model": "(total)", **report["total"]}]
    written = 0
    for row in rows:
        cells = money_strings(row)
        writer.writerow([escape_cell(cells["model"]), *(cells[column] for column in REPORT_COLUMNS[1:])])
        written += 1
    return written
