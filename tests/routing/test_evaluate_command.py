"""manage.py evaluate_routing: the JSON answer, the CSV, the table; a bad policy file or window is
one readable line and a non-zero exit, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.factories import ingest
from tests.routing.test_replay import ago, catalog  # noqa: F401 (the fixture)
from tests.servers import project_env

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PROPOSED = {"name": "thrifty", "weights": {"balanced": {"quality": 0.2, "reliability": 0.1, "cost": 0.7, "latency": 0}}}


@pytest.fixture
def ledger(catalog):  # noqa: F811
    ingest(3, model="acme/dear", role="coder", category="programming", occurred_at=ago(1), prompt_tokens=2000)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("evaluate_routing", *args, stdout=out)
    return out.getvalue()


def policy_file(tmp_path: Path, content: str | bytes, name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def test_json_answers_every_policy_with_money_as_strings(ledger, tmp_path):
    answer = json.loads(run("--json", "--policy", policy_file(tmp_path, json.dumps(PROPOSED))))
    assert answer["requests"] == 3 and answer["events_in_window"] == 3 and answer["window"]["days"] == 7
    names = [p["name"] for p in answer["policies"]]
    assert names == ["current", "thrifty", "bootstrap", "cheapest", "top_ranked", "cost_based", "recorded"]
    for policy in answer["policies"]:
        assert set(policy) >= {"name", "cost_usd", "expected_success", "cost_per_success_usd", "prior_share"}
        assert isinstance(policy["cost_usd"], str) and isinstance(policy["model_mix"], dict)
    assert answer["policies"][1]["model_mix"] == {"acme/prompt-cheap": 1.0}  # the cost weighs most


def test_csv_has_one_row_per_policy_and_the_table_one_line_each(ledger, tmp_path):
    path = tmp_path / "out.csv"
    table = run("--csv", str(path), "--days", "3")
    rows = list(csv.DictReader(path.open()))
    assert [r["name"] for r in rows] == ["current", "bootstrap", "cheapest", "top_ranked", "cost_based", "recorded"]
    assert rows[-1]["model_mix"] == "acme/dear:1.0"
    lines = table.splitlines()
    assert lines[0] == "3 requests replayed of 3 in the last 3 days"
    assert lines[2].split()[:3] == ["policy", "cost", "USD"]
    assert len(lines) == 3 + 6
    recorded = lines[-1].split()
    assert recorded[0] == "recorded" and recorded[1] == rows[-1]["cost_usd"] and recorded[-2:] == ["acme/dear", "100%"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        (b"\xff\xfe{", "not UTF-8 text"),
        ('{"weights": {"balanced": {"quality": 2}}}', "weights.balanced.quality: between 0 and 1"),
        ('{"roles": {"writer": {}}}', "roles.writer: no active role 'writer'"),
        ('{"every_role": {"preferences": ["acme/none"]}}', "every_role.preferences: no model 'acme/none'"),
        ('{"name": "cheapest"}', "name: 'cheapest' is the name of another policy"),
    ],
)
def test_a_bad_policy_file_is_one_line_naming_the_field(catalog, tmp_path, content, message):  # noqa: F811
    path = str(tmp_path / "missing.json") if content is None else policy_file(tmp_path, content)
    with pytest.raises(CommandError) as caught:
        run("--policy", path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("--policy")


@pytest.mark.parametrize("days", ["0", "366"])
def test_days_out_of_range_are_refused(db, days):
    with pytest.raises(CommandError, match="--days: between 1 and 365"):
        run("--days", days)


@pytest.mark.django_db(transaction=True)  # the command runs in another process on the test database
def test_manage_py_exits_non_zero_with_one_line(tmp_path):
    bad = policy_file(tmp_path, '{"learn": "yes"}')
    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate_routing", "--policy", bad],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip() == f"CommandError: --policy {bad}: learn: true or false"


# --- --simulate --------------------------------------------------------------------------------


def test_simulate_answers_each_policy_with_regret_and_the_outage(ledger, tmp_path):
    path = tmp_path / "sim.csv"
    simulate = ("--simulate", "--seed", "3", "--requests", "120", "--json")
    proposed = ("--policy", policy_file(tmp_path, json.dumps(PROPOSED)))
    answer = json.loads(run(*simulate, "--csv", str(path), *proposed))
    assert answer["seed"] == 3 and answer["requests"] == 120 and answer["outage"]["at_request"] == 80
    names = [p["name"] for p in answer["policies"]]
    assert names == ["current", "explore_10", "bootstrap", "cheapest", "top_ranked", "cost_based", "thrifty"]
    for policy in answer["policies"]:
        assert isinstance(policy["cost_usd"], str) and policy["regret"] >= 0
    rows = list(csv.DictReader(path.open()))
    assert [r["name"] for r in rows] == names and rows[0]["regret"] == str(answer["policies"][0]["regret"])
    # The same seed gives the same answer; the table says the same in a line per policy.
    assert json.loads(run(*simulate, *proposed)) == answer
    table = run("--simulate", "--seed", "3", "--requests", "120", "--no-outage")
    assert table.startswith("Simulation: seed 3, 120 requests") and "Outage" not in table
    assert all(any(line.startswith(name) for line in table.splitlines()) for name in names[:-1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--requests", "0"), "--requests: between 1 and"),
        (("--limit", "5"), "--limit: the replay's"),
    ],
)
def test_simulate_refuses_bad_arguments_in_one_line(ledger, args, message):
    with pytest.raises(CommandError) as caught:
        run("--simulate", *args)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_simulate_refuses_a_policy_named_as_a_default_one(ledger, tmp_path):
    with pytest.raises(CommandError) as caught:
        run(
            "--simulate",
            "--requests",
            "10",
            "--policy",
            policy_file(tmp_path, json.dumps({**PROPOSED, "name": "cheapest"})),
        )
    assert str(caught.value).startswith("--simulate: policies: each needs its own name")
