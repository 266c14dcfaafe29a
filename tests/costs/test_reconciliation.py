"""Reported and computed cost agree on OpenRouter's recorded chat completions.

Each recorded call is replayed into the ledger the way an orchestrator reports it: the model is
what the response named (by 2026 the canonical slug, not the id asked for), the tokens and
`usage.cost` as the response gave them. The catalog holds the prices of the snapshot nearest
before the call, synced through the real client from the fake OpenRouter server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.sync import sync_catalog
from costs.models import DailyCost, UsageEvent
from tests.fake_openrouter import SNAPSHOT_DATES, load_snapshot, recorded_dir, requires_recorded

pytestmark = requires_recorded


@pytest.fixture(autouse=True)
def accept_the_recorded_days(settings):
    # The recorded calls keep their real days, which grow older than the usage age bound.
    settings.LLMHIVE_USAGE_MAX_AGE_DAYS = 36_500


def recorded_calls() -> list[tuple[str, dict]]:
    calls = []
    for path in sorted((recorded_dir() / "chat_completions").glob("*.json")):
        recording = json.loads(path.read_text(encoding="utf-8-sig").strip())
        response = recording["response"]
        if response.get("body"):
            body = response["body"]
            if isinstance(body, str):
                body = json.loads(body.strip())  # non-streamed bodies arrive with whitespace first
            usage, model = body["usage"], body["model"]
        else:
            chunks = [e for e in response["sse_events"] if isinstance(e, dict)]
            usage = next(c["usage"] for c in reversed(chunks) if c.get("usage"))
            model = chunks[-1]["model"]
        day = path.stem.split("_")[-2]
        calls.append((path.stem, {"day": day, "model": model, "usage": usage}))
    return calls


def snapshot_before(day: str) -> str:
    earlier = [d for d in SNAPSHOT_DATES if d <= day]
    return earlier[-1] if earlier else SNAPSHOT_DATES[0]


CALLS = recorded_calls() if recorded_dir().exists() else []


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_computed_cost_equals_openrouters_reported_cost(name, call, fake_openrouter, api_client):
    snapshots = [snapshot_before(call["day"])] + [d for d in SNAPSHOT_DATES if d > call["day"]]
    # The snapshot before the call, else the first later one that lists the model (the 2026-04
    # call's model first appears in the 2026-06 snapshot).
    for snapshot in snapshots:
        data = load_snapshot(snapshot)
        if any(call["model"] in (m["id"], m.get("canonical_slug")) for m in data["data"]):
            break
    else:
        pytest.fail(f"no recorded snapshot lists {call['model']}")
    fake_openrouter.set_models(data)
    assert sync_catalog().status == "succeeded"

    usage = call["usage"]
    event = {
        "request_id": name,
        "occurred_at": datetime.fromisoformat(call["day"]).replace(hour=12, tzinfo=UTC).isoformat(),
        "model": call["model"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "reasoning_tokens": usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0),
        "cached_tokens": usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
        "cost_usd": usage["cost"],  # a JSON float, as OpenRouter sends it
        "success": True,
    }
    answer = api_client.post_json("/api/v1/usage", {"events": [event]})

    assert answer.status_code == 200, answer.content
    assert answer.json()["unknown_models"] == []
    stored = UsageEvent.objects.get(request_id=name)
    assert stored.model_id is not None
    assert stored.cost_usd == Decimal(repr(usage["cost"]))
    assert stored.computed_cost_usd == stored.cost_usd, (
        f"{stored.model_id}: computed {stored.computed_cost_usd}, reported {stored.cost_usd}"
    )
    assert DailyCost.objects.get().drift_usd == 0


def test_every_recording_is_replayed():
    # Four recordings: plain and streamed gpt-5, gemini-3-pro-preview, gpt-5.4-nano (canonical slug).
    assert len(CALLS) >= 4
    assert any(c[1]["model"] == "openai/gpt-5.4-nano-20260317" for c in CALLS)
