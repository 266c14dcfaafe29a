"""Properties of every decision over the recorded 349-model catalog (hypothesis).

The expectations are computed here from the database rows, independently of the snapshot and
selection code: what a model must be to serve a request, and what an escalation chain may hold.
"""

from __future__ import annotations

import io
import tokenize
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from catalog.models import CAPABILITIES, CatalogModel, Family, ModelStatus
from core.models import DataVersion
from routing.api import EscalateOut, RouteOut
from routing.decision import EscalateRequest, RouteRequest, RoutingError, decide, escalate
from routing.models import EscalationOverride
from routing.snapshot import build_snapshot
from tests.factories import EscalationOverrideFactory, RoleFactory, RolePreferenceFactory
from tests.fake_openrouter import SNAPSHOT_DATES, load_snapshot, requires_recorded, snapshot_path

pytestmark = [pytest.mark.django_db, requires_recorded]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = hsettings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ROLES = {
    "anything": {"required_capabilities": [], "min_context_length": None},
    "coder": {"required_capabilities": ["supports_tools"], "min_context_length": 64_000},
    "vision": {"required_capabilities": ["supports_multimodal_image"], "min_context_length": None},
    "thinker": {
        "required_capabilities": ["supports_reasoning", "supports_structured_outputs"],
        "min_context_length": 100_000,
        "default_accuracy": "high",
    },
}


@pytest.fixture
def world(db):
    """The 2025-12-18 catalog with some models disabled, expired and gone, four roles,
    preferences (one of them on a disabled model) and escalation overrides."""
    call_command("sync_catalog", "--from-file", str(snapshot_path("2025-12-18")), "--no-progress", stdout=io.StringIO())
    ids = sorted(CatalogModel.objects.values_list("id", flat=True))
    assert len(ids) >= 300
    yesterday = timezone.now().date() - timedelta(days=1)
    CatalogModel.objects.filter(id__in=ids[::17]).update(enabled=False)
    CatalogModel.objects.filter(id__in=ids[5::23]).update(expiration_date=yesterday)
    CatalogModel.objects.filter(id__in=ids[9::29]).update(status=ModelStatus.MISSING)
    roles = {slug: RoleFactory(slug=slug, **spec) for slug, spec in ROLES.items()}

    tools = list(
        CatalogModel.objects.filter(supports_tools=True, context_length__gte=64_000)
        .order_by("id")
        .values_list("id", flat=True)
    )
    disabled_tool_model = CatalogModel.objects.filter(supports_tools=True, enabled=False).order_by("id").first()
    for position, model_id in enumerate([disabled_tool_model.id, tools[40], tools[3]]):
        RolePreferenceFactory(role=roles["coder"], model_id=model_id, position=position)
    family = Family.objects.filter(slug="claude-4.5").first() or Family.objects.first()
    RolePreferenceFactory(role=roles["coder"], family=family, position=9)
    # A chain a → b → c and a family override, some for one role only.
    EscalationOverrideFactory(from_model_id=tools[0], to_model_id=tools[1], position=1)
    EscalationOverrideFactory(from_model_id=tools[1], to_model_id=tools[2], position=2)
    EscalationOverrideFactory(from_family=family, to_model_id=tools[5], role=roles["coder"], position=3)
    rows = {m["id"]: m for m in CatalogModel.objects.values()}
    return {"rows": rows, "ids": ids, "roles": roles, "snapshot": build_snapshot(DataVersion.current())}


def statically_eligible(row: dict, required: set[str], min_context: int) -> bool:
    """What a model must be for these requirements and for these roles (text output only, no
    `:free` variants: the roles keep the defaults)."""
    today = timezone.now().date()
    return (
        not row["id"].endswith(":free")
        and set(row["output_modalities"] or []) <= {"text"}
        and row["status"] == ModelStatus.ACTIVE
        and row["enabled"]
        and (row["expiration_date"] is None or row["expiration_date"] > today)
        and not row["variable_pricing"]
        and row["price_prompt"] is not None
        and row["price_completion"] is not None
        and (row["context_length"] or 0) >= min_context
        and all(row[c] for c in required)
    )


def cost_of(row: dict, input_tokens: int, output_tokens: int) -> Decimal:
    return row["price_prompt"] * input_tokens + row["price_completion"] * output_tokens + (row["price_request"] or 0)


requests = st.fixed_dictionaries(
    {
        "role": st.sampled_from(sorted(ROLES)),
        "required_capabilities": st.lists(st.sampled_from(CAPABILITIES), max_size=3, unique=True),
        "min_context_length": st.sampled_from([None, 8_000, 32_000, 128_000, 200_000, 1_000_000, 3_000_000]),
        "accuracy": st.sampled_from([None, "high", "balanced", "economy"]),
        "max_cost_usd": st.one_of(st.none(), st.decimals(min_value=0, max_value=2, places=6)),
        "estimated_input_tokens": st.integers(0, 400_000),
        "estimated_output_tokens": st.integers(0, 40_000),
        "fallback_count": st.integers(0, 5),
        "exclude_picks": st.lists(st.integers(0, 10_000), max_size=40),
    }
)


def test_every_decision_meets_the_request_and_every_chain_is_clean(world):
    rows, ids, snapshot = world["rows"], world["ids"], world["snapshot"]
    outcomes = {"routed": 0, "no_eligible_model": 0}

    @EXAMPLES
    @given(requests)
    def check(drawn):
        spec = ROLES[drawn["role"]]
        exclude = sorted({ids[i % len(ids)] for i in drawn.pop("exclude_picks")})
        request = RouteRequest(**drawn, exclude=exclude)
        required = set(spec["required_capabilities"]) | set(request.required_capabilities)
        min_context = max(spec["min_context_length"] or 0, request.min_context_length or 0)
        inp, out = request.estimated_input_tokens, request.estimated_output_tokens

        def serves(model_id: str) -> bool:
            row = rows[model_id]
            return (
                statically_eligible(row, required, min_context)
                and model_id not in exclude
                and (request.max_cost_usd is None or cost_of(row, inp, out) <= request.max_cost_usd)
            )

        eligible = {model_id for model_id in rows if serves(model_id)}
        try:
            answer = decide(request, snap=snapshot)
        except RoutingError as error:
            assert error.code == "no_eligible_model" and error.status == 422
            assert not eligible, f"refused although {sorted(eligible)[:3]} could serve"
            assert sum(error.extra["rejected"].values()) == len(rows)  # each model counted once, with its reason
            outcomes["no_eligible_model"] += 1
            return
        outcomes["routed"] += 1
        chosen = [answer["model"], *answer["fallbacks"]]
        assert set(chosen) <= eligible
        assert len(set(chosen)) == len(chosen)
        assert len(answer["fallbacks"]) == min(request.fallback_count, len(eligible) - 1)
        assert Decimal(answer["estimated_cost_usd"]) == cost_of(rows[answer["model"]], inp, out)
        chain = answer["escalation"]
        assert len(set(chain)) == len(chain)
        assert not set(chain) & (set(chosen) | set(exclude))
        for model_id in chain:
            assert statically_eligible(rows[model_id], required, min_context), model_id
            assert request.max_cost_usd is None or cost_of(rows[model_id], inp, out) <= request.max_cost_usd
        accuracy = request.accuracy or spec.get("default_accuracy", "balanced")
        if accuracy == "high" and drawn["role"] != "coder" and any(rows[m]["supports_reasoning"] for m in eligible):
            assert rows[answer["model"]]["supports_reasoning"], "high accuracy puts reasoning-capable models first"
        if drawn["role"] == "coder":
            # The role's preferences come first when eligible: the disabled one is skipped.
            prefs = [p for p in world["roles"]["coder"].preferences.order_by("position") if p.model_id]
            first = next((p.model_id for p in prefs if p.model_id in eligible), None)
            if first is not None:
                assert answer["model"] == first

    check()
    assert outcomes["routed"] > 50 and outcomes["no_eligible_model"] > 5, outcomes


def test_escalation_never_repeats_never_cycles_and_skips_the_failed_and_excluded(world):
    rows, ids, snapshot = world["rows"], world["ids"], world["snapshot"]

    @EXAMPLES
    @given(
        role=st.sampled_from(sorted(ROLES)),
        failed=st.integers(0, 10_000),
        exclude_picks=st.lists(st.integers(0, 10_000), max_size=20),
    )
    def check(role, failed, exclude_picks):
        failed_model = ids[failed % len(ids)]
        exclude = sorted({ids[i % len(ids)] for i in exclude_picks})
        spec = ROLES[role]
        answer = escalate(EscalateRequest(role=role, failed_model=failed_model, exclude=exclude), snap=snapshot)
        chain = answer["chain"]
        assert len(set(chain)) == len(chain)
        assert failed_model not in chain and not set(chain) & set(exclude)
        for model_id in chain:
            assert statically_eligible(
                rows[model_id], set(spec["required_capabilities"]), spec["min_context_length"] or 0
            )
        assert answer["model"] == (chain[0] if chain else None)

    check()


def test_the_override_chain_is_followed_before_dynamic_escalation(world, api_client):
    first = EscalationOverride.objects.order_by("position").first()
    second = EscalationOverride.objects.get(from_model=first.to_model)

    response = api_client.post_json("/api/v1/escalate", {"role": "anything", "failed_model": first.from_model_id})

    body = response.json()
    assert response.status_code == 200, body
    EscalateOut.model_validate(body)
    assert body["chain"][:2] == [first.to_model_id, second.to_model_id]
    assert [s["source"] for s in body["steps"][:2]] == ["override", "override"]


def test_a_model_disabled_in_the_admin_disappears_from_the_next_decisions(world, api_client, admin_client):
    before = api_client.post_json("/api/v1/route", {"role": "vision", "fallback_count": 5}).json()
    gone = before["model"]

    admin_client.post(
        reverse("admin:catalog_catalogmodel_changelist"),
        {"action": "disable_models", "_selected_action": [gone]},
    )

    assert CatalogModel.objects.get(pk=gone).enabled is False
    for _ in range(3):
        response = api_client.post_json("/api/v1/route", {"role": "vision", "fallback_count": 5})
        after = RouteOut.model_validate_json(response.content).model_dump()
        assert gone not in [after["model"], *after["fallbacks"], *after["escalation"]]
        assert after["model"] == before["fallbacks"][0]


# --- No model id in routing code -----------------------------------------------------------------


def recorded_ids() -> set[str]:
    ids: set[str] = set()
    for date in SNAPSHOT_DATES:
        for entry in load_snapshot(date)["data"]:
            ids.add(entry["id"])
            if entry.get("canonical_slug"):
                ids.add(entry["canonical_slug"])
    return ids


def string_literals(path: Path):
    with path.open("rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            if token.type == tokenize.STRING:
                yield token.start[0], token.string


def test_no_model_id_appears_in_routing_selection_or_escalation_code():
    """Routing is data-driven: model ids live in the catalog, the admin and the bootstrap list
    (settings.BOOTSTRAP_FALLBACK_MODELS) only."""
    known = recorded_ids()
    slugs = {model_id.split("/", 1)[1].split(":")[0] for model_id in known}
    sources = sorted((ROOT / "routing").rglob("*.py")) + [ROOT / "costs" / "budgets.py"]
    found = []
    for path in sources:
        if "migrations" in path.parts:
            continue
        for line, literal in string_literals(path):
            if any(model_id in literal for model_id in known) or any(
                f"'{slug}'" in literal or f'"{slug}"' in literal for slug in slugs if len(slug) > 4
            ):
                found.append(f"{path.relative_to(ROOT)}:{line}: {literal[:80]}")
    assert sources and not found, "model ids in routing code:\n" + "\n".join(found)


def test_the_source_scan_would_catch_a_model_id(tmp_path):
    sample = tmp_path / "sample.py"
    model_id = sorted(recorded_ids())[0]
    sample.write_text(f'HIGH_ACCURACY = ["{model_id}"]\n')
    assert any(model_id in literal for _, literal in string_literals(sample))


@pytest.mark.parametrize("prepared", [False, True], ids=["updated-when-asked", "prepared"])
def test_a_ranking_updated_for_new_outcomes_equals_one_made_afresh(world, monkeypatch, prepared):
    """New outcomes of a shape do not make its memoised rankings again: each is updated for the
    models that moved (routing.scoring._updated), over several batches, some of them while nobody
    asked for the ranking; either when next asked for or, for those that were current, before
    the new snapshot is used (routing.scoring.prepare). Every candidate, its order, score and
    parts, must be what a ranking made from nothing on the same snapshot gives."""
    import random

    from routing import scoring
    from routing.snapshot import current_snapshot
    from tests.factories import CategoryFactory, ingest

    if not prepared:
        monkeypatch.setattr(scoring, "PREPARED_RANKINGS", 0)

    CategoryFactory(slug="programming")
    rng = random.Random(12)
    snap = current_snapshot()
    asked = []
    for _ in range(40):
        role = snap.roles[rng.choice(sorted(ROLES))]
        asked.append(
            (
                role,
                rng.choice([None, "programming"]),
                rng.choice(["high", "balanced", "economy"]),
                frozenset(rng.sample(["supports_tools", "supports_structured_outputs"], rng.randint(0, 1))),
                rng.choice([0, 32_000]),
                rng.randint(0, 200_000),
                rng.randint(0, 20_000),
                rng.choice([None, None, "latency"]),
                rng.random() < 0.8,
            )
        )

    def rank(snap, asked_for, memoised=True):
        role, category, accuracy, required, min_context, inp, out, optimize, preferences = asked_for
        if memoised:
            return scoring.ranked_for(
                snap, role, category, accuracy, required, min_context, inp, out, optimize, preferences
            )
        weights = scoring.weights_for(accuracy, optimize)
        return scoring._rank(snap, role, category, accuracy, required, min_context, inp, out, weights, preferences)

    def walked(ranking) -> list[tuple]:
        return [(c.model.id, c.score, c.parts, c.preferred) for c in ranking.ordered]

    candidates = sorted({c.model.id for a in asked for c in list(rank(snap, a).ordered)[:12]})
    updates, stale_arrays = [], 0
    update = scoring._updated
    monkeypatch.setattr(scoring, "_updated", lambda *args: updates.append(args[2]) or update(*args))
    for batch in range(4):
        events = [
            {
                "model": rng.choice(candidates),
                "role": rng.choice(sorted(ROLES)),
                "category": rng.choice(["", "programming"]),
                "success": rng.random() < 0.6,
                "latency_ms": rng.choice([None, rng.randint(50, 20_000)]),
            }
            for _ in range(60)
        ]
        ingest(*events)
        snap = current_snapshot()
        if not prepared:
            assert snap.stale, "the touched shapes' rankings are kept as stale, not dropped"
        # Half the shapes are asked for (the rest stay stale longer), and no shape of one role
        # before the third batch (its outcome arrays stay stale across two batches too).
        for a in asked[batch % 2 :: 2]:
            if batch < 2 and a[0].slug == "thinker":
                continue
            stale_arrays += (a[0].slug, a[1] or "") in snap.stale_arrays
            fresh = rank(snap.without_memo(), a, memoised=False)
            assert walked(rank(snap, a)) == walked(fresh)
    assert len(updates) > 20 and max(map(len, updates)) > 5, updates
    assert stale_arrays or prepared
