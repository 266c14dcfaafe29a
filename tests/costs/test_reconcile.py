"""Reconciliation against OpenRouter's generation records: runs of `costs.reconcile` (and of
`manage.py reconcile_costs`) against the fake OpenRouter server over a real socket, the drift
report, its CSV and `GET /api/v1/costs/reconciliation`."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from core.locks import LockBusy, hold_lock
from costs.models import CheckStatus, GenerationCheck, UsageEvent
from costs.reconcile import LOCK_NAME, KeyRefused, NotConfigured, drift_report, reconcile
from tests.conftest import ApiClient
from tests.factories import CatalogModelFactory, ingest
from tests.fake_openrouter import PROJECT_ROOT, status
from tests.servers import database_url

pytestmark = pytest.mark.django_db

KEY = "sk-or-v1-reconcile"
URL = "/api/v1/costs/reconciliation"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def fake(fake_openrouter, settings):
    settings.OPENROUTER_API_KEY = KEY
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1
    fake_openrouter.api_key = KEY
    return fake_openrouter


@pytest.fixture
def ledger(db):
    """Five events with a generation id, oldest first, and one without. `acme/priced` computes
    100 x 0.000001 + 10 x 0.000002 = 0.00012 USD a call."""
    CatalogModelFactory(id="acme/priced", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
    CatalogModelFactory(id="acme/reported", price_prompt=Decimal("0.000001"), price_completion=Decimal("0.000002"))
    ingest(
        {"request_id": "same", "generation_id": "gen-same", "model": "acme/reported", "cost_usd": "0.0015"},
        # 1 % of 0.001 is 0.00001: exactly at the tolerance still matches.
        {"request_id": "edge", "generation_id": "gen-edge", "model": "acme/reported", "cost_usd": "0.001"},
        {"request_id": "over", "generation_id": "gen-over", "model": "acme/reported", "cost_usd": "0.001"},
        {"request_id": "computed", "generation_id": "gen-computed", "model": "acme/priced"},
        {"request_id": "unpriced", "generation_id": "gen-unpriced", "model": "acme/unknown"},
        {"request_id": "no-generation", "model": "acme/priced"},
    )
    for minutes, request_id in enumerate(["same", "edge", "over", "computed", "unpriced", "no-generation"]):
        UsageEvent.objects.filter(request_id=request_id).update(occurred_at=NOW - timedelta(hours=6, minutes=-minutes))


def record(fake, **costs) -> None:
    """OpenRouter's total_cost per generation id (as JSON numbers), native counts 100 / 12."""
    for generation_id, cost in costs.items():
        fake.set_generation(
            generation_id.replace("_", "-"),
            total_cost=cost,
            upstream_inference_cost=cost,
            native_tokens_prompt=100,
            native_tokens_completion=12,
            native_tokens_reasoning=2,
            native_tokens_cached=0,
        )


def everything_recorded(fake) -> None:
    record(fake, gen_same=0.0015, gen_edge=0.00101, gen_over=0.0012, gen_computed=0.00012, gen_unpriced=0.0004)


def checks() -> dict[str, GenerationCheck]:
    return {c.event.request_id: c for c in GenerationCheck.objects.select_related("event")}


def snapshot() -> list[tuple]:
    return sorted(GenerationCheck.objects.values_list(*[f.attname for f in GenerationCheck._meta.concrete_fields]))


# --- Runs ----------------------------------------------------------------------------------------


def test_a_run_records_matched_and_drifting_events_with_exact_differences(fake, ledger):
    everything_recorded(fake)

    result = reconcile()

    assert result.summary() == "reconciled 5 of 5 events: 3 matched, 2 drift"
    found = checks()
    assert set(found) == {"same", "edge", "over", "computed", "unpriced"}
    assert {k: c.status for k, c in found.items()} == {
        "same": CheckStatus.MATCHED,
        "edge": CheckStatus.MATCHED,
        "over": CheckStatus.DRIFT,
        "computed": CheckStatus.MATCHED,
        "unpriced": CheckStatus.DRIFT,
    }
    assert {k: (c.ledger_cost_usd, c.openrouter_cost_usd, c.difference_usd) for k, c in found.items()} == {
        "same": (Decimal("0.0015"), Decimal("0.0015"), Decimal(0)),
        "edge": (Decimal("0.001"), Decimal("0.00101"), Decimal("0.00001")),
        "over": (Decimal("0.001"), Decimal("0.0012"), Decimal("0.0002")),
        "computed": (Decimal("0.00012"), Decimal("0.00012"), Decimal(0)),
        # The ledger has no cost: all of OpenRouter's is the difference.
        "unpriced": (None, Decimal("0.0004"), Decimal("0.0004")),
    }
    over = found["over"]
    assert (over.native_prompt_tokens, over.native_completion_tokens, over.native_reasoning_tokens) == (100, 12, 2)
    assert over.tokens_differ is True  # the ledger says 100 / 10
    assert over.model == "acme/reported" and found["unpriced"].model == "acme/unknown"
    assert over.upstream_cost_usd == Decimal("0.0012") and over.provider_name == "Infermatic"
    assert all(c.attempts == 1 and c.last_error == "" for c in found.values())
    asked = [r.query["id"] for r in fake.requests_to("/generation")]
    assert asked == ["gen-same", "gen-edge", "gen-over", "gen-computed", "gen-unpriced"]  # oldest first


def test_a_second_run_asks_nothing_and_changes_nothing(fake, ledger):
    everything_recorded(fake)
    reconcile()
    before, requests = snapshot(), len(fake.requests)

    result = reconcile()

    assert result.summary() == "reconciled 0 of 0 events"
    assert snapshot() == before
    assert len(fake.requests) == requests


def test_the_tolerance_is_a_setting(fake, ledger, settings):
    everything_recorded(fake)
    settings.LLMHIVE_RECONCILE_TOLERANCE_RELATIVE = Decimal("0.5")

    reconcile()

    assert GenerationCheck.objects.filter(status=CheckStatus.MATCHED).count() == 4  # "over" is within 50 %


def test_a_generation_openrouter_has_not_recorded_yet_is_pending_and_asked_again(fake, ledger):
    everything_recorded(fake)
    fake.script("/generation?id=gen-over", status(404))

    first = reconcile()
    pending = GenerationCheck.objects.get(generation_id="gen-over")
    second = reconcile()

    assert first.summary() == "reconciled 5 of 5 events: 3 matched, 1 drift, 1 pending"
    assert pending.status == CheckStatus.PENDING and pending.attempts == 1
    assert "404" in pending.last_error and pending.difference_usd is None
    assert second.summary() == "reconciled 1 of 1 events: 1 drift"
    settled = GenerationCheck.objects.get(generation_id="gen-over")
    assert (settled.status, settled.attempts, settled.last_error) == (CheckStatus.DRIFT, 2, "")
    assert settled.difference_usd == Decimal("0.0002")
    assert settled.first_checked_at == pending.first_checked_at and settled.checked_at > pending.checked_at
    assert GenerationCheck.objects.count() == 5


def test_a_generation_never_found_is_settled_after_the_last_attempt(fake, ledger, settings):
    settings.LLMHIVE_RECONCILE_MAX_ATTEMPTS = 2
    record(fake, gen_same=0.0015, gen_edge=0.00101, gen_over=0.0012, gen_computed=0.00012)

    reconcile()
    reconcile()
    third = reconcile()

    check = GenerationCheck.objects.get(generation_id="gen-unpriced")
    assert (check.status, check.attempts) == (CheckStatus.NOT_FOUND, 2)
    assert third.selected == 0
    assert len(fake.requests_to("/generation")) == 4 + 2


def test_a_refused_key_stops_the_run_with_a_clear_message(fake, ledger, settings):
    everything_recorded(fake)
    settings.OPENROUTER_API_KEY = "sk-or-v1-revoked"

    with pytest.raises(KeyRefused) as refused:
        reconcile()

    assert str(refused.value) == (
        "OpenRouter refused the key (OpenRouter answered GET /generation with 401 Unauthorized: User not found.); "
        "check OPENROUTER_API_KEY (0 events were checked before it stopped)"
    )
    assert len(fake.requests_to("/generation")) == 1
    assert not GenerationCheck.objects.exists()


def test_a_refusal_midway_keeps_what_was_learnt(fake, ledger):
    everything_recorded(fake)
    fake.script("/generation?id=gen-over", status(403))

    with pytest.raises(KeyRefused, match="2 events were checked before it stopped"):
        reconcile()

    assert sorted(checks()) == ["edge", "same"]


def test_a_500_once_is_retried_and_a_lasting_outage_leaves_the_rest_for_the_next_run(fake, ledger, settings):
    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 0
    everything_recorded(fake)
    fake.script("/generation?id=gen-edge", status(500))

    stopped = reconcile()

    assert stopped.summary() == (
        "reconciled 1 of 5 events: 1 matched; stopped early: OpenRouter answered GET /generation with 500 Internal "
        "Server Error (4 events left for the next run)"
    )
    assert sorted(checks()) == ["same"]  # the event OpenRouter failed on is not held against it

    settings.LLMHIVE_OPENROUTER_MAX_RETRIES = 1
    fake.script("/generation?id=gen-over", status(500))
    assert reconcile().summary() == "reconciled 4 of 4 events: 2 matched, 2 drift"


def test_an_unusable_answer_is_an_error_asked_again(fake, ledger):
    everything_recorded(fake)
    fake.set_generation("gen-over", {"data": {"id": "gen-over", "total_cost": None}})

    reconcile()
    check = GenerationCheck.objects.get(generation_id="gen-over")
    assert (check.status, check.last_error) == (
        CheckStatus.ERROR,
        "OpenRouter's record of the generation has no usable total_cost",
    )
    record(fake, gen_over=0.001)

    assert reconcile().summary() == "reconciled 1 of 1 events: 1 matched"


def test_limit_and_since_bound_a_run(fake, ledger):
    everything_recorded(fake)

    assert reconcile(limit=2).summary() == "reconciled 2 of 2 events: 2 matched"
    assert sorted(checks()) == ["edge", "same"]
    assert reconcile(since=NOW + timedelta(hours=1)).selected == 0
    UsageEvent.objects.filter(request_id="over").update(occurred_at=NOW - timedelta(days=40))
    assert reconcile().summary() == "reconciled 2 of 2 events: 1 matched, 1 drift"  # "over" is too old
    assert reconcile(since=NOW - timedelta(days=41)).summary() == "reconciled 1 of 1 events: 1 drift"


@pytest.mark.django_db(transaction=True)
def test_a_run_while_another_holds_the_lock_is_refused_at_once(fake, ledger):
    everything_recorded(fake)
    with hold_lock(LOCK_NAME, holder="the other run", ttl_seconds=60):
        with pytest.raises(LockBusy, match="held by the other run"):
            reconcile()
        with pytest.raises(CommandError, match="the costs reconcile lock is held by the other run"):
            call_command("reconcile_costs")
    assert fake.requests == []


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_runs_check_each_event_once(fake, ledger):
    """One run holds the lock while OpenRouter is slow; the other is refused, never doubling."""
    everything_recorded(fake)
    fake.handler_delay = 0.1
    outcomes: list[str] = []

    def run() -> None:
        try:
            outcomes.append(reconcile().summary())
        except LockBusy:
            outcomes.append("busy")
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    # The second is refused while the first runs, or finds nothing left if it came after.
    assert "reconciled 5 of 5 events: 3 matched, 2 drift" in outcomes
    assert len(outcomes) == 2 and outcomes[0] != outcomes[1]
    assert set(outcomes) - {"reconciled 5 of 5 events: 3 matched, 2 drift"} <= {"busy", "reconciled 0 of 0 events"}
    assert len(fake.requests_to("/generation")) == 5 and GenerationCheck.objects.count() == 5


# --- The command ---------------------------------------------------------------------------------


def test_the_command_reports_progress_and_a_summary(fake, ledger, capsys):
    everything_recorded(fake)

    call_command("reconcile_costs", "--limit", "3")

    out, err = capsys.readouterr()
    assert out.strip() == "reconciled 3 of 3 events: 2 matched, 1 drift"
    assert "3/3 events checked" in err


def test_the_command_without_a_key_exits_non_zero_with_one_line(settings, ledger):
    settings.OPENROUTER_API_KEY = ""

    with pytest.raises(CommandError) as failed:
        call_command("reconcile_costs")

    assert str(failed.value) == "no OpenRouter key is configured (OPENROUTER_API_KEY): nothing can be reconciled"
    with pytest.raises(NotConfigured):
        reconcile()


def test_the_command_without_a_key_exits_1_with_one_line_and_no_traceback(db):
    env = {**os.environ, "DATABASE_URL": database_url(), "OPENROUTER_API_KEY": "", "LLMHIVE_REDIS_URL": ""}
    done = subprocess.run(
        [sys.executable, "manage.py", "reconcile_costs"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 1
    assert done.stderr.strip() == (
        "CommandError: no OpenRouter key is configured (OPENROUTER_API_KEY): nothing can be reconciled"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit must be at least 1, not 0"),
        (["--limit", "many"], "--limit takes a whole number, not 'many'"),
        (["--since", "yesterday"], "not a day (YYYY-MM-DD): 'yesterday'"),
        (["--csv", "x.csv"], "--until and --csv go with --report"),
        (["--report", "--since", "2026-02-01", "--until", "2026-01-01"], "--since 2026-02-01 is after --until"),
        (["--report", "--csv", "/nonexistent/dir/x.csv"], "cannot write /nonexistent/dir/x.csv"),
    ],
)
def test_bad_command_input_is_one_readable_line(args, message, db):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("reconcile_costs", *args)


def test_a_refused_key_in_the_command_is_one_line(fake, ledger, settings):
    everything_recorded(fake)
    settings.OPENROUTER_API_KEY = "sk-or-v1-revoked"

    with pytest.raises(CommandError, match="^OpenRouter refused the key .*check OPENROUTER_API_KEY"):
        call_command("reconcile_costs")


# --- The report ----------------------------------------------------------------------------------


@pytest.fixture
def reconciled(fake, ledger):
    everything_recorded(fake)
    fake.script("/generation?id=gen-computed", status(404))
    reconcile()


def test_the_drift_report_per_model_and_in_total(reconciled):
    today = NOW.date()
    report = drift_report(today - timedelta(days=1), today)

    figures = {row["model"]: row for row in report["models"]}
    assert figures["acme/reported"] == {
        "model": "acme/reported",
        "checked": 3,
        "matched": 2,
        "drift": 1,
        "pending": 0,
        "not_found": 0,
        "error": 0,
        "ledger_cost_usd": Decimal("0.0035"),
        "openrouter_cost_usd": Decimal("0.00371"),
        "difference_usd": Decimal("0.00021"),
    }
    assert (figures["acme/priced"]["pending"], figures["acme/priced"]["openrouter_cost_usd"]) == (1, Decimal(0))
    assert report["total"] == {
        "checked": 5,
        "matched": 2,
        "drift": 2,
        "pending": 1,
        "not_found": 0,
        "error": 0,
        "ledger_cost_usd": Decimal("0.0035"),
        "openrouter_cost_usd": Decimal("0.00411"),
        "difference_usd": Decimal("0.00061"),
    }
    assert [(d["request_id"], d["difference_usd"]) for d in report["largest_drifts"]] == [
        ("unpriced", Decimal("0.0004")),
        ("over", Decimal("0.0002")),
    ]
    assert drift_report(today - timedelta(days=3), today - timedelta(days=2))["total"]["checked"] == 0
    assert drift_report(today - timedelta(days=1), today, {"model": "acme/unknown"})["total"]["checked"] == 1


def test_the_api_gives_the_report_with_money_as_decimal_strings(reconciled, make_api_key):
    client = ApiClient(make_api_key("costs:read"))

    response = client.get(URL, {"largest": 1, "start": (NOW - timedelta(days=1)).date().isoformat()})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total"] == {
        "checked": 5,
        "matched": 2,
        "drift": 2,
        "pending": 1,
        "not_found": 0,
        "error": 0,
        "ledger_cost_usd": "0.0035",
        "openrouter_cost_usd": "0.00411",
        "difference_usd": "0.00061",
    }
    assert [row["model"] for row in body["models"]] == ["acme/priced", "acme/reported", "acme/unknown"]
    assert body["largest_drifts"] == [
        {
            "request_id": "unpriced",
            "generation_id": "gen-unpriced",
            "model": "acme/unknown",
            "ledger_cost_usd": None,
            "openrouter_cost_usd": "0.0004",
            "difference_usd": "0.0004",
        }
    ]
    by_role = client.get(URL, {"role": "nobody"}).json()
    assert by_role["total"]["checked"] == 0


def test_the_api_needs_costs_read_and_validates_its_query(reconciled, make_api_key):
    assert ApiClient().get(URL).status_code == 401
    assert ApiClient(make_api_key("route")).get(URL).status_code == 403
    client = ApiClient(make_api_key("costs:read"))
    for query, field in [({"largest": 101}, "largest"), ({"start": "2026-02-30"}, "start")]:
        response = client.get(URL, query)
        assert response.status_code == 422, (query, response.content)
        assert field in response.content.decode()
    response = client.get(URL, {"start": "2026-02-01", "end": "2026-01-01"})
    assert response.status_code == 422 and "start: must not be after end" in response.content.decode()


def test_the_report_command_prints_and_writes_csv(reconciled, tmp_path, capsys):
    GenerationCheck.objects.filter(generation_id="gen-over").update(model="=HYPERLINK(1)", difference_usd="-0.0002")
    path = tmp_path / "drift.csv"

    call_command("reconcile_costs", "--report")
    printed = capsys.readouterr().out
    call_command("reconcile_costs", "--report", "--csv", str(path))

    assert "(total): 5 checked, 2 matched, 2 drift, 1 pending, 0 not found, 0 errors" in printed
    assert (
        "drift unpriced (gen-unpriced, acme/unknown): ledger none, OpenRouter 0.0004, difference 0.0004 USD" in printed
    )
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows[0] == [
        "model",
        "checked",
        "matched",
        "drift",
        "pending",
        "not_found",
        "error",
        "ledger_cost_usd",
        "openrouter_cost_usd",
        "difference_usd",
    ]
    by_model = {row[0]: row for row in rows[1:]}
    assert by_model["'=HYPERLINK(1)"][1:] == ["1", "0", "1", "0", "0", "0", "0.001", "0.0012", "-0.0002"]
    assert by_model["(total)"][-3:] == ["0.0035", "0.00411", "0.00021"]
    assert len(rows) == 1 + 4 + 1
