"""Each entry is checked against what the catalog's columns can hold before any write; a bad
entry is skipped and named, and its model keeps its last good data and status."""

from __future__ import annotations

import pytest

from catalog.apply import check_entry, model_values, printable
from catalog.models import AlertKind, CatalogModel, ModelStatus, SyncStatus
from catalog.sync import sync_catalog
from core.models import Alert
from openrouter import parse_model
from tests.catalog.test_sync import entry, ten_models

pytestmark = pytest.mark.django_db


def problem(raw: dict) -> tuple[str, str] | None:
    parsed = parse_model(raw)
    return check_entry(parsed, model_values(parsed, []))


@pytest.mark.parametrize(
    "raw, field, says",
    [
        (entry("acme/a", prompt="1e30"), "pricing.prompt", "1000000000000000000000000000000 does not fit"),
        (entry("acme/a", completion="12345678901"), "pricing.completion", "does not fit"),
        (entry("acme/a", context_length=-1), "context_length", "-1 does not fit"),
        (entry("acme/a", context_length=2**40), "context_length", "1099511627776 does not fit"),
        (
            entry("acme/a", top_provider={"max_completion_tokens": 2**31}),
            "top_provider.max_completion_tokens",
            "does not fit",
        ),
        (entry("acme/a", description="a\x00b"), "description", "NUL character"),
        (entry("acme/a", architecture={"modality": "text\ud800"}), "architecture.modality", "lone surrogate"),
        (entry("acme/a", links={"x\x00": "y"}), "links.x\\u0000", "NUL character"),
        (entry("acme/a\x00"), "id", "NUL character"),
        (entry("acme/" + "a" * 200), "id", "longer than 200 characters"),
    ],
    ids=[
        "price 1e30",
        "price 1e10",
        "negative",
        "2^40",
        "2^31",
        "NUL",
        "surrogate",
        "NUL in a key",
        "NUL id",
        "long id",
    ],
)
def test_a_value_the_database_cannot_hold_names_its_field(raw, field, says):
    found = problem(raw)

    assert found is not None and found[0] == field
    assert says in found[1]


def test_values_at_the_edge_of_what_the_columns_hold_pass():
    assert problem(entry("acme/a", prompt="9999999999.99999999999999", context_length=2**31 - 1)) is None


def test_printable_escapes_what_the_database_cannot_store():
    assert printable("a\x00b\ud800") == "a\\u0000b\\ud800"


def test_a_listed_model_skipped_as_malformed_is_not_marked_missing(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    sync_catalog()
    listing = ten_models()
    del listing[3]["pricing"]  # the parser skips it, with its id
    listing[4]["context_length"] = -5  # the database check skips it
    fake_openrouter.set_models(listing)

    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED and run.missing == 0 and run.skipped_entries == 2
    assert not CatalogModel.objects.filter(status=ModelStatus.MISSING).exists()
    assert CatalogModel.objects.get(id="acme/model-4").context_length == 128000
    assert set(Alert.objects.open().filter(kind=AlertKind.MALFORMED_ENTRY).values_list("model_id", flat=True)) == {
        "acme/model-3",
        "acme/model-4",
    }
    assert not Alert.objects.filter(kind=AlertKind.MODEL_MISSING).exists()


def test_a_model_that_leaves_the_list_is_still_marked_missing(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    sync_catalog()
    fake_openrouter.set_models(ten_models()[1:])

    run = sync_catalog()

    assert run.missing == 1
    assert CatalogModel.objects.get(id="acme/model-0").status == ModelStatus.MISSING
