"""Catalog sync against the fake OpenRouter: changes, history, guards and faults."""

from __future__ import annotations

import copy
import json
import threading
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import (
    AlertKind,
    CatalogModel,
    ModelStatus,
    PriceChange,
    SyncRun,
    SyncStatus,
)
from catalog.selectors import bootstrap_fallback_models
from catalog.sync import sync_catalog
from core.models import Alert
from tests import fake_openrouter as fake_module
from tests.fake_openrouter import load_snapshot, requires_recorded

pytestmark = pytest.mark.django_db


def entry(model_id: str, prompt: str = "0.000001", completion: str = "0.000002", **extra) -> dict:
    """A minimal model entry in OpenRouter's shape."""
    data = {
        "id": model_id,
        "canonical_slug": model_id,
        "name": model_id.split("/")[-1].title(),
        "created": 1760000000,
        "description": "",
        "context_length": 128000,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
        },
        "pricing": {"prompt": prompt, "completion": completion},
        "top_provider": {"context_length": 128000, "max_completion_tokens": None, "is_moderated": False},
        "supported_parameters": ["max_tokens"],
        "default_parameters": {},
    }
    data.update(extra)
    return data


def ten_models() -> list[dict]:
    return [entry(f"acme/model-{i}") for i in range(10)]


@pytest.fixture(autouse=True)
def fast_client(settings):
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 1.0
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1


def catalog_state() -> list[tuple]:
    return list(
        CatalogModel.objects.order_by("id").values_list(
            "id", "status", "price_prompt", "price_completion", "enabled", "updated_at"
        )
    )


def test_it_adds_every_model_of_the_first_sync(fake_openrouter):
    fake_openrouter.set_models(ten_models())

    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (run.seen, run.added, run.updated, run.missing) == (10, 10, 0, 0)
    assert CatalogModel.objects.filter(status=ModelStatus.ACTIVE).count() == 10
    # the first import is not ten "new model" alerts
    assert not Alert.objects.filter(kind=AlertKind.NEW_MODEL).exists()


def test_it_records_a_price_change_with_history_and_one_alert(fake_openrouter):
    models = ten_models()
    fake_openrouter.set_models(models)
    sync_catalog()
    changed = copy.deepcopy(models)
    changed[3]["pricing"]["prompt"] = "0.00000001703012"
    fake_openrouter.set_models(changed)

    run = sync_catalog()
    sync_catalog()  # the same list again: no new history, no second alert

    assert run.price_changes == 1 and run.updated == 1
    change = PriceChange.objects.get()
    assert (change.model_id, change.field, change.old, change.new) == (
        "acme/model-3",
        "prompt",
        Decimal("0.000001"),
        Decimal("0.00000001703012"),
    )
    assert CatalogModel.objects.get(id="acme/model-3").price_prompt == Decimal("0.00000001703012")
    alert = Alert.objects.get(kind=AlertKind.PRICE_CHANGE)
    assert alert.model_id == "acme/model-3" and alert.times == 1


def test_it_marks_absent_models_missing_and_brings_them_back(fake_openrouter):
    models = ten_models()
    fake_openrouter.set_models(models)
    sync_catalog()

    fake_openrouter.set_models(models[1:])
    gone = sync_catalog()
    missing = CatalogModel.objects.get(id="acme/model-0")
    assert gone.missing == 1
    assert missing.status == ModelStatus.MISSING and missing.missing_since is not None
    assert Alert.objects.open().filter(kind=AlertKind.MODEL_MISSING, model_id="acme/model-0").exists()

    fake_openrouter.set_models(models)
    back = sync_catalog()
    returned = CatalogModel.objects.get(id="acme/model-0")
    assert back.reactivated == 1 and back.added == 0
    assert returned.status == ModelStatus.ACTIVE and returned.missing_since is None
    assert Alert.objects.open().filter(kind=AlertKind.MODEL_RETURNED, model_id="acme/model-0").exists()
    # the missing alert has nothing left to say once the model is back
    assert not Alert.objects.open().filter(kind=AlertKind.MODEL_MISSING).exists()
    assert CatalogModel.objects.count() == 10  # never deleted


def test_an_unchanged_resync_changes_no_model_data(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    sync_catalog()
    before = catalog_state()
    seen_before = dict(CatalogModel.objects.values_list("id", "last_seen_at"))

    with CaptureQueriesContext(connection) as queries:
        run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED
    assert (run.added, run.updated, run.reactivated, run.missing, run.price_changes) == (0, 0, 0, 0, 0)
    assert catalog_state() == before
    catalog_writes = [
        q["sql"]
        for q in queries.captured_queries
        if "model_catalog" in q["sql"] and not q["sql"].lstrip().upper().startswith("SELECT")
    ]
    assert len(catalog_writes) == 1 and "last_seen_at" in catalog_writes[0]
    assert all(seen > seen_before[i] for i, seen in CatalogModel.objects.values_list("id", "last_seen_at"))


def test_it_refuses_a_list_ninety_percent_smaller_until_forced(fake_openrouter):
    models = ten_models()
    fake_openrouter.set_models(models)
    sync_catalog()
    before = catalog_state()
    fake_openrouter.set_models(models[:1])

    refused = sync_catalog()

    assert refused.status == SyncStatus.FAILED
    assert "would mark 9 of 10 active models missing" in refused.error
    assert catalog_state() == before
    assert Alert.objects.open().filter(kind=AlertKind.SYNC_FAILED).exists()

    forced = sync_catalog(force=True)
    assert forced.status == SyncStatus.SUCCEEDED and forced.missing == 9
    # a successful run closes the failure alert
    assert not Alert.objects.open().filter(kind=AlertKind.SYNC_FAILED).exists()


def test_it_skips_malformed_entries_and_applies_the_rest(fake_openrouter):
    models = ten_models()
    bad_price = entry("acme/bad-price", prompt="cheap")
    no_id = entry("")
    fake_openrouter.set_models(models + [bad_price, no_id, "not an object"])

    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED
    assert run.added == 10 and run.skipped_entries == 3
    reasons = {item["index"]: item["reason"] for item in run.details["skipped"]}
    assert set(reasons) == {10, 11, 12}
    assert not CatalogModel.objects.filter(id="acme/bad-price").exists()


def test_it_tolerates_unknown_and_vanished_fields(fake_openrouter):
    model = entry("acme/future", benchmarks={"mmlu": 0.9}, reasoning={"mandatory": True}, links={"details": "/x"})
    del model["top_provider"]
    del model["default_parameters"]
    fake_openrouter.set_models([model])

    run = sync_catalog()

    stored = CatalogModel.objects.get(id="acme/future")
    assert run.status == SyncStatus.SUCCEEDED
    assert stored.max_completion_tokens is None
    assert stored.raw["benchmarks"] == {"mmlu": 0.9}


FAULTS = {
    "timeout": lambda: [fake_module.timeout(3), fake_module.timeout(3)],
    "dropped connection": lambda: [fake_module.drop(), fake_module.drop()],
    "500 twice": lambda: [fake_module.status(500), fake_module.status(500)],
    "html error page": lambda: [fake_module.html_error(502), fake_module.html_error(502)],
    "truncated json": lambda: [fake_module.truncated()],
    "empty list": lambda: [fake_module.empty_list()],
    "rate limited": lambda: [fake_module.rate_limited(retry_after=1), fake_module.rate_limited(retry_after=1)],
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_run_leaves_the_catalog_unchanged_records_the_error_and_alerts(fake_openrouter, fault):
    fake_openrouter.set_models(ten_models())
    sync_catalog()
    before = catalog_state()
    fake_openrouter.script("/models", *FAULTS[fault]())

    run = sync_catalog()

    assert run.status == SyncStatus.FAILED
    assert run.error and "\n" not in run.error
    assert catalog_state() == before
    alert = Alert.objects.open().get(kind=AlertKind.SYNC_FAILED)
    assert run.error in alert.message


def test_a_500_then_success_is_retried_and_applied(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    fake_openrouter.script("/models", fake_module.status(500))

    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED and run.added == 10
    assert len([r for r in fake_openrouter.requests if r.path.endswith("/models")]) == 2


def test_repeated_failures_raise_one_alert_that_counts_them(fake_openrouter):
    fake_openrouter.script("/models", fake_module.truncated(), fake_module.truncated())

    sync_catalog()
    sync_catalog()

    alert = Alert.objects.open().get(kind=AlertKind.SYNC_FAILED)
    assert alert.times == 2


@pytest.mark.django_db(transaction=True)
def test_two_syncs_started_at_once_run_one_and_skip_the_other(fake_openrouter):
    fake_openrouter.set_models(ten_models())
    fake_openrouter.handler_delay = 0.5  # the first run holds the lock while it fetches
    runs: list[SyncRun] = []
    barrier = threading.Barrier(2)

    def start() -> None:
        try:
            barrier.wait()
            runs.append(sync_catalog())
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(run.status for run in runs) == [SyncStatus.SKIPPED, SyncStatus.SUCCEEDED]
    skipped = next(run for run in runs if run.status == SyncStatus.SKIPPED)
    assert "another catalog run is in progress" in skipped.error
    assert CatalogModel.objects.count() == 10


def test_the_command_syncs_from_a_saved_file_and_prints_one_line(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"data": ten_models()}))

    summary = call_command("sync_catalog", from_file=str(path), no_progress=True)

    assert summary.startswith("sync succeeded: 10 seen, 10 added")
    assert "\n" not in summary.strip()
    assert SyncRun.objects.get().source == "file"


def test_the_command_fails_with_one_readable_line_on_a_bad_file(tmp_path):
    path = tmp_path / "models.json"
    path.write_text('{"data": [')

    with pytest.raises(CommandError) as failure:
        call_command("sync_catalog", from_file=str(path), no_progress=True)

    assert "is not valid JSON" in str(failure.value)
    assert "\n" not in str(failure.value)
    assert CatalogModel.objects.count() == 0


def test_the_bootstrap_list_is_used_only_while_the_catalog_is_empty_after_a_failure(fake_openrouter, settings):
    settings.OPENROUTER_BASE_URL = "http://127.0.0.1:9/api/v1"  # nothing listens on the discard port
    failed = sync_catalog()
    assert failed.status == SyncStatus.FAILED
    assert bootstrap_fallback_models() == settings.BOOTSTRAP_FALLBACK_MODELS

    settings.OPENROUTER_BASE_URL = fake_openrouter.base_url
    fake_openrouter.set_models(ten_models())
    sync_catalog()
    assert bootstrap_fallback_models() == []


@requires_recorded
def test_it_syncs_the_recorded_349_model_snapshot(fake_openrouter):
    fake_openrouter.set_models(load_snapshot("2025-12-18"))

    run = sync_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.added == 349 and run.skipped_entries == 0
    routers = CatalogModel.objects.filter(variable_pricing=True)
    assert set(routers.values_list("id", flat=True)) == {"openrouter/auto", "openrouter/bodybuilder"}
    assert not CatalogModel.objects.routable().filter(variable_pricing=True).exists()
