"""The research job against the fake OpenRouter: category rankings, endpoints of the models that
matter, family suggestions, the digest alert, and `manage.py research_catalog`."""

from __future__ import annotations

import fnmatch
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from catalog import research
from catalog.client import openrouter_client
from catalog.models import (
    AlertKind,
    CatalogModel,
    Category,
    CategoryRanking,
    Family,
    FamilySuggestion,
    ModelEndpoint,
    SyncKind,
    SyncRun,
    SyncStatus,
    SyncTrigger,
)
from catalog.research import (
    models_that_matter,
    record_rankings,
    refresh_endpoints,
    research_catalog,
)
from catalog.selectors import current_rankings_queryset
from catalog.signals import models_that_matter as models_that_matter_signal
from catalog.sync import sync_catalog
from catalog.tasks import research_catalog_task
from core.models import Alert
from tests.fake_openrouter import (
    drop,
    html_error,
    load_snapshot,
    published_endpoint,
    requires_recorded,
    status,
    truncated,
)
from tests.servers import free_port, project_env

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
MODELS = [f"acme/model-{i}" for i in range(12)]


def entry(model_id: str) -> dict:
    """A minimal model entry in OpenRouter's shape."""
    return {
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
        "pricing": {"prompt": "0.000001", "completion": "0.000002"},
        "top_provider": {"context_length": 128000, "max_completion_tokens": None, "is_moderated": False},
        "supported_parameters": ["max_tokens"],
        "default_parameters": {},
    }


def entries(ids: list[str]) -> list[dict]:
    return [entry(model_id) for model_id in ids]


def endpoint(provider: str, **overrides) -> dict:
    """An endpoint in the shape OpenRouter publishes (tests.fake_openrouter.published_endpoint),
    priced like the models these tests research."""
    pricing = {"completion": "0.00006", "image": "0", "prompt": "0.00003", "request": "0", "discount": 0}
    return published_endpoint(provider, **{"pricing": pricing, **overrides})


def serve(fake, ids: list[str]) -> None:
    """OpenRouter lists these models, and answers for the endpoints of each."""
    fake.set_models(entries(ids))
    for model_id in ids:
        fake.set_endpoints(model_id, [endpoint("OpenAI")])


def current(category: str) -> list[tuple[int, str, int]]:
    """The current ranking of a category as (rank, model, run)."""
    rows = current_rankings_queryset().filter(category__slug=category).order_by("rank")
    return [(row.rank, row.model_id, row.run_id) for row in rows]


def category_requests(fake) -> list[str]:
    return [r.query["category"] for r in fake.requests_to("/models") if "category" in r.query]


def endpoint_requests(fake) -> list[str]:
    return sorted(r.path for r in fake.requests if r.path.endswith("/endpoints"))


def providers(model_id: str) -> list[str]:
    return sorted(ModelEndpoint.objects.filter(model_id=model_id).values_list("provider_name", flat=True))


@pytest.fixture(autouse=True)
def fast_client(settings):
    settings.LLMHIVE_OPENROUTER_TIMEOUT = 1.0
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1


# --- Rankings -----------------------------------------------------------------------------------


def test_each_active_categorys_order_is_recorded_as_rank_with_the_run(fake_openrouter):
    serve(fake_openrouter, MODELS)
    fake_openrouter.set_category_models(
        "programming", entries(["acme/model-3", "acme/model-1", "elsewhere/not-in-the-catalog", "acme/model-7"])
    )
    fake_openrouter.set_category_models("roleplay", entries(["acme/model-2", "acme/model-0"]))

    run = research_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.kind == SyncKind.RESEARCH
    assert run.details["errors"] == []
    # rank is the position among the models the catalog knows: 1..n without holes
    assert current("programming") == [
        (1, "acme/model-3", run.pk),
        (2, "acme/model-1", run.pk),
        (3, "acme/model-7", run.pk),
    ]
    assert current("roleplay") == [(1, "acme/model-2", run.pk), (2, "acme/model-0", run.pk)]
    assert CategoryRanking.objects.count() == 5 == run.details["rankings"]
    # one request per active category, each asking for that category
    active = sorted(Category.objects.filter(active=True).values_list("slug", flat=True))
    assert len(active) == 12
    assert sorted(category_requests(fake_openrouter)) == active


def test_a_second_research_makes_the_newest_set_current_and_keeps_the_old_one(fake_openrouter):
    fake_openrouter.set_models(entries(MODELS))
    fake_openrouter.set_category_models("programming", entries(["acme/model-3", "acme/model-1"]))
    first = research_catalog()
    fake_openrouter.set_category_models("programming", entries(["acme/model-1", "acme/model-5", "acme/model-3"]))

    second = research_catalog()

    assert second.status == SyncStatus.SUCCEEDED, second.error
    assert current("programming") == [
        (1, "acme/model-1", second.pk),
        (2, "acme/model-5", second.pk),
        (3, "acme/model-3", second.pk),
    ]
    history = CategoryRanking.objects.filter(category__slug="programming", run=first).order_by("rank")
    assert [(r.rank, r.model_id) for r in history] == [(1, "acme/model-3"), (2, "acme/model-1")]
    assert CategoryRanking.objects.filter(category__slug="programming").count() == 5


def test_a_retired_category_is_not_fetched(fake_openrouter):
    Category.objects.filter(slug="legal").update(active=False)
    fake_openrouter.set_models(entries(MODELS))
    fake_openrouter.set_category_models("legal", entries(["acme/model-4"]))
    fake_openrouter.set_category_models("finance", entries(["acme/model-4"]))

    run = research_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    asked = category_requests(fake_openrouter)
    assert "legal" not in asked
    assert sorted(asked) == sorted(Category.objects.filter(active=True).values_list("slug", flat=True))
    assert len(asked) == 11
    assert not CategoryRanking.objects.filter(category__slug="legal").exists()
    assert current("finance") == [(1, "acme/model-4", run.pk)]


@pytest.mark.parametrize(
    "fault, attempts",
    [(status(503), 2), (drop(), 2), (html_error(502), 2), (truncated(), 1)],  # a bad body is not retried
    ids=["503", "drop", "html", "truncated"],
)
def test_a_failing_category_is_reported_while_the_others_still_record(fake_openrouter, fault, attempts):
    serve(fake_openrouter, MODELS)
    fake_openrouter.set_category_models("programming", entries(["acme/model-3", "acme/model-1"]))
    fake_openrouter.set_category_models("roleplay", entries(["acme/model-2"]))
    first = research_catalog()
    fake_openrouter.set_category_models("programming", entries(["acme/model-5", "acme/model-6"]))
    fake_openrouter.set_category_models("roleplay", entries(["acme/model-0", "acme/model-2"]))
    fake_openrouter.script("/models?category=programming", *[fault] * attempts)  # every attempt fails

    second = research_catalog()

    # the catalog sync and the other categories went through: the run succeeded, with the error
    assert second.status == SyncStatus.SUCCEEDED, second.error
    assert fake_openrouter.pending("/models?category=programming") == 0
    [error] = second.details["errors"]
    assert error.startswith("category programming: OpenRouter")
    assert current("roleplay") == [(1, "acme/model-0", second.pk), (2, "acme/model-2", second.pk)]
    # the failed category keeps its last good ranking as the current one
    assert current("programming") == [(1, "acme/model-3", first.pk), (2, "acme/model-1", first.pk)]
    assert second.details["rankings"] == 2
    # and an admin hears of it: an open alert that names the category and the run
    alert = Alert.objects.open().get(kind=AlertKind.SYNC_FAILED)
    assert "programming" in alert.message and f"#{second.pk}" in alert.message
    # a plain sync in between does not answer it: it never asked for the category
    assert sync_catalog().status == SyncStatus.SUCCEEDED
    assert Alert.objects.open().filter(pk=alert.pk).exists()

    third = research_catalog()  # the category answers again

    assert third.details["errors"] == []
    assert current("programming") == [(1, "acme/model-5", third.pk), (2, "acme/model-6", third.pk)]
    assert not Alert.objects.open().filter(kind=AlertKind.SYNC_FAILED).exists()


def test_record_rankings_can_be_called_on_its_own(fake_openrouter):
    fake_openrouter.set_models(entries(MODELS))
    sync_catalog()
    Category.objects.exclude(slug="science").update(active=False)
    fake_openrouter.set_category_models("science", entries(["acme/model-9", "acme/model-8"]))
    run = SyncRun.objects.create(kind=SyncKind.RESEARCH)
    errors: list[str] = []

    with openrouter_client() as client:
        recorded = record_rankings(client, run=run, errors=errors)

    assert recorded == 2 and errors == []
    assert current("science") == [(1, "acme/model-9", run.pk), (2, "acme/model-8", run.pk)]
    assert category_requests(fake_openrouter) == ["science"]


# --- Endpoints ----------------------------------------------------------------------------------


def test_endpoints_are_fetched_only_for_enabled_ranked_active_models_up_to_the_limit(fake_openrouter, settings):
    settings.LLMHIVE_RESEARCH_ENDPOINTS_LIMIT = 3
    fake_openrouter.set_models(entries(MODELS))
    sync_catalog()
    CatalogModel.objects.filter(id="acme/model-2").update(enabled=False)
    # model-5 leaves OpenRouter's list (1 of 12: under the missing guard), but still ranks
    fake_openrouter.set_models(entries([m for m in MODELS if m != "acme/model-5"]))
    programming = ["acme/model-2", "acme/model-5", "acme/model-0", "acme/model-7", "acme/model-9"]
    roleplay = ["acme/model-8", "acme/model-0"]
    fake_openrouter.set_category_models("programming", entries(programming))
    fake_openrouter.set_category_models("roleplay", entries(roleplay))
    for model_id in MODELS:
        fake_openrouter.set_endpoints(model_id, [endpoint(f"Provider {model_id[-1]}")])

    run = research_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    # worked out by hand: best rank per model (model-2 disabled, model-5 missing, model-1 unranked)
    # model-8: 1, model-0: min(3, 2) = 2, model-7: 4, model-9: 5 -> the first three
    expected = ["acme/model-8", "acme/model-0", "acme/model-7"]
    assert models_that_matter() == expected
    assert endpoint_requests(fake_openrouter) == sorted(f"/models/{m}/endpoints" for m in expected)
    assert sorted(ModelEndpoint.objects.values_list("model_id", flat=True)) == sorted(expected)
    assert run.details["endpoints"] == 3
    assert models_that_matter(limit=10) == expected + ["acme/model-9"]


def test_models_that_matter_honours_the_signal_receivers_of_other_apps_in_priority_order(fake_openrouter):
    fake_openrouter.set_models(entries(MODELS))
    sync_catalog()
    CatalogModel.objects.filter(id="acme/model-6").update(enabled=False)

    def later(**kwargs):
        return 99, ["acme/model-2", "acme/model-4"]

    def first(**kwargs):
        return 0, ["acme/model-4", "acme/model-6", "acme/unknown"]

    models_that_matter_signal.connect(later, dispatch_uid="test.later")
    models_that_matter_signal.connect(first, dispatch_uid="test.first")
    try:
        chosen = models_that_matter()
    finally:
        models_that_matter_signal.disconnect(dispatch_uid="test.later")
        models_that_matter_signal.disconnect(dispatch_uid="test.first")

    # Disabled and unknown ids are dropped; the lower priority's ids come first.
    assert chosen[:2] == ["acme/model-4", "acme/model-2"]


def test_endpoints_are_stored_in_the_published_shape(fake_openrouter):
    fake_openrouter.set_models(entries(MODELS))
    sync_catalog()
    fake_openrouter.set_endpoints(
        "acme/model-0",
        {
            "data": {
                "id": "acme/model-0",
                "name": "Model 0",
                "created": 1692901234,
                "description": "",
                "architecture": {
                    "modality": "text->text",
                    "input_modalities": ["text"],
                    "output_modalities": ["text"],
                    "tokenizer": "GPT",
                    "instruct_type": "chatml",
                },
                "endpoints": [
                    endpoint("OpenAI"),
                    endpoint("Azure", status=-2, quantization=None, uptime_last_30m=None, latency_last_30m=None),
                ],
            }
        },
    )

    stored = refresh_endpoints(["acme/model-0"], errors=(errors := []))

    assert stored == 2 and errors == []
    openai = ModelEndpoint.objects.get(model_id="acme/model-0", provider_name="OpenAI")
    assert (openai.name, openai.tag, openai.quantization, openai.status) == ("OpenAI: Model", "openai", "fp16", 0)
    assert (openai.context_length, openai.max_completion_tokens) == (8192, 4096)
    assert openai.pricing == {
        "completion": "0.00006",
        "image": "0",
        "prompt": "0.00003",
        "request": "0",
        "discount": "0",
    }
    assert (openai.uptime_last_30m, openai.latency_last_30m, openai.throughput_last_30m) == (99.5, 0.25, 45.2)
    azure = ModelEndpoint.objects.get(model_id="acme/model-0", provider_name="Azure")
    assert (azure.status, azure.quantization, azure.uptime_last_30m, azure.latency_last_30m) == (-2, "", None, None)


def test_endpoints_replace_a_models_previous_set_and_survive_a_failed_fetch(fake_openrouter):
    fake_openrouter.set_models(entries(MODELS))
    sync_catalog()
    fake_openrouter.set_endpoints("acme/model-0", [endpoint("OpenAI"), endpoint("Azure")])
    fake_openrouter.set_endpoints("acme/model-1", [endpoint("Groq")])
    errors: list[str] = []

    assert refresh_endpoints(["acme/model-0", "acme/model-1"], errors=errors) == 3
    assert errors == []
    assert providers("acme/model-0") == ["Azure", "OpenAI"]

    fake_openrouter.set_endpoints("acme/model-0", [endpoint("Together")])
    fake_openrouter.script("/models/acme/model-1/endpoints", status(500), status(500))
    stored = refresh_endpoints(["acme/model-0", "acme/model-1"], errors=errors)

    assert stored == 1
    assert providers("acme/model-0") == ["Together"]  # replaced, not added to
    assert providers("acme/model-1") == ["Groq"]  # kept: its fetch failed
    [error] = errors
    assert error.startswith(
        "endpoints of acme/model-1: OpenRouter answered GET /models/acme/model-1/endpoints with 500"
    )


def test_endpoints_are_fetched_concurrently_within_the_bound(fake_openrouter):
    ids = MODELS + [f"acme/extra-{i}" for i in range(8)]
    fake_openrouter.set_models(entries(ids))
    sync_catalog()
    for model_id in ids:
        fake_openrouter.set_endpoints(model_id, [endpoint("OpenAI")])
    fake_openrouter.handler_delay = 0.25
    fake_openrouter.reset_counters()

    started = time.monotonic()
    stored = refresh_endpoints(ids, errors=(errors := []))
    elapsed = time.monotonic() - started

    assert stored == len(ids) == 20 and errors == []
    assert len(endpoint_requests(fake_openrouter)) == 20
    assert 1 < fake_openrouter.max_in_flight <= research.ENDPOINT_CONCURRENCY
    assert elapsed < len(ids) * 0.25 / 2  # one at a time would take 5 s


def test_the_concurrency_bound_is_the_modules_setting(fake_openrouter, monkeypatch):
    monkeypatch.setattr(research, "ENDPOINT_CONCURRENCY", 3)
    fake_openrouter.set_models(entries(MODELS))
    sync_catalog()
    for model_id in MODELS:
        fake_openrouter.set_endpoints(model_id, [endpoint("OpenAI")])
    fake_openrouter.handler_delay = 0.2
    fake_openrouter.reset_counters()

    refresh_endpoints(MODELS, errors=[])

    assert 1 < fake_openrouter.max_in_flight <= 3


# --- Suggestions and the digest -----------------------------------------------------------------


@requires_recorded
def test_research_over_the_2026_06_29_snapshot_suggests_families_and_raises_one_digest(fake_openrouter):
    snapshot = load_snapshot("2026-06-29")
    fake_openrouter.set_models(snapshot)

    run = research_catalog()

    assert run.status == SyncStatus.SUCCEEDED, run.error
    # Worked out from the data, not from the code under test: the ids no seeded pattern matches.
    patterns = list(Family.objects.values_list("pattern", flat=True))
    synced = [m["id"] for m in snapshot["data"]]
    assert run.added == len(synced) == 339
    unclassified = {i for i in synced if not any(fnmatch.fnmatchcase(i, p) for p in patterns)}
    assert set(CatalogModel.objects.filter(family__isnull=True).values_list("id", flat=True)) == unclassified
    gpt_55 = sorted(i for i in unclassified if i.startswith("openai/gpt-5.5"))
    assert gpt_55 == ["openai/gpt-5.5", "openai/gpt-5.5-pro"]

    suggestions = {s["pattern"]: s for s in run.details["suggested_families"]}
    assert suggestions["openai/gpt-5.5*"] == {
        "pattern": "openai/gpt-5.5*",
        "aliases": ["~openai/gpt-latest"],
        "slug": "gpt-5.5",
        "name": "GPT 5.5",
        "vendor": "OpenAI",
        "priority": suggestions["openai/gpt-5.5*"]["priority"],
        "count": 3,
        "models": [*gpt_55, "~openai/gpt-latest"],
        "drift": False,
        "extends": None,
    }
    # every unclassified model is suggested once, under a pattern that matches it
    suggested = [m for s in suggestions.values() for m in s["models"]]
    assert len(suggested) == len(set(suggested))
    assert unclassified <= set(suggested)
    for suggestion in suggestions.values():
        globs = [suggestion["pattern"], *suggestion["aliases"]]
        assert all(any(fnmatch.fnmatchcase(m, g) for g in globs) for m in suggestion["models"])
    # biggest group first
    counts = [s["count"] for s in run.details["suggested_families"]]
    assert counts == sorted(counts, reverse=True)
    # Claude Opus 4.8 sits in "Claude 4" (anthropic/claude-*-4*, priority 20): a narrower family
    # is suggested for it, tried before Claude 4, and it is flagged
    opus = suggestions["anthropic/claude-opus-4.8*"]
    assert opus["drift"] and opus["priority"] < 20
    assert opus["models"] == [
        "anthropic/claude-opus-4.8",
        "anthropic/claude-opus-4.8-fast",
        "~anthropic/claude-opus-latest",
    ]
    assert Alert.objects.open().filter(kind=AlertKind.VERSION_DRIFT, model_id="anthropic/claude-opus-4.8").exists()
    # the suggestions are kept as pending rows the admin adopts
    assert sorted(FamilySuggestion.objects.values_list("pattern", flat=True)) == sorted(suggestions)

    [digest] = Alert.objects.filter(kind=AlertKind.RESEARCH_DIGEST)
    assert digest.times == 1 and digest.details["run"] == run.pk
    # the week's counts include this run's own changes
    assert digest.details["week"]["added"] == 339 and digest.details["week"]["runs"] == 1
    assert "339 models added" in digest.message
    assert f"{len(suggestions)} suggested families" in digest.message
    assert digest.details["suggested_families"][0] == run.details["suggested_families"][0]


def test_the_digest_is_raised_once_per_run(fake_openrouter):
    fake_openrouter.set_models(entries(MODELS))
    first = research_catalog()
    fake_openrouter.set_models(entries(MODELS + ["acme/model-new"]))

    second = research_catalog()

    digests = Alert.objects.filter(kind=AlertKind.RESEARCH_DIGEST)
    # one alert a week, raised again (not repeated) by every run of that week
    assert sum(d.times for d in digests) == 2
    latest = digests.order_by("-last_raised_at").first()
    assert latest.details["run"] == second.pk
    if digests.count() == 1:  # both runs in the same ISO week (not across a Sunday midnight)
        assert latest.details["week"]["added"] == first.added + second.added == 13
        assert latest.details["week"]["runs"] == 2


# --- The management command and the admin's task ------------------------------------------------


def test_the_command_prints_a_one_line_summary(fake_openrouter):
    fake_openrouter.set_models(entries(MODELS))
    fake_openrouter.set_category_models("programming", entries(["acme/model-1"]))
    fake_openrouter.set_endpoints("acme/model-1", [endpoint("OpenAI")])
    out, err = io.StringIO(), io.StringIO()

    call_command("research_catalog", "--no-progress", stdout=out, stderr=err)

    run = SyncRun.objects.get()
    assert (run.kind, run.trigger, run.status) == (SyncKind.RESEARCH, SyncTrigger.COMMAND, SyncStatus.SUCCEEDED)
    [line] = out.getvalue().strip().splitlines()
    assert line == (
        "research succeeded: 12 seen, 12 added, 0 updated, 0 reactivated, 0 missing, 0 price changes; "
        f"1 ranking rows, 1 endpoints (run #{run.pk})"
    )
    assert err.getvalue() == ""


def test_the_command_warns_about_step_errors_on_stderr(fake_openrouter):
    serve(fake_openrouter, MODELS)
    fake_openrouter.script("/models?category=trivia", status(500), status(500))
    out, err = io.StringIO(), io.StringIO()

    call_command("research_catalog", "--no-progress", stdout=out, stderr=err)

    assert out.getvalue().startswith("research succeeded:")
    [warning] = err.getvalue().strip().splitlines()
    assert warning.startswith("warning: category trivia: OpenRouter answered GET /models with 500")


def test_the_command_fails_when_openrouter_drops_every_connection(fake_openrouter):
    fake_openrouter.script("/models", drop(), drop())

    with pytest.raises(CommandError) as failure:
        call_command("research_catalog", "--no-progress", stdout=io.StringIO())

    run = SyncRun.objects.get()
    assert (run.kind, run.status) == (SyncKind.RESEARCH, SyncStatus.FAILED)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("research failed: OpenRouter closed the connection")
    assert message.endswith(f"(run #{run.pk})")
    assert fake_openrouter.pending("/models") == 0
    assert Alert.objects.open().filter(kind=AlertKind.SYNC_FAILED).count() == 1
    assert not category_requests(fake_openrouter) and not CategoryRanking.objects.exists()


@pytest.mark.django_db(transaction=True)  # the command runs in another process on the test database
def test_manage_py_research_catalog_exits_non_zero_with_one_line_when_openrouter_is_unreachable():
    closed = f"http://127.0.0.1:{free_port()}/api/v1"

    result = subprocess.run(
        [sys.executable, "manage.py", "research_catalog", "--no-progress"],
        check=False,
        cwd=ROOT,
        env=project_env(OPENROUTER_BASE_URL=closed, LLMHIVE_OPENROUTER_MAX_RETRIES="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    run = SyncRun.objects.get()
    assert line.startswith(f"CommandError: research failed: cannot reach OpenRouter at GET {closed}/models")
    assert line.endswith(f"(after 2 attempts) (run #{run.pk})")
    assert (run.kind, run.trigger, run.status) == (SyncKind.RESEARCH, SyncTrigger.COMMAND, SyncStatus.FAILED)
    alert = Alert.objects.open().get(kind=AlertKind.SYNC_FAILED)
    assert f"research #{run.pk} failed" in alert.message


def test_the_admins_research_task_runs_a_research(fake_openrouter, admin_client):
    content = admin_client.get(reverse("admin:catalog_catalogmodel_changelist")).content.decode()
    assert "Research now" in content and reverse("admin:catalog_catalogmodel_research") in content
    fake_openrouter.set_models(entries(MODELS))
    fake_openrouter.set_category_models("academia", entries(["acme/model-2"]))

    summary = research_catalog_task(trigger=SyncTrigger.ADMIN)

    run = SyncRun.objects.get()
    assert (run.kind, run.trigger, run.status) == (SyncKind.RESEARCH, SyncTrigger.ADMIN, SyncStatus.SUCCEEDED)
    assert summary == run.summary()
    assert current("academia") == [(1, "acme/model-2", run.pk)]
