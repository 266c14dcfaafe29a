"""manage.py check_openrouter_models: a table or JSON, exit status 1 when a checked model fails,
one readable line when OpenRouter cannot be reached."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from health.models import HealthCheckRun
from tests.health.conftest import DOWN, ids

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def command(*args: str) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("check_openrouter_models", *args, stdout=out)
    except SystemExit as exc:
        return out.getvalue(), exc.code
    return out.getvalue(), 0


def test_the_table_shows_connectivity_the_key_and_each_model(acme, fake_openrouter, keyed):
    out, code = command("--model", "acme/m0", "--model", "acme/m1")

    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"OpenRouter at {fake_openrouter.base_url}: reachable"
    assert lines[1] == "key: limit 25 USD, usage 3.5 USD"
    assert lines[2].split() == ["model", "result", "endpoints", "uptime", "ping", "ms", "error"]
    row = lines[3].split()
    assert row[:5] == ["acme/m0", "ok", "1/2", "99.5%", "ok"] and row[5].isdigit()
    assert lines[-1].startswith("2 checked, 0 failed, 2 pinged for 0.000025 USD (ok)")


def test_json_and_exit_status_1_when_a_model_fails(acme, fake_openrouter, keyed):
    fake_openrouter.set_endpoints("acme/m1", [DOWN])

    out, code = command("--model", "acme/m0", "--model", "acme/m1", "--json", "--no-ping")

    assert code == 1
    body = json.loads(out)  # nothing but JSON on stdout
    assert body["status"] == "degraded" and (body["checked"], body["failed"], body["pinged"]) == (2, 1, 0)
    assert body["key"] == {"limit_usd": "25", "usage_usd": "3.5"} and body["ping_spend_usd"] == "0"
    assert "pings off" in body["note"]
    by_model = {m["model_id"]: m for m in body["models"]}
    assert by_model["acme/m0"]["ok"] is True and by_model["acme/m0"]["best_uptime"] == 99.5
    assert (by_model["acme/m1"]["ok"], by_model["acme/m1"]["error_code"]) == (False, "no_endpoint_up")


def test_a_failing_model_in_the_table_exits_1_with_the_summary(acme, fake_openrouter, no_key):
    fake_openrouter.set_endpoints("acme/m2", [DOWN])

    out, code = command("--model", "acme/m2")

    assert code == 1
    assert "acme/m2  FAIL" in out and "no_endpoint_up" in out
    assert out.splitlines()[-1].startswith("1 checked, 1 failed, 0 pinged for 0 USD (failed)")


def test_top_limits_the_models_that_matter(acme, fake_openrouter, no_key):
    from tests.factories import RoleFactory, RolePreferenceFactory

    role = RoleFactory(slug="coder")
    for position, model in enumerate(acme):
        RolePreferenceFactory(role=role, model=model, position=position)

    out, code = command("--top", "2", "--json")

    assert code == 0 and [m["model_id"] for m in json.loads(out)["models"]] == ["acme/m0", "acme/m1"]
    with pytest.raises(CommandError, match="--top must be at least 1"):
        command("--top", "0")


def test_unknown_models_are_refused_in_one_line(acme, fake_openrouter, no_key):
    with pytest.raises(CommandError, match=r"^not in the catalog: nobody/none$"):
        command("--model", "nobody/none")


def test_unreachable_openrouter_is_one_readable_line_and_a_recorded_run(db, settings, fast):
    settings.OPENROUTER_BASE_URL = "http://127.0.0.1:9/api/v1"  # nothing listens there
    from tests.factories import CatalogModelFactory

    CatalogModelFactory(id="acme/x")
    with pytest.raises(CommandError) as error:
        command("--model", "acme/x")

    message = str(error.value)
    assert message.startswith("OpenRouter is unreachable at http://127.0.0.1:9/api/v1: ") and "\n" not in message
    assert HealthCheckRun.objects.get().status == "error"


def test_manage_py_exits_non_zero_with_one_line_on_stderr_when_unreachable(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmhive_site.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1",
        "LLMHIVE_OPENROUTER_TIMEOUT": "1",
        "LLMHIVE_REDIS_URL": "",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)

    done = subprocess.run(
        [sys.executable, "manage.py", "check_openrouter_models"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("CommandError: OpenRouter is unreachable"), (
        done.stderr
    )


def test_every_model_is_checked_by_the_command_and_recorded_once(acme, fake_openrouter, no_key):
    out, code = command(*[arg for m in ids(acme) for arg in ("--model", m)])

    assert code == 0
    run = HealthCheckRun.objects.get()
    assert run.trigger == "command" and run.checks.count() == 4
