"""Replay the recorded OpenRouter snapshots in date order through the real HTTP client.

The expectations are computed here from the files themselves and from the rule tables of
ARCHITECTURE.md, written out again independently of the code under test.
"""

from __future__ import annotations

import re

import pytest

from catalog.models import CatalogModel, ModelStatus, SyncStatus
from catalog.sync import sync_catalog
from tests.fake_openrouter import SNAPSHOT_DATES, load_snapshot, requires_recorded

pytestmark = [pytest.mark.django_db, requires_recorded]

# ARCHITECTURE.md's family table, as (priority, slug, pattern); lower priority is tried first.
FAMILY_TABLE = [
    (10, "claude-4.5", "anthropic/claude-*-4.5*"),
    (10, "gemini-3", "google/gemini-3*"),
    (10, "gpt-5.2", "openai/gpt-5.2*"),
    (10, "grok-4", "x-ai/grok-4*"),
    (10, "llama-4", "meta-llama/llama-4*"),
    (10, "o3-pro", "openai/o3-pro*"),
    (20, "claude-4", "anthropic/claude-*-4*"),
]


def expected_family(model_id: str) -> str | None:
    for _, slug, pattern in sorted(FAMILY_TABLE):
        # a glob written as a regex by hand: '*' is any run of characters, everything else literal
        regex = "".join(".*" if ch == "*" else re.escape(ch) for ch in pattern)
        if re.fullmatch(regex, model_id, flags=re.DOTALL):
            return slug
    return None


def expected_capabilities(raw: dict) -> dict[str, bool]:
    params = raw.get("supported_parameters") or []
    inputs = (raw.get("architecture") or {}).get("input_modalities") or []
    return {
        "supports_tools": "tools" in params,
        "supports_reasoning": "reasoning" in params,
        "supports_structured_outputs": "structured_outputs" in params,
        "supports_multimodal_image": "image" in inputs,
        "supports_file_pdf": "file" in inputs,
        "supports_audio": "audio" in inputs,
        "supports_video": "video" in inputs,
    }


def test_replaying_the_snapshots_matches_the_id_differences_families_and_capabilities(fake_openrouter, settings):
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 0
    ever_seen: set[str] = set()
    active: set[str] = set()

    for date in SNAPSHOT_DATES:
        payload = load_snapshot(date)
        ids = {m["id"] for m in payload["data"]}
        added = ids - ever_seen
        returned = (ids & ever_seen) - active
        missing = active - ids
        fake_openrouter.set_models(payload)

        run = sync_catalog()
        if active and len(missing) > 0.2 * len(active):
            # 2026-01-29 -> 2026-06-29 drops 35% of the models: refused, then applied on purpose
            assert run.status == SyncStatus.FAILED, date
            assert f"would mark {len(missing)} of {len(active)} active models missing" in run.error
            run = sync_catalog(force=True)

        assert run.status == SyncStatus.SUCCEEDED, (date, run.error)
        assert (run.seen, run.added, run.reactivated, run.missing) == (
            len(ids),
            len(added),
            len(returned),
            len(missing),
        ), date
        assert set(CatalogModel.objects.filter(status=ModelStatus.ACTIVE).values_list("id", flat=True)) == ids
        ever_seen |= ids
        active = ids

        stored = {m.id: m for m in CatalogModel.objects.select_related("family").filter(id__in=ids)}
        for raw in payload["data"]:
            model = stored[raw["id"]]
            assert (model.family.slug if model.family else None) == expected_family(raw["id"]), raw["id"]
            assert model.capabilities == expected_capabilities(raw), raw["id"]

    assert CatalogModel.objects.count() == len(ever_seen)  # nothing was ever deleted


def test_the_family_table_sends_claude_sonnet_4_5_to_claude_4_5_not_claude_4(fake_openrouter):
    fake_openrouter.set_models(load_snapshot("2025-12-18"))
    sync_catalog()

    assert CatalogModel.objects.get(id="anthropic/claude-sonnet-4.5").family.slug == "claude-4.5"
    assert CatalogModel.objects.get(id="anthropic/claude-sonnet-4").family.slug == "claude-4"


def test_qwen_models_that_leave_and_return_are_reactivated_not_duplicated(fake_openrouter):
    for date in ("2025-12-18", "2026-01-15", "2026-01-29"):
        fake_openrouter.set_models(load_snapshot(date))
        assert sync_catalog().status == SyncStatus.SUCCEEDED

    left = {m["id"] for m in load_snapshot("2025-12-18")["data"]} - {
        m["id"] for m in load_snapshot("2026-01-15")["data"]
    }
    back = left & {m["id"] for m in load_snapshot("2026-01-29")["data"]}
    qwen_back = {model_id for model_id in back if model_id.startswith("qwen/")}
    assert len(qwen_back) == 11
    for model in CatalogModel.objects.filter(id__in=qwen_back):
        assert model.status == ModelStatus.ACTIVE and model.missing_since is None
