"""Applying OpenRouter's model list to the catalog, all or nothing.

The work is done in a fixed number of queries whatever the size of the catalog: read every
row once, compute the differences in Python, then write them in bulk in one transaction. When
prices moved, the apps above are asked once per run what the change means to them
(`catalog.signals.prices_changed`: costs prices last week's traffic) before the alerts are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.utils import timezone

from catalog.models import (
    CAPABILITIES,
    CATALOG_VERSION,
    PRICE_KEYS,
    AlertKind,
    CatalogModel,
    Family,
    ModelStatus,
    PriceChange,
    SyncRun,
    classify_family,
    derive_capabilities,
)
from catalog.signals import prices_changed
from core.alerts import NewAlert, raise_alerts
from core.models import Alert, DataVersion
from core.money import DECIMAL_PLACES, PRICE_DIGITS, decimal_str
from core.text import UNSTORABLE, printable, unstorable_in
from openrouter import (
    ModelEntry,
    ModelList,
    SkippedEntry,
)
from openrouter.parsing import unknown_price_keys

logger = logging.getLogger(__name__)

# Keep a run's details readable in the admin: ids beyond this are counted, not listed.
DETAIL_LIST_LIMIT = 200

# Reports progress: (step, done, total).
Progress = Callable[[str, int, int], None]


class SyncRefused(Exception):
    """The list is not safe to apply (empty, or it would mark too many models missing)."""


@dataclass
class Outcome:
    """What a sync changed, for the run record and the tests."""

    seen: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    price_changes: int = 0
    skipped: list[dict] = field(default_factory=list)
    initial: bool = False

    def record_on(self, run: SyncRun) -> None:
        run.seen = self.seen
        run.added = len(self.added)
        run.updated = len(self.updated)
        run.reactivated = len(self.reactivated)
        run.missing = len(self.missing)
        run.price_changes = self.price_changes
        run.skipped_entries = len(self.skipped)
        run.details.update(
            {
                "initial": self.initial,
                "added_ids": self.added[:DETAIL_LIST_LIMIT],
                "updated_ids": self.updated[:DETAIL_LIST_LIMIT],
                "reactivated_ids": self.reactivated[:DETAIL_LIST_LIMIT],
                "missing_ids": self.missing[:DETAIL_LIST_LIMIT],
                "skipped": self.skipped[:DETAIL_LIST_LIMIT],
            }
        )


def model_values(entry: ModelEntry, families: list[Family]) -> dict:
    """The column values a model entry maps to (everything a sync may change)."""
    family = classify_family(entry.id, families)
    values = {
        "name": (entry.name or "")[:300],
        "canonical_slug": (entry.canonical_slug or "")[:200],
        "author": (entry.author or "")[:100],
        "description": entry.description or "",
        "created": entry.created,
        "context_length": entry.context_length,
        "max_completion_tokens": entry.max_completion_tokens,
        "modality": (entry.modality or "")[:100],
        "input_modalities": list(entry.input_modalities or []),
        "output_modalities": list(entry.output_modalities or []),
        "tokenizer": (entry.tokenizer or "")[:100],
        "supported_parameters": list(entry.supported_parameters or []),
        "default_parameters": dict(entry.default_parameters or {}),
        "variable_pricing": entry.variable_pricing,
        "expiration_date": entry.expiration_date,
        "family_id": family.pk if family else None,
        "raw": entry.raw,
    }
    for key in PRICE_KEYS:
        values[f"price_{key}"] = entry.pricing.get(key)
    values["extra_prices"] = {key: decimal_str(price) for key, price in sorted(entry.extra_prices.items())}
    values.update(derive_capabilities(entry.supported_parameters, entry.input_modalities))
    return values


# A column of the catalog -> the entry's field it comes from, in OpenRouter's terms.
SOURCE_FIELDS = {
    "author": "id",
    "max_completion_tokens": "top_provider.max_completion_tokens",
    "modality": "architecture.modality",
    "input_modalities": "architecture.input_modalities",
    "output_modalities": "architecture.output_modalities",
    "tokenizer": "architecture.tokenizer",
    **{f"price_{key}": f"pricing.{key}" for key in PRICE_KEYS},
}


def _dotted(path: tuple) -> str:
    """("architecture", "input_modalities", 0) -> "architecture.input_modalities[0]"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(entry)"


def check_entry(entry: ModelEntry, values: dict) -> tuple[str, str] | None:
    """(field, reason) when the entry holds a value the catalog's columns cannot store (a price
    past DecimalField(24, 14), a length out of the integer column's range, a NUL character, a
    string too long for its column), None when every value fits. Run before any write, so that
    one bad entry is skipped instead of aborting the whole sync."""
    if len(entry.id) > CatalogModel._meta.pk.max_length:
        return "id", f"id longer than {CatalogModel._meta.pk.max_length} characters"
    found = next(unstorable_in(entry.raw), None)
    where = "id" if UNSTORABLE.search(entry.id) else (_dotted(found[0]) if found else None)
    if where:
        return where, f"{where} contains a NUL character or a lone surrogate, which the database cannot store"
    for name, value in values.items():
        if value is None or name in ("family_id", "raw", "extra_prices"):
            continue
        model_field = CatalogModel._meta.get_field(name)
        source = SOURCE_FIELDS.get(name, name)
        shown = decimal_str(value) if name.startswith("price_") else repr(value)[:80]
        if isinstance(model_field, models.IntegerField):
            # The portable range (PostgreSQL's), whatever the database: SQLite would take 2**40,
            # and the catalog must move between the two.
            low, high = BaseDatabaseOperations.integer_field_ranges[model_field.get_internal_type()]
            if not low <= value <= high:
                return source, f"{source} {shown} does not fit the catalog: not between {low} and {high}"
        try:
            model_field.run_validators(model_field.to_python(value))
        except ValidationError as exc:
            return source, f"{source} {shown} does not fit the catalog: {' '.join(exc.messages)}"
    return None


def _skipped(item: SkippedEntry) -> dict:
    """A skipped entry as the run's details and the alert record it (printable strings only)."""
    return {
        "index": item.index,
        "id": printable(item.id)[:200] if item.id else None,
        "field": printable(item.field) if item.field else None,
        "reason": printable(item.reason),
    }


# The largest magnitude a price column (DecimalField(24, 14)) holds: an unknown price past it is
# kept in extra_prices, but its changes cannot go into the price history.
_PRICE_LIMIT = Decimal(10) ** (PRICE_DIGITS - DECIMAL_PLACES)
# Nor can a key longer than the history's `field` column.
_FIELD_LENGTH = PriceChange._meta.get_field("field").max_length


def _extra_price(prices: dict, key: str) -> Decimal | None:
    """An extra price as the history compares it: absent and "0" alike (as for the optional
    known keys, which OpenRouter stopped sending when zero in January 2026)."""
    value = prices.get(key)
    price = None if value is None else Decimal(value)
    return None if price == 0 else price


def price_moves(model: CatalogModel, values: dict) -> list[tuple[str, Decimal | None, Decimal | None]]:
    """(key, old, new) for every price that moved: the known keys' columns, then the unknown
    keys kept in extra_prices (those whose key and values fit the history's columns)."""
    moves = []
    for key in PRICE_KEYS:
        old, new = model.price(key), values[f"price_{key}"]
        if old != new:
            moves.append((key, old, new))
    before, after = model.extra_prices or {}, values["extra_prices"]
    for key in sorted(set(before) | set(after)):
        if len(key) > _FIELD_LENGTH:
            continue
        old, new = _extra_price(before, key), _extra_price(after, key)
        if old != new and all(v is None or abs(v) < _PRICE_LIMIT for v in (old, new)):
            moves.append((key, old, new))
    return moves


def unknown_price_key_alerts(entries: list[tuple[ModelEntry, dict]]) -> list[NewAlert]:
    """One alert per pricing key the catalog has no column for, raised once ever per key: the
    key's values are kept in extra_prices meanwhile, and a release should give it a column."""
    models_by_key: dict[str, list[str]] = {}
    for entry, _values in entries:
        for key in unknown_price_keys(entry.raw.get("pricing")):
            models_by_key.setdefault(key, []).append(entry.id)
    return [
        NewAlert(
            AlertKind.UNKNOWN_PRICE_KEY,
            f"OpenRouter prices {len(ids)} model(s) with '{printable(key)[:64]}', a key the catalog has "
            f"no column for (e.g. {ids[0]}). Its values are kept in each model's extra prices and their "
            f"changes in the price history; cost estimates do not use it.",
            subject=printable(key)[:200],
            once=True,
            details={"key": printable(key), "models": ids[:DETAIL_LIST_LIMIT], "count": len(ids)},
        )
        for key, ids in sorted(models_by_key.items())
    ]


def _changed_fields(model: CatalogModel, values: dict) -> list[str]:
    return [name for name, value in values.items() if getattr(model, name) != value]


def apply_model_list(
    model_list: ModelList, *, run: SyncRun, force: bool = False, progress: Progress | None = None
) -> Outcome:
    """Apply a fetched list to the catalog in one transaction. Raises SyncRefused when unsafe."""
    now = timezone.now()
    families = list(Family.objects.all())
    entries: list[tuple[ModelEntry, dict]] = []
    skipped = list(model_list.skipped)
    for entry in model_list.entries:
        values = model_values(entry, families)
        problem = check_entry(entry, values)
        if problem:
            skipped.append(SkippedEntry(index=None, id=entry.id, field=problem[0], reason=problem[1]))
        else:
            entries.append((entry, values))
    outcome = Outcome(seen=len(entries), skipped=[_skipped(item) for item in skipped])

    existing = {m.id: m for m in CatalogModel.objects.all()}
    active_ids = {model_id for model_id, m in existing.items() if m.status == ModelStatus.ACTIVE}
    incoming_ids = {e.id for e, _ in entries}
    # A skipped entry is still listed: its model keeps its last good data and its status, and is
    # not "no longer in OpenRouter's list".
    listed_ids = incoming_ids | {item.id for item in skipped if item.id}
    newly_missing = sorted(active_ids - listed_ids)
    outcome.initial = not existing

    if not entries and not force:
        raise SyncRefused(
            "OpenRouter answered an empty model list; the catalog was left as it was "
            "(sync_catalog --force applies it deliberately)"
        )
    limit = settings.LLMHIVE_SYNC_MAX_MISSING_FRACTION
    if active_ids and not force and len(newly_missing) > limit * len(active_ids):
        raise SyncRefused(
            f"the list would mark {len(newly_missing)} of {len(active_ids)} active models missing "
            f"({len(newly_missing) / len(active_ids):.0%}, limit {limit:.0%}); the catalog was left as it was "
            f"(sync_catalog --force applies it deliberately)"
        )

    to_create: list[CatalogModel] = []
    to_update: list[CatalogModel] = []
    update_fields: set[str] = set()
    price_changes: list[PriceChange] = []
    alerts: list[NewAlert] = []
    price_alerts: dict[str, NewAlert] = {}
    moved_prices: dict[str, tuple[dict, dict]] = {}
    expiry_horizon = now.date() + timedelta(days=settings.LLMHIVE_MODEL_EXPIRY_WARNING_DAYS)

    for done, (entry, values) in enumerate(entries, start=1):
        model = existing.get(entry.id)
        if model is None:
            to_create.append(CatalogModel(id=entry.id, first_seen_at=now, last_seen_at=now, **values))
            outcome.added.append(entry.id)
            if not outcome.initial:
                alerts.append(NewAlert(AlertKind.NEW_MODEL, f"New model {entry.id} ({entry.name}).", model_id=entry.id))
                if values["family_id"] is None:
                    alerts.append(
                        NewAlert(
                            AlertKind.UNCLASSIFIED_MODEL, f"{entry.id} matches no family pattern.", model_id=entry.id
                        )
                    )
        else:
            changed = _changed_fields(model, values)
            if model.status == ModelStatus.MISSING:
                model.status = ModelStatus.ACTIVE
                model.missing_since = None
                changed += ["status", "missing_since"]
                outcome.reactivated.append(entry.id)
                alerts.append(
                    NewAlert(AlertKind.MODEL_RETURNED, f"{entry.id} is back in OpenRouter's list.", model_id=entry.id)
                )
            elif changed:
                outcome.updated.append(entry.id)
            moves = price_moves(model, values)
            for key, old, new in moves:
                price_changes.append(
                    PriceChange(model_id=entry.id, field=key, old=old, new=new, observed_at=now, run=run)
                )
            if moves:
                shown = [{"field": key, "old": decimal_str(old), "new": decimal_str(new)} for key, old, new in moves]
                text = ", ".join(f"{m['field']} {m['old']} → {m['new']}" for m in shown)
                price_alerts[entry.id] = NewAlert(
                    AlertKind.PRICE_CHANGE, f"{entry.id}: {text}", model_id=entry.id, details={"changes": shown}
                )
                alerts.append(price_alerts[entry.id])
                moved_prices[entry.id] = (model.pricing, {key: values[f"price_{key}"] for key in PRICE_KEYS})
            cap_moves = {c: values[c] for c in CAPABILITIES if getattr(model, c) != values[c]}
            if cap_moves:
                text = ", ".join(f"{'+' if on else '-'}{c}" for c, on in cap_moves.items())
                alerts.append(
                    NewAlert(AlertKind.CAPABILITY_CHANGE, f"{entry.id}: {text}", model_id=entry.id, details=cap_moves)
                )
            if changed:
                for name, value in values.items():
                    setattr(model, name, value)
                model.updated_at = now
                update_fields.update(changed)
                to_update.append(model)
        expires = values["expiration_date"]
        if expires is not None and expires <= expiry_horizon:
            alerts.append(
                NewAlert(
                    AlertKind.MODEL_EXPIRING,
                    f"{entry.id} expires on {expires.isoformat()}.",
                    model_id=entry.id,
                    subject=f"{entry.id}:{expires.isoformat()}",
                    once=True,
                )
            )
        if progress and (done % 50 == 0 or done == len(entries)):
            progress("apply", done, len(entries))

    for model_id in newly_missing:
        alerts.append(
            NewAlert(AlertKind.MODEL_MISSING, f"{model_id} is no longer in OpenRouter's list.", model_id=model_id)
        )
    alerts += malformed_entry_alerts(outcome.skipped, run=run)
    alerts += unknown_price_key_alerts(entries)
    outcome.missing = newly_missing
    outcome.price_changes = len(price_changes)
    if outcome.initial:
        unclassified = sum(1 for m in to_create if m.family_id is None)
        if unclassified:
            alerts.append(
                NewAlert(
                    AlertKind.UNCLASSIFIED_MODEL,
                    f"{unclassified} of {len(to_create)} models match no family pattern; research suggests families for them.",
                    subject="initial-import",
                )
            )

    if price_alerts:
        _annotate_price_alerts(price_alerts, moved_prices, now)

    with transaction.atomic():
        CatalogModel.objects.bulk_create(to_create)
        if to_update:
            CatalogModel.objects.bulk_update(to_update, sorted(update_fields | {"updated_at"}))
        if newly_missing:
            CatalogModel.objects.filter(id__in=newly_missing).update(status=ModelStatus.MISSING, missing_since=now)
        # After the two writes above the active models are exactly the incoming ones.
        CatalogModel.objects.filter(status=ModelStatus.ACTIVE).update(last_seen_at=now)
        PriceChange.objects.bulk_create(price_changes)
        # An entry that was skipped as malformed and is now applied has nothing left to say.
        Alert.objects.open().filter(kind=AlertKind.MALFORMED_ENTRY, model_id__in=incoming_ids).update(
            acknowledged_at=now
        )
        if outcome.reactivated:
            # The model is back: its "missing" alert has nothing left to say.
            Alert.objects.open().filter(kind=AlertKind.MODEL_MISSING, model_id__in=outcome.reactivated).update(
                acknowledged_at=now
            )
        raise_alerts(alerts)
        if to_create or to_update or newly_missing:
            DataVersion.bump(CATALOG_VERSION)  # routing snapshots rebuild
    return outcome


def _annotate_price_alerts(alerts: dict[str, NewAlert], changes: dict[str, tuple[dict, dict]], at: datetime) -> None:
    """What the apps above have to say about the price changes (costs: last week's traffic at
    the new prices), in each alert's message and details. Their trouble never fails the sync."""
    for receiver, answer in prices_changed.send_robust(sender=CatalogModel, changes=changes, at=at):
        if isinstance(answer, Exception):
            logger.warning("price-change receiver %r failed: %s", receiver, answer)
            continue
        for model_id, (note, details) in (answer or {}).items():
            alert = alerts[model_id]
            alert.message += f" ({note})"
            alert.details.update(details)


def malformed_entry_alerts(skipped: list[dict], *, run: SyncRun) -> list[NewAlert]:
    """One alert per skipped entry that has an id (it names the id and the field), and one for
    the entries without an id."""
    alerts = []
    for item in skipped:
        if item["id"]:
            alerts.append(
                NewAlert(
                    AlertKind.MALFORMED_ENTRY,
                    f"{item['id']}: {item['reason']} (field {item['field'] or '?'}); the entry was skipped and "
                    f"the catalog keeps the model's last good data and status.",
                    model_id=item["id"],
                    details={**item, "run": run.pk},
                )
            )
    anonymous = [item for item in skipped if not item["id"]]
    if anonymous:
        where = ", ".join(f"#{item['index']}: {item['reason']}" for item in anonymous[:10])
        alerts.append(
            NewAlert(
                AlertKind.MALFORMED_ENTRY,
                f"{len(anonymous)} entries without a usable id were skipped ({where}).",
                subject="entries-without-id",
                details={"entries": anonymous[:DETAIL_LIST_LIMIT], "run": run.pk},
            )
        )
    return alerts


def reclassify_models() -> int:
    """Re-run family detection over the whole catalog (after a family changed). Returns the
    number of models whose family moved."""
    families = list(Family.objects.all())
    moved = []
    for model in CatalogModel.objects.only("id", "family_id"):
        family = classify_family(model.id, families)
        family_id = family.pk if family else None
        if model.family_id != family_id:
            model.family_id = family_id
            moved.append(model)
    CatalogModel.objects.bulk_update(moved, ["family_id"], batch_size=500)
    if moved:
        DataVersion.bump(CATALOG_VERSION)
    return len(moved)
