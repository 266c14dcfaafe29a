"""Families that cover the catalog: the grouping rule (catalog.families), version drift, adopting
suggestions in the admin and from the commands, and the coverage it reaches on every recorded
snapshot."""

from __future__ import annotations

import fnmatch
import io
import json
from http import HTTPStatus

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse

from catalog.families import conflicts, drifts, parse_id, pattern_version, suggest
from catalog.models import (
    AlertKind,
    CatalogModel,
    Family,
    FamilySuggestion,
    SuggestionState,
    SyncStatus,
    classify_family,
)
from catalog.sync import sync_catalog
from core.models import Alert
from tests.factories import CatalogModelFactory, FamilySuggestionFactory
from tests.fake_openrouter import recorded_dir, requires_recorded

SUGGESTIONS = "admin:catalog_familysuggestion_changelist"
MODELS = "admin:catalog_catalogmodel_changelist"

# The families catalog/migrations/0002 seeds, as plain rows (the pure tests need no database).
SEEDED = [
    ("gpt-5.2", "openai/gpt-5.2*", 10),
    ("o3-pro", "openai/o3-pro*", 10),
    ("claude-4.5", "anthropic/claude-*-4.5*", 10),
    ("claude-4", "anthropic/claude-*-4*", 20),
    ("gemini-3", "google/gemini-3*", 10),
    ("grok-4", "x-ai/grok-4*", 10),
    ("llama-4", "meta-llama/llama-4*", 10),
]


def seeded() -> list[Family]:
    return [Family(slug=slug, name=slug, pattern=pattern, priority=priority) for slug, pattern, priority in SEEDED]


def by_pattern(ids, families=()) -> dict:
    return {s.pattern: s for s in suggest(ids, list(families))}


def adopt(families: list[Family], suggestions) -> list[Family]:
    return families + [
        Family(slug=s.slug, name=s.name, pattern=s.pattern, aliases=s.aliases, priority=s.priority) for s in suggestions
    ]


# --- The rule, on the examples ----------------------------------------------------------


@pytest.mark.parametrize(
    "model_id, prefix, version",
    [
        ("openai/gpt-5", "openai/gpt-5", "5"),
        ("openai/gpt-5-mini", "openai/gpt-5", "5"),
        ("openai/gpt-5.1-codex-max", "openai/gpt-5.1", "5.1"),
        ("openai/gpt-5.5-pro", "openai/gpt-5.5", "5.5"),
        ("openai/gpt-4o:extended", "openai/gpt-4o", "4o"),
        ("anthropic/claude-opus-4.6-fast", "anthropic/claude-opus-4.6", "4.6"),
        ("anthropic/claude-3.7-sonnet:thinking", "anthropic/claude-3.7", "3.7"),
        ("google/gemini-3.1-pro-preview-customtools", "google/gemini-3.1", "3.1"),
        ("qwen/qwen3.5-122b-a10b", "qwen/qwen3.5", "3.5"),
        ("qwen/qwen3-235b-a22b-thinking-2507", "qwen/qwen3", "3"),
        ("qwen/qwen-plus-2025-07-28:thinking", "qwen/qwen-plus", None),
        ("mistralai/mistral-large-2512", "mistralai/mistral-large", None),
        ("mistralai/codestral-2508", "mistralai/codestral", None),
        ("cohere/command-r-08-2024", "cohere/command-r", None),
        ("openai/gpt-oss-120b:exacto", "openai/gpt-oss", None),
        ("moonshotai/kimi-k2-0905:exacto", "moonshotai/kimi-k2", "2"),
        ("mistralai/mistral-medium-3-5", "mistralai/mistral-medium-3", "3"),
        ("deepseek/deepseek-r1-0528-qwen3-8b:free", "deepseek/deepseek-r1", "1"),
    ],
)
def test_an_id_is_read_as_author_line_and_version(model_id, prefix, version):
    key = parse_id(model_id)
    assert (key.prefix, key.version) == (prefix, version)
    assert fnmatch.fnmatchcase(model_id, f"{prefix}*")


def test_the_gpt_5_lines_are_one_family_each_and_the_most_specific_wins():
    ids = ["openai/gpt-5", "openai/gpt-5-mini", "openai/gpt-5-codex", "openai/gpt-5.1", "openai/gpt-5.1-codex-mini"]
    ids += ["openai/gpt-5.4", "openai/gpt-5.4-nano", "openai/gpt-5.5", "openai/gpt-5.5-pro"]
    suggestions = by_pattern(ids)
    assert {p: s.model_ids for p, s in suggestions.items()} == {
        "openai/gpt-5*": ["openai/gpt-5", "openai/gpt-5-codex", "openai/gpt-5-mini"],
        "openai/gpt-5.1*": ["openai/gpt-5.1", "openai/gpt-5.1-codex-mini"],
        "openai/gpt-5.4*": ["openai/gpt-5.4", "openai/gpt-5.4-nano"],
        "openai/gpt-5.5*": ["openai/gpt-5.5", "openai/gpt-5.5-pro"],
    }
    # `openai/gpt-5*` also matches gpt-5.1 ... gpt-5.5: it is tried after them
    assert suggestions["openai/gpt-5*"].priority > max(
        s.priority for p, s in suggestions.items() if p != "openai/gpt-5*"
    )
    families = adopt([], suggestions.values())
    assert {m: classify_family(m, families).slug for m in ids if "5.1" in m} == {
        "openai/gpt-5.1": "gpt-5.1",
        "openai/gpt-5.1-codex-mini": "gpt-5.1",
    }
    assert conflicts(ids, families) == {}
    assert suggestions["openai/gpt-5.5*"].name == "GPT 5.5"


def test_variants_dated_releases_and_aliases_belong_to_their_line():
    ids = [
        "anthropic/claude-opus-4.6",
        "anthropic/claude-opus-4.6-fast",
        "anthropic/claude-opus-4.6:thinking",
        "anthropic/claude-sonnet-4.6",
        "anthropic/claude-sonnet-4.5-20250929",
        "~anthropic/claude-sonnet-latest",
        "~anthropic/claude-opus-latest",
        "openai/gpt-4o",
        "openai/gpt-4o:extended",
        "openai/gpt-4o-2024-11-20",
        "qwen/qwen3-235b-a22b",
        "qwen/qwen3-235b-a22b-2507",
        "qwen/qwen3-8b:free",
    ]
    suggestions = by_pattern(ids)
    assert {p: s.model_ids for p, s in suggestions.items()} == {
        "anthropic/claude-opus-4.6*": [
            "anthropic/claude-opus-4.6",
            "anthropic/claude-opus-4.6-fast",
            "anthropic/claude-opus-4.6:thinking",
            "~anthropic/claude-opus-latest",
        ],
        "anthropic/claude-sonnet-4.6*": ["anthropic/claude-sonnet-4.6", "~anthropic/claude-sonnet-latest"],
        "anthropic/claude-sonnet-4.5*": ["anthropic/claude-sonnet-4.5-20250929"],
        "openai/gpt-4o*": ["openai/gpt-4o", "openai/gpt-4o-2024-11-20", "openai/gpt-4o:extended"],
        "qwen/qwen3*": ["qwen/qwen3-235b-a22b", "qwen/qwen3-235b-a22b-2507", "qwen/qwen3-8b:free"],
    }
    # the alias is claimed through the family's extra patterns, not by a family of its own
    assert suggestions["anthropic/claude-sonnet-4.6*"].aliases == ["~anthropic/claude-sonnet-latest"]
    families = adopt([], suggestions.values())
    assert classify_family("~anthropic/claude-sonnet-latest", families).slug == "claude-sonnet-4.6"
    assert not any(s.model_ids == ["~anthropic/claude-opus-latest"] for s in suggestions.values())


def test_gemini_3_1_and_qwen3_5_are_families_of_their_own():
    ids = ["google/gemini-3.1-pro-preview", "google/gemini-3.1-flash-lite", "google/gemini-3-pro-preview"]
    ids += ["qwen/qwen3.5-27b", "qwen/qwen3.5-flash-02-23", "qwen/qwen3-14b"]
    suggestions = by_pattern(ids, seeded())
    assert suggestions["google/gemini-3.1*"].model_ids == [
        "google/gemini-3.1-flash-lite",
        "google/gemini-3.1-pro-preview",
    ]
    assert suggestions["qwen/qwen3.5*"].model_ids == ["qwen/qwen3.5-27b", "qwen/qwen3.5-flash-02-23"]
    assert suggestions["qwen/qwen3*"].model_ids == ["qwen/qwen3-14b"]
    # Gemini 3 keeps gemini-3-pro-preview; gemini-3.1 is taken from it (it drifted), so tried before it
    assert "google/gemini-3*" not in suggestions
    assert suggestions["google/gemini-3.1*"].drift and suggestions["google/gemini-3.1*"].priority < 10
    families = adopt(seeded(), suggestions.values())
    assert classify_family("google/gemini-3-pro-preview", families).slug == "gemini-3"
    assert classify_family("google/gemini-3.1-pro-preview", families).slug == "gemini-3.1"
    assert conflicts(ids, families) == {}


def test_a_slug_two_authors_would_share_names_both_authors():
    ids = ["meta-llama/llama-3.3-70b-instruct", "meta-llama/llama-3.3-70b-instruct:free"]
    ids += ["nvidia/llama-3.3-nemotron-super-49b-v1.5", "openai/gpt-5.5"]
    suggestions = by_pattern(ids)
    assert {s.slug for s in suggestions.values()} == {"meta-llama-3.3", "nvidia-llama-3.3", "gpt-5.5"}
    # and a slug an existing family holds is not suggested again
    taken = [Family(slug="gpt-5.5", name="GPT-5.5", pattern="openai/gpt-5.5-pro", priority=10)]
    assert by_pattern(["openai/gpt-5.5"], taken)["openai/gpt-5.5*"].slug == "openai-gpt-5.5"


def test_an_id_without_a_version_joins_the_line_it_extends():
    ids = ["perplexity/sonar", "perplexity/sonar-pro", "perplexity/sonar-pro-search", "perplexity/sonar-reasoning"]
    assert {p: len(s.model_ids) for p, s in by_pattern(ids).items()} == {"perplexity/sonar*": 4}


def test_a_rejected_pattern_is_not_suggested():
    assert by_pattern(["openai/gpt-5.5"]) != {}
    assert suggest(["openai/gpt-5.5"], [], rejected=["openai/gpt-5.5*"]) == []


# --- Version drift -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_id, pattern, drifted",
    [
        ("anthropic/claude-opus-4.6", "anthropic/claude-*-4*", True),
        ("anthropic/claude-opus-4", "anthropic/claude-*-4*", False),
        ("anthropic/claude-sonnet-4.5", "anthropic/claude-*-4.5*", False),
        ("google/gemini-3.1-pro-preview", "google/gemini-3*", True),
        ("google/gemini-3-flash-preview", "google/gemini-3*", False),
        ("x-ai/grok-4.20", "x-ai/grok-4*", True),
        ("x-ai/grok-4-fast:free", "x-ai/grok-4*", False),
        ("openai/gpt-oss-120b", "openai/gpt-oss*", False),  # a family without a version never drifts
        ("qwen/qwen3.5-27b", "qwen/qwen3.5*", False),
    ],
)
def test_a_model_drifts_when_its_version_differs_from_its_familys(model_id, pattern, drifted):
    assert drifts(model_id, Family(slug="f", pattern=pattern)) is drifted


def test_a_familys_version_is_read_from_its_pattern():
    assert [pattern_version(p) for p in ("anthropic/claude-*-4.5*", "qwen/qwen3.5*", "openai/gpt-4o*", "x/sonar*")] == [
        "4.5",
        "3.5",
        "4o",
        None,
    ]


@pytest.mark.django_db
def test_a_sync_raises_a_drift_alert_per_model_and_answers_it_when_the_drift_is_gone(tmp_path):
    saved = tmp_path / "models.json"
    ids = ["anthropic/claude-opus-4", "anthropic/claude-opus-4.8", "x-ai/grok-4.3", "x-ai/grok-4"]
    saved.write_text(json.dumps({"data": [entry(i) for i in ids]}))

    run = sync_catalog(from_file=saved)

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.details["version_drift"] == 2
    alerts = Alert.objects.open().filter(kind=AlertKind.VERSION_DRIFT)
    assert sorted(a.model_id for a in alerts) == ["anthropic/claude-opus-4.8", "x-ai/grok-4.3"]
    assert "family claude-4 (version 4)" in alerts.get(model_id="anthropic/claude-opus-4.8").message

    call_command("family_suggestions", "--accept-all", stdout=io.StringIO())
    assert CatalogModel.objects.get(pk="anthropic/claude-opus-4.8").family.slug == "claude-opus-4.8"
    sync_catalog(from_file=saved)
    assert not Alert.objects.open().filter(kind=AlertKind.VERSION_DRIFT).exists()


@pytest.mark.django_db
def test_the_model_admin_filters_by_version_drift(admin_client):
    claude_4 = Family.objects.get(slug="claude-4")
    CatalogModelFactory(id="anthropic/claude-opus-4.8", family=claude_4)
    CatalogModelFactory(id="anthropic/claude-opus-4", family=claude_4)
    CatalogModelFactory(id="acme/nothing", family=None)

    def listed(**params):
        response = admin_client.get(reverse(MODELS), params)
        assert response.status_code == HTTPStatus.OK
        return sorted(m.pk for m in response.context["cl"].result_list)

    assert listed(drift="yes") == ["anthropic/claude-opus-4.8"]
    assert listed(drift="no") == ["acme/nothing", "anthropic/claude-opus-4"]
    assert "version drift" in admin_client.get(reverse(MODELS)).content.decode()


# --- The admin page ------------------------------------------------------------------------------


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def action(client, name: str, suggestions) -> object:
    data = {"action": name, "_selected_action": [str(s.pk) for s in suggestions]}
    return client.post(reverse(SUGGESTIONS), data, follow=True)


@pytest.fixture
def gpt_55(db):
    """Two unclassified models and the suggestion research makes for them."""
    for model_id in ("openai/gpt-5.5", "openai/gpt-5.5-pro", "acme/widget-2"):
        CatalogModelFactory(id=model_id, family=None)
    call_command("family_suggestions", stdout=io.StringIO())
    return FamilySuggestion.objects.get(pattern="openai/gpt-5.5*")


def test_the_admin_lists_pending_suggestions_with_the_models_each_would_take(admin_client, gpt_55):
    FamilySuggestionFactory(slug="old", state=SuggestionState.REJECTED)

    response = admin_client.get(reverse(SUGGESTIONS))

    assert response.status_code == HTTPStatus.OK
    assert sorted(s.slug for s in response.context["cl"].result_list) == ["gpt-5.5", "widget-2"]
    assert "openai/gpt-5.5, openai/gpt-5.5-pro" in response.content.decode()
    everything = admin_client.get(reverse(SUGGESTIONS), {"state": "all"})
    assert len(everything.context["cl"].result_list) == 3


def test_accepting_creates_the_families_and_classifies_their_models(admin_client, gpt_55):
    both = FamilySuggestion.objects.filter(state=SuggestionState.PENDING)

    response = action(admin_client, "accept_suggestions", both)

    assert "Accepted 2 suggestions" in " ".join(messages_of(response))
    assert CatalogModel.objects.get(pk="openai/gpt-5.5-pro").family.slug == "gpt-5.5"
    assert CatalogModel.objects.get(pk="acme/widget-2").family.slug == "widget-2"
    gpt_55.refresh_from_db()
    assert gpt_55.state == SuggestionState.ACCEPTED and gpt_55.decided_at and gpt_55.family.slug == "gpt-5.5"


def test_a_suggestion_is_edited_then_accepted_from_its_change_form(admin_client, gpt_55):
    url = reverse("admin:catalog_familysuggestion_change", args=[gpt_55.pk])
    form = {
        "slug": "gpt-5-5-top",
        "name": "GPT-5.5 (top)",
        "pattern": "openai/gpt-5.5-pro",
        "aliases": "[]",
        "priority": "5",
        "vendor": "OpenAI",
        "state": SuggestionState.ACCEPTED,
    }

    response = admin_client.post(url, form, follow=True)

    assert response.status_code == HTTPStatus.OK
    family = Family.objects.get(slug="gpt-5-5-top")
    assert (family.pattern, family.priority, family.name) == ("openai/gpt-5.5-pro", 5, "GPT-5.5 (top)")
    assert list(family.models.values_list("id", flat=True)) == ["openai/gpt-5.5-pro"]
    assert CatalogModel.objects.get(pk="openai/gpt-5.5").family is None


def test_accepting_with_a_slug_a_family_holds_is_refused_on_the_form(admin_client, gpt_55):
    url = reverse("admin:catalog_familysuggestion_change", args=[gpt_55.pk])
    form = {"slug": "gemini-3", "name": "x", "pattern": gpt_55.pattern, "aliases": "[]", "priority": "5"}

    response = admin_client.post(url, {**form, "vendor": "", "state": SuggestionState.ACCEPTED})

    assert response.status_code == HTTPStatus.OK  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert errors["slug"] == ["A family with this slug exists: choose another before accepting."]
    gpt_55.refresh_from_db()
    assert gpt_55.state == SuggestionState.PENDING


def test_a_rejected_suggestion_is_remembered_and_not_suggested_again(admin_client, gpt_55):
    response = action(admin_client, "reject_suggestions", [gpt_55])

    assert "Rejected 1 suggestion." in messages_of(response)
    out = io.StringIO()
    call_command("family_suggestions", "--json", stdout=out)
    assert [s["pattern"] for s in json.loads(out.getvalue())["suggestions"]] == ["acme/widget-2*"]
    gpt_55.refresh_from_db()
    assert gpt_55.state == SuggestionState.REJECTED and gpt_55.decided_at is not None
    assert CatalogModel.objects.get(pk="openai/gpt-5.5").family is None


def test_a_decided_suggestion_is_read_only(admin_client, gpt_55):
    action(admin_client, "reject_suggestions", [gpt_55])
    url = reverse("admin:catalog_familysuggestion_change", args=[gpt_55.pk])

    response = admin_client.get(url)

    assert response.status_code == HTTPStatus.OK
    assert 'name="slug"' not in response.content.decode()


# --- The commands --------------------------------------------------------------------------------


def test_family_suggestions_json_and_accept_all(gpt_55):
    out = io.StringIO()

    call_command("family_suggestions", "--json", "--accept-all", stdout=out)

    result = json.loads(out.getvalue())
    assert set(result) == {"suggestions", "accepted", "moved"}
    first = next(s for s in result["suggestions"] if s["slug"] == "gpt-5.5")
    assert set(first) == {
        "pattern",
        "aliases",
        "slug",
        "name",
        "vendor",
        "priority",
        "count",
        "models",
        "drift",
        "extends",
    }
    assert first["models"] == ["openai/gpt-5.5", "openai/gpt-5.5-pro"]
    assert sorted(result["accepted"]) == ["gpt-5.5", "widget-2"] and result["moved"] == 3
    out = io.StringIO()
    call_command("family_coverage", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"active": 3, "in_family": 3, "unclassified": 0, "fraction": 1.0}


def test_family_suggestions_text_output(gpt_55):
    out = io.StringIO()
    call_command("family_suggestions", stdout=out)
    lines = out.getvalue().splitlines()
    assert "gpt-5.5: openai/gpt-5.5* priority" in lines[0] or "gpt-5.5: openai/gpt-5.5* priority" in lines[1]
    assert lines[-1] == "2 pending suggestion(s)"


def test_accept_all_fails_with_one_line_when_a_slug_is_taken(gpt_55):
    gpt_55.slug = "gemini-3"
    gpt_55.save()
    # the next refresh would rename it: accept what the admin left, as the admin left it
    FamilySuggestion.objects.filter(pk=gpt_55.pk).update(slug="gemini-3")

    with pytest.raises(CommandError, match=r"^a family with slug 'gemini-3' exists"):
        call_command("family_suggestions", "--accept-all", stdout=io.StringIO())


@pytest.mark.django_db
def test_family_coverage_text():
    CatalogModelFactory(id="google/gemini-3-pro-preview", family=Family.objects.get(slug="gemini-3"))
    CatalogModelFactory(id="acme/other", family=None)
    out = io.StringIO()
    call_command("family_coverage", stdout=out)
    assert out.getvalue().strip() == "1 of 2 active models are in a family (50.0%); 1 unclassified"


@pytest.mark.django_db
def test_research_from_a_file_runs_offline_and_says_what_it_skipped(tmp_path, settings):
    settings.OPENROUTER_BASE_URL = "http://127.0.0.1:9/api/v1"  # nothing listens: a request would fail
    saved = tmp_path / "models.json"
    saved.write_text(json.dumps({"data": [entry("openai/gpt-5.5"), entry("x-ai/grok-4.3")]}))
    out, err = io.StringIO(), io.StringIO()

    call_command("research_catalog", "--from-file", str(saved), "--no-progress", stdout=out, stderr=err)

    assert out.getvalue().startswith("research succeeded: 2 seen, 2 added")
    assert err.getvalue().splitlines() == [
        "rankings: skipped, the run reads a saved file (category rankings need OpenRouter)",
        "endpoints: skipped, the run reads a saved file (endpoints need OpenRouter)",
    ]
    assert sorted(FamilySuggestion.objects.values_list("pattern", flat=True)) == ["openai/gpt-5.5*", "x-ai/grok-4.3*"]
    assert not Alert.objects.filter(kind=AlertKind.SYNC_FAILED).exists()


@pytest.mark.django_db
def test_research_from_a_missing_file_fails_with_one_line(tmp_path):
    with pytest.raises(CommandError) as failure:
        call_command("research_catalog", "--from-file", str(tmp_path / "absent.json"), "--no-progress")
    assert "\n" not in str(failure.value) and "cannot read" in str(failure.value)


# --- Coverage on every recorded snapshot ---------------------------------------------------------

# Every file in the folder, not a list of dates: a snapshot added later is tested too.
SNAPSHOTS = sorted(p.name for p in (recorded_dir() / "models").glob("*.json"))


@requires_recorded
@pytest.mark.django_db
@pytest.mark.parametrize("name", SNAPSHOTS)
def test_accepting_every_suggestion_covers_95_percent_of_every_snapshot(name):
    path = recorded_dir() / "models" / name
    run = sync_catalog(from_file=path)
    assert run.status == SyncStatus.SUCCEEDED, run.error
    before = json.loads(_call("family_coverage", "--json"))

    result = json.loads(_call("family_suggestions", "--json", "--accept-all"))

    after = json.loads(_call("family_coverage", "--json"))
    print(
        f"\n{name}: {before['in_family']}/{before['active']} in a family before, "
        f"{after['in_family']}/{after['active']} ({after['fraction']:.1%}) after accepting "
        f"{len(result['accepted'])} suggestions"
    )
    assert after["fraction"] >= 0.95
    families = list(Family.objects.all())
    active = list(CatalogModel.objects.active().values_list("id", flat=True))
    assert conflicts(active, families) == {}
    slugs = [f.slug for f in families]
    assert len(slugs) == len(set(slugs))
    # nothing left to suggest, and no model drifts any more
    assert json.loads(_call("family_suggestions", "--json"))["suggestions"] == []
    assert not any(drifts(m.id, m.family) for m in CatalogModel.objects.active().select_related("family"))


def _call(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def entry(model_id: str) -> dict:
    """A minimal model entry in OpenRouter's shape."""
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": f"Vendor: {model_id.split('/')[-1]}",
        "created": 1760000000,
        "context_length": 128000,
        "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]},
        "pricing": {"prompt": "0.000001", "completion": "0.000002"},
        "top_provider": {"context_length": 128000, "max_completion_tokens": None, "is_moderated": False},
        "supported_parameters": ["max_tokens"],
    }


def test_a_family_claims_aliases_through_its_extra_globs_edited_in_the_admin(admin_client):
    CatalogModelFactory(id="~anthropic/claude-opus-latest", family=None)
    family = Family.objects.get(slug="claude-4.5")
    url = reverse("admin:catalog_family_change", args=[family.pk])
    form = {"slug": family.slug, "name": family.name, "pattern": family.pattern, "priority": family.priority}

    bad = admin_client.post(url, {**form, "vendor": "", "aliases": '"~anthropic/claude-opus-latest"'})
    assert bad.context["adminform"].form.errors["aliases"] == [
        'A list of globs, e.g. ["~anthropic/claude-opus-latest"].'
    ]
    admin_client.post(url, {**form, "vendor": "", "aliases": '["~anthropic/claude-opus-latest"]'}, follow=True)

    assert CatalogModel.objects.get(pk="~anthropic/claude-opus-latest").family == family


def test_a_suggestion_is_rejected_from_its_change_form(admin_client, gpt_55):
    url = reverse("admin:catalog_familysuggestion_change", args=[gpt_55.pk])
    form = {"slug": gpt_55.slug, "name": gpt_55.name, "pattern": gpt_55.pattern, "aliases": "[]", "priority": "5"}

    response = admin_client.post(url, {**form, "vendor": "", "state": SuggestionState.REJECTED}, follow=True)

    assert "Rejected openai/gpt-5.5*: it will not be suggested again." in messages_of(response)
    gpt_55.refresh_from_db()
    assert gpt_55.state == SuggestionState.REJECTED
    assert not Family.objects.filter(pattern="openai/gpt-5.5*").exists()


def test_an_alias_whose_line_has_its_family_is_added_to_that_family():
    ids = ["anthropic/claude-haiku-4.5", "~anthropic/claude-haiku-latest"]

    [suggestion] = suggest(ids, seeded())

    assert (suggestion.pattern, suggestion.extends.slug) == ("~anthropic/claude-haiku-latest", "claude-4.5")
    assert suggestion.aliases == ["~anthropic/claude-haiku-latest"]


@pytest.mark.django_db
def test_accepting_an_alias_extension_adds_the_glob_to_the_family():
    CatalogModelFactory(id="anthropic/claude-haiku-4.5", family=Family.objects.get(slug="claude-4.5"))
    CatalogModelFactory(id="~anthropic/claude-haiku-latest", family=None)
    out = io.StringIO()

    call_command("family_suggestions", "--accept-all", stdout=out)

    assert "(adds to claude-4.5)" in out.getvalue()
    family = Family.objects.get(slug="claude-4.5")
    assert family.aliases == ["~anthropic/claude-haiku-latest"]
    assert CatalogModel.objects.get(pk="~anthropic/claude-haiku-latest").family == family
    assert Family.objects.count() == len(SEEDED)
