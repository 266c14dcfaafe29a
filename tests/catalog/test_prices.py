"""Every price OpenRouter documents is stored, shown and kept in the price history; a price key
nobody documented yet is kept too, and announced."""

from __future__ import annotations

import importlib
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.apps import apps
from django.urls import reverse

from catalog.models import PRICE_FIELDS, AlertKind, CatalogModel, PriceChange, SyncStatus
from catalog.sync import sync_catalog
from core.models import Alert
from costs.pricing import PriceBook, Usage, cost_of
from openrouter.types import PRICE_KEYS, PRICING_STRUCTURES
from tests.factories import CatalogModelFactory
from tests.fake_openrouter import SNAPSHOT_DATES, load_snapshot, openapi_document, requires_recorded, snapshot_path

pytestmark = pytest.mark.django_db

REFERENCE = ("openrouter_openapi_2025-12-16.yaml", "openrouter_openapi_2026-08-22.yaml")


@pytest.fixture(autouse=True)
def fast_client(settings):
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 1.0
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1


def entry(model_id: str, **pricing) -> dict:
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": model_id,
        "created": 1760000000,
        "context_length": 128000,
        "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]},
        "pricing": {"prompt": "0.000001", "completion": "0.000002", **pricing},
        "top_provider": {"max_completion_tokens": None},
        "supported_parameters": [],
    }


@requires_recorded
@pytest.mark.parametrize("name", REFERENCE)
def test_every_price_key_of_openrouters_api_description_is_known(name):
    spec = openapi_document(name)

    documented = set(spec["components"]["schemas"]["PublicPricing"]["properties"])

    assert documented <= set(PRICE_KEYS) | set(PRICING_STRUCTURES)
    assert {f"price_{key}" for key in PRICE_KEYS} == set(PRICE_FIELDS)
    assert all(
        isinstance(CatalogModel._meta.get_field(f), type(CatalogModel._meta.get_field("price_prompt")))
        for f in PRICE_FIELDS
    )


def expected_changes(key: str) -> int:
    """Changes of one price over the recorded files, the catalog's way: each model against the
    last value it had (a model absent from a file keeps its price), absent and zero alike."""
    last: dict[str, Decimal | None] = {}
    changes = 0
    for date_str in SNAPSHOT_DATES:
        for raw in load_snapshot(date_str)["data"]:
            value = raw["pricing"].get(key)
            price = Decimal(value) if value is not None and Decimal(value) > 0 else None
            if raw["id"] in last and last[raw["id"]] != price:
                changes += 1
            last[raw["id"]] = price
    return changes


@requires_recorded
def test_audio_prices_of_every_recorded_file_are_stored_and_their_changes_recorded():
    for date_str in SNAPSHOT_DATES:
        run = sync_catalog(from_file=snapshot_path(date_str), force=True)
        assert run.status == SyncStatus.SUCCEEDED, run.error

        priced = {
            raw["id"]: Decimal(raw["pricing"]["audio"])
            for raw in load_snapshot(date_str)["data"]
            if Decimal(raw["pricing"].get("audio") or 0) > 0
        }
        stored = dict(
            CatalogModel.objects.filter(price_audio__isnull=False, status="active").values_list("id", "price_audio")
        )
        assert stored == priced, date_str

    audio = PriceChange.objects.filter(field="audio")
    # The issue counted eleven audio price changes that went by unrecorded.
    assert audio.count() == expected_changes("audio") == 11
    gemini = audio.get(model_id="google/gemini-2.5-pro")
    assert (gemini.old, gemini.new) == (None, Decimal("0.00000125"))
    # The 2026-06 file prices 1-hour cache writes (Anthropic): stored too.
    assert CatalogModel.objects.filter(price_input_cache_write_1h__isnull=False).count() == 17


def test_an_unknown_price_key_is_kept_recorded_and_alerted_once_and_the_sync_succeeds(
    fake_openrouter, api_client, admin_client
):
    fake_openrouter.set_models([entry("acme/voice", audio="0.000004", video_second="0.0002"), entry("acme/text")])
    first = sync_catalog()
    fake_openrouter.set_models([entry("acme/voice", audio="0.000005", video_second="0.00025"), entry("acme/text")])
    second = sync_catalog()

    assert first.status == second.status == SyncStatus.SUCCEEDED, (first.error, second.error)
    voice = CatalogModel.objects.get(id="acme/voice")
    assert voice.price_audio == Decimal("0.000005")
    assert voice.extra_prices == {"video_second": "0.00025"}
    changes = {(c.field, c.old, c.new) for c in PriceChange.objects.filter(model_id="acme/voice")}
    assert changes == {
        ("audio", Decimal("0.000004"), Decimal("0.000005")),
        ("video_second", Decimal("0.0002"), Decimal("0.00025")),
    }
    [alert] = Alert.objects.filter(kind=AlertKind.UNKNOWN_PRICE_KEY)
    assert alert.key == "unknown_price_key:video_second" and alert.times == 1
    assert alert.details["models"] == ["acme/voice"] and "video_second" in alert.message

    detail = api_client.get("/api/v1/models/acme/voice").json()
    assert detail["pricing"]["audio"] == "0.000005"
    assert set(detail["pricing"]) == set(PRICE_KEYS)
    assert detail["pricing"]["input_cache_write_1h"] is None
    assert detail["extra_prices"] == {"video_second": "0.00025"}
    history = {(h["field"], h["old"], h["new"]) for h in detail["price_history"]}
    assert history == {("audio", "0.000004", "0.000005"), ("video_second", "0.0002", "0.00025")}
    listed = api_client.get("/api/v1/models", {"q": "acme/text"}).json()["items"][0]
    assert listed["extra_prices"] == {} and listed["pricing"]["audio"] is None

    page = admin_client.get(reverse("admin:catalog_catalogmodel_change", args=["acme/voice"]))
    assert page.status_code == HTTPStatus.OK
    assert b"video_second: 0.00025" in page.content
    assert b"Price audio" in page.content and b"Price input cache write 1h" in page.content


def test_an_unknown_key_that_is_not_a_number_never_fails_the_entry(fake_openrouter):
    fake_openrouter.set_models([entry("acme/odd", tier="enterprise", overrides=[{"prompt": "0.000002"}])])

    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED and run.seen == 1, run.error
    odd = CatalogModel.objects.get(id="acme/odd")
    assert odd.extra_prices == {} and odd.raw["pricing"]["tier"] == "enterprise"
    # `overrides` is documented (conditional prices, kept in raw); `tier` is not: announced.
    assert list(Alert.objects.filter(kind=AlertKind.UNKNOWN_PRICE_KEY).values_list("key", flat=True)) == [
        "unknown_price_key:tier"
    ]


def test_a_price_going_to_zero_or_away_is_one_change_and_zero_or_absent_is_none(fake_openrouter):
    long_key, huge = "k" * 80, "1" + "0" * 12
    fake_openrouter.set_models(
        [entry("acme/a", audio="0.000001", image_token="0.00001", fresh_key="0.1", **{long_key: "1"}, huge=huge)]
    )
    first = sync_catalog()
    fake_openrouter.set_models([entry("acme/a", audio="0", fresh_key="0", **{long_key: "2"}, huge="2")])
    second = sync_catalog()

    assert first.status == second.status == SyncStatus.SUCCEEDED, (first.error, second.error)
    fields = sorted(PriceChange.objects.filter(model_id="acme/a").values_list("field", "new"))
    assert fields == [("audio", None), ("fresh_key", None), ("image_token", None)]
    # A key or a value past the history's columns is still kept on the model.
    assert CatalogModel.objects.get(id="acme/a").extra_prices == {"fresh_key": "0", "huge": "2", long_key: "2"}


def test_chat_cost_is_computed_as_before_whatever_the_other_prices():
    usage = Usage(prompt_tokens=1000, completion_tokens=200, reasoning_tokens=50, cached_tokens=100)
    plain = {"prompt": Decimal("0.00000125"), "completion": Decimal("0.00001"), "input_cache_read": Decimal("1e-7")}
    model = CatalogModelFactory(
        id="acme/priced",
        price_prompt=plain["prompt"],
        price_completion=plain["completion"],
        price_input_cache_read=plain["input_cache_read"],
        price_audio=Decimal("0.00003"),
        price_audio_output=Decimal("0.00004"),
        price_image_output=Decimal("0.04"),
        price_discount=Decimal("0.5"),
    )

    book = PriceBook.load([model.id], since=model.first_seen_at)
    expected = 900 * plain["prompt"] + 100 * plain["input_cache_read"] + 200 * plain["completion"]

    assert cost_of(plain, usage) == expected
    assert book.cost(model.id, model.first_seen_at, usage) == expected


def test_the_migration_fills_the_new_prices_from_the_last_synced_entry():
    """So that the first sync after the upgrade does not take every audio price for a change."""
    migration = importlib.import_module("catalog.migrations.0006_every_price_and_discovered_categories")
    CatalogModelFactory(
        id="acme/synced",
        raw={"pricing": {"prompt": "0.000001", "completion": "0.000002", "audio": "0.000003", "brand_new": "0.5"}},
    )
    CatalogModelFactory(id="acme/bare", raw={})

    migration.backfill_prices(apps, None)

    synced = CatalogModel.objects.get(id="acme/synced")
    assert (synced.price_audio, synced.extra_prices) == (Decimal("0.000003"), {"brand_new": "0.5"})
    assert CatalogModel.objects.get(id="acme/bare").price_audio is None
