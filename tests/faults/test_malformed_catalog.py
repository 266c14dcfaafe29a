"""Poisoned catalog entries: a real recorded snapshot served by the fake OpenRouter, with a
handful of entries the database cannot hold. The sync applies the rest, names each bad entry's
id and field, and a poisoned model the catalog already knew keeps its data and its status."""

from __future__ import annotations

import codecs
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from catalog.models import AlertKind, CatalogModel, ModelStatus, SyncRun, SyncStatus
from catalog.sync import sync_catalog
from core.models import Alert
from tests.fake_openrouter import load_snapshot, requires_recorded

pytestmark = [pytest.mark.django_db, requires_recorded]

SNAPSHOT = "2026-01-29"


def poison(data: list[dict]) -> dict[str, str]:
    """Poison five known entries in place and add one without an id; returns id -> the field
    the alert must name."""
    by_id = {entry["id"]: entry for entry in data}
    ids = [entry["id"] for entry in data if entry["pricing"].get("prompt") not in (None, "0", "-1")][:5]
    huge_price, negative_context, huge_context, nul, no_pricing = ids
    by_id[huge_price]["pricing"]["prompt"] = "1e30"
    by_id[negative_context]["context_length"] = -1
    by_id[huge_context]["context_length"] = 2**40
    by_id[nul]["description"] = "harmless\x00text"
    del by_id[no_pricing]["pricing"]
    data.append({"name": "No id at all", "pricing": {"prompt": "0", "completion": "0"}})
    return {
        huge_price: "pricing.prompt",
        negative_context: "context_length",
        huge_context: "context_length",
        nul: "description",
        no_pricing: "pricing",
    }


def snapshot_state(ids) -> dict[str, tuple]:
    return {
        m.id: (m.status, m.price_prompt, m.context_length, m.description, m.raw)
        for m in CatalogModel.objects.filter(id__in=ids)
    }


def test_poisoned_entries_are_skipped_named_and_keep_their_last_good_data(fake_openrouter):
    clean = load_snapshot(SNAPSHOT)
    fake_openrouter.set_models(clean)
    first = sync_catalog()
    assert first.status == SyncStatus.SUCCEEDED, first.error
    poisoned = load_snapshot(SNAPSHOT)
    fields = poison(poisoned["data"])
    before = snapshot_state(fields)
    routable_before = set(CatalogModel.objects.routable().filter(id__in=fields).values_list("id", flat=True))
    assert len(before) == 5 and routable_before

    fake_openrouter.set_models(poisoned)
    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    total = len(poisoned["data"])
    print(
        f"\nmalformed catalog: {total} entries served, {run.seen} applied, {run.skipped_entries} skipped, "
        f"{run.missing} marked missing"
    )
    assert run.skipped_entries == 6 and run.seen == total - 6
    assert run.missing == 0
    skipped = {item["id"]: item["field"] for item in run.details["skipped"] if item["id"]}
    assert skipped == fields
    # Each poisoned model keeps its last good data and status, and stays routable.
    assert snapshot_state(fields) == before
    assert set(CatalogModel.objects.routable().filter(id__in=fields).values_list("id", flat=True)) == routable_before
    assert not CatalogModel.objects.filter(status=ModelStatus.MISSING).exists()
    alerts = {a.model_id: a for a in Alert.objects.open().filter(kind=AlertKind.MALFORMED_ENTRY)}
    for model_id, field in fields.items():
        assert model_id in alerts[model_id].message and field in alerts[model_id].message
        assert alerts[model_id].details["field"] == field
    assert "1 entries without a usable id" in Alert.objects.get(key="malformed_entry:entries-without-id").message
    assert not Alert.objects.open().filter(kind__in=[AlertKind.MODEL_MISSING, AlertKind.SYNC_FAILED]).exists()

    # Once OpenRouter fixes the entries, they are applied and their alerts answered.
    fake_openrouter.set_models(clean)
    fixed = sync_catalog()
    assert fixed.status == SyncStatus.SUCCEEDED and fixed.skipped_entries == 0
    assert not Alert.objects.open().filter(kind=AlertKind.MALFORMED_ENTRY).exclude(model_id=None).exists()


def test_a_poisoned_entry_new_to_the_catalog_is_not_added(fake_openrouter):
    data = load_snapshot(SNAPSHOT)["data"][:20]
    data[0]["pricing"]["completion"] = "123456789012.5"  # past DecimalField(24, 14)
    data[1]["name"] = "surrogate \ud800 half"
    fake_openrouter.set_models(data)

    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.added == 18
    assert not CatalogModel.objects.filter(id__in=[data[0]["id"], data[1]["id"]]).exists()
    fields = {item["id"]: item["field"] for item in run.details["skipped"]}
    assert fields == {data[0]["id"]: "pricing.completion", data[1]["id"]: "name"}


ENCODINGS = {
    "utf-8": lambda text: text.encode("utf-8"),
    "utf-8 with a BOM": lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
    "utf-16 LE with a BOM": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf-16 BE with a BOM": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_command_reads_a_saved_snapshot_in_each_encoding(tmp_path, encoding):
    payload = load_snapshot(SNAPSHOT)
    path = tmp_path / "models.json"
    # ensure_ascii=False: the names' non-ASCII characters really go through the encoding.
    path.write_bytes(ENCODINGS[encoding](json.dumps(payload, ensure_ascii=False, indent=2)))

    summary = call_command("sync_catalog", from_file=str(path), no_progress=True)

    assert summary.startswith(f"sync succeeded: {len(payload['data'])} seen")
    assert CatalogModel.objects.count() == len(payload["data"])
    assert CatalogModel.objects.filter(price_prompt__gt=Decimal(0)).exists()


@pytest.mark.parametrize(
    "data, expected",
    [
        ("naïve".encode("latin-1"), "is not UTF-8 text (byte 0xef at offset"),
        (codecs.BOM_UTF16_LE + b"{\x00\x00\xd8", "is not UTF-16 text"),
        (codecs.BOM_UTF32_LE + "{}".encode("utf-32-le"), "is UTF-32"),
    ],
    ids=["latin-1", "broken utf-16", "utf-32"],
)
def test_a_file_in_another_encoding_fails_with_one_readable_line(tmp_path, data, expected):
    path = tmp_path / "models.json"
    path.write_bytes(data)

    with pytest.raises(CommandError) as failure:
        call_command("sync_catalog", from_file=str(path), no_progress=True)

    message = str(failure.value)
    assert expected in message and "\n" not in message
    assert SyncRun.objects.get().status == SyncStatus.FAILED
    assert CatalogModel.objects.count() == 0
