"""The API description holds for a live server: schemathesis loads /api/openapi.json from a real
gunicorn with data in it (a catalog synced from the recorded 2025-12-18 snapshot through the fake
OpenRouter, its research and health checks, a role, a strategy, a budget, usage) and sends every
operation a bounded number of generated requests, valid and invalid, with a key that has every
scope. No answer may be a server error, and every answer must conform to the document: a
documented status, a documented content type, a body matching the status's schema.

POST /catalog/sync is not left out: with no task worker running, each call only queues a job
(flushed with the rest afterwards), so its cost is bounded by the number of examples."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.test import override_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from catalog.research import research_catalog
from catalog.sync import sync_catalog
from core.api import EXAMPLE_ID as EXAMPLE_ALERT_ID
from core.models import Scope
from health.checks import run_health_checks
from llmhive_site.api import api
from tests.factories import (
    AlertFactory,
    ApiKeyFactory,
    BudgetFactory,
    CategoryFactory,
    EscalationOverrideFactory,
    RoleFactory,
    RolePreferenceFactory,
    StrategyFactory,
    ingest,
)
from tests.fake_openrouter import FakeOpenRouter, load_snapshot, published_endpoint, requires_recorded
from tests.servers import gunicorn

pytestmark = [requires_recorded, pytest.mark.django_db(transaction=True)]

# Generated requests per operation and generation mode (the coverage phase adds its boundary
# cases): about 20 s for the whole run. More for a deeper look: LLMHIVE_SCHEMATHESIS_EXAMPLES=200.
EXAMPLES = int(os.environ.get("LLMHIVE_SCHEMATHESIS_EXAMPLES", 25))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MODELS = ["openai/gpt-4o", "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash", "deepseek/deepseek-chat-v3.1"]


def fill_the_database(fake: FakeOpenRouter) -> str:
    """What a deployment holds after a few days; returns a key with every scope."""
    snapshot = load_snapshot("2025-12-18")
    by_id = {entry["id"]: entry for entry in snapshot["data"]}
    fake.set_models(snapshot)
    fake.set_category_models("programming", {"data": [by_id[m] for m in MODELS]})
    for model_id in MODELS:
        fake.set_endpoints(model_id, [published_endpoint("OpenAI"), published_endpoint("Azure", status=-2)])
    fake.set_key({"data": {"label": "test", "limit": None, "usage": 0, "is_free_tier": False}})
    # The seeded category (a transactional test run earlier flushes what migrations seeded).
    CategoryFactory(slug="programming", name="Programming")
    assert sync_catalog().status == "succeeded"
    research_catalog()
    run_health_checks(model_ids=MODELS)

    coder = RoleFactory(slug="coder", name="Coder")
    for position, model_id in enumerate(MODELS):
        RolePreferenceFactory(role=coder, model_id=model_id, position=position)
    RoleFactory(slug="writer", name="Writer")
    EscalationOverrideFactory(from_model_id=MODELS[2], to_model_id=MODELS[1])
    StrategyFactory(slug="single")
    BudgetFactory(name="monthly", limit_usd=Decimal("50"))
    BudgetFactory(name="coder", scope="role", scope_value="coder", period="day", limit_usd="0.01", action="block")
    now = datetime.now(UTC)
    ingest(
        *[
            {
                "model": MODELS[i % len(MODELS)],
                "occurred_at": now - timedelta(hours=i * 7),
                "cost_usd": None if i % 3 == 0 else Decimal("0.0012") * i,
                "success": i % 4 != 0,
                "latency_ms": 200 + 37 * i,
                "tools": ["search"] if i % 2 else [],
                "role": "coder" if i % 2 else "writer",
            }
            for i in range(40)
        ]
    )
    ingest(model="acme/unknown-model", role="coder")  # an unknown model, stored and unpriced
    AlertFactory(id=EXAMPLE_ALERT_ID, key="schemathesis:example")  # the acknowledge example's alert
    return ApiKeyFactory(name="schemathesis", scopes=list(Scope.values)).raw_key


def server_errors(log: str) -> str:
    """The ERROR records of a server log, tracebacks included (a 4xx is a WARNING line)."""
    kept, keeping = [], False
    for line in log.splitlines():
        if re.match(r"\d{4}-\d\d-\d\d ", line):
            keeping = " ERROR " in line
        if keeping:
            kept.append(line)
    return "\n".join(kept)


@pytest.fixture
def answers() -> Counter:
    """(operation, status) -> how many answers."""
    return Counter()


@pytest.fixture
def served(transactional_db, answers) -> Iterator[tuple[str, str]]:
    """(base URL, key): gunicorn on the test database, filled and committed (pytest-django
    flushes it afterwards). schemathesis runs every operation inside the one test that uses it.

    Afterwards: the figures, the server's tracebacks if it logged any, and a check that the run
    was not all refusals: every operation answered 2xx at least once."""
    with FakeOpenRouter() as fake:
        with override_settings(OPENROUTER_BASE_URL=fake.base_url, OPENROUTER_API_KEY="sk-or-test"):
            key = fill_the_database(fake)
        with gunicorn(workers=2, OPENROUTER_BASE_URL=fake.base_url) as base:
            started = time.monotonic()
            yield base, key
            took = time.monotonic() - started
            log = base.output()
    by_status = Counter()
    for (_operation, status), count in answers.items():
        by_status[status] += count
    print(
        f"\nschemathesis: {sum(answers.values())} requests in {took:.1f} s, by status {dict(sorted(by_status.items()))}"
    )
    if errors := server_errors(log):
        print(f"the server logged:\n{errors[:20000]}")
    documented = {
        f"{method.upper()} {path}" for path, ops in api.get_openapi_schema()["paths"].items() for method in ops
    }
    operations = {operation for operation, _status in answers}
    succeeded = {operation for operation, status in answers if 200 <= status < 300}
    assert operations == documented
    assert sorted(operations - succeeded) == []  # operations that never answered 2xx


@pytest.fixture
def live_schema(served):
    base, key = served
    loaded = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    loaded.config.update(headers={"Authorization": f"Bearer {key}"})
    loaded.config.generation.update(deterministic=True, database="none")
    return loaded


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, served, answers):
    _base, key = served
    headers = {"Authorization": f"Bearer {key}"}
    response = case.call(headers=headers, timeout=30)
    answers[(case.operation.label, response.status_code)] += 1
    case.validate_response(response, checks=CHECKS, headers=headers)
