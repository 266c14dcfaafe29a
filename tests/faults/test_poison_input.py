"""Poison input against a real gunicorn (two workers, production settings): every answer is a
4xx in the API's JSON shape naming where the poison was, nothing of a bad batch is stored, and a
good batch right after is stored whole. The GET parameters and the body fields probed are read from
the OpenAPI description, so a new endpoint is covered without touching this file."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from core.models import Scope
from costs.models import DailyCost, UsageEvent
from tests.factories import ApiKeyFactory, CatalogModelFactory, RoleFactory
from tests.servers import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 1_000
STRING_FIELDS = ("request_id", "model", "role", "strategy", "category", "decision_id", "generation_id")


def real_looking_batch(prefix: str) -> list[dict]:
    """A full batch as the orchestrator sends it: every field filled, realistic lengths."""
    now = datetime.now(UTC)
    return [
        {
            "request_id": f"{prefix}-chatcmpl-{i:06d}-7f3c9a1e2b4d4e8f9a0b1c2d3e4f5a6b",
            "occurred_at": (now - timedelta(seconds=i)).isoformat(),
            "model": "openai/gpt-5.4-nano-20260317" if i % 3 else "acme/model",
            "role": "coder",
            "strategy": "single-with-escalation",
            "category": "programming",
            "decision_id": f"dec-{i:06d}-0a1b2c3d4e5f",
            "prompt_tokens": 1843 + i,
            "completion_tokens": 412,
            "reasoning_tokens": 128,
            "cached_tokens": 1024,
            "cache_write_tokens": 0,
            "cost_usd": 0.000571234 + i * 1e-9,
            "success": i % 17 != 0,
            "quality_score": 0.87,
            "latency_ms": 1250 + i,
            "escalation_depth": i % 3,
            "tools": ["web_search", "code_interpreter"],
            "generation_id": f"gen-{i:010d}-abcdef",
        }
        for i in range(BATCH)
    ]


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def check(self, response: httpx.Response, status: int, errors_in: str | None = None, field: str | None = None):
        self.counts["tried"] += 1
        kind = "5xx" if response.status_code >= 500 else f"{response.status_code // 100}xx"
        json_shape = response.headers.get("content-type", "").startswith("application/json")
        if json_shape and "code" in response.json() and "detail" in response.json():
            kind += " JSON"
        self.counts[kind] += 1
        assert response.status_code == status, (response.request.url, response.status_code, response.text[:300])
        assert json_shape, response.headers.get("content-type")
        body = response.json()
        if field is not None:
            named = [(e["in"], e["field"]) for e in body["errors"]]
            assert (errors_in, field) in named, (field, body)
        return body


@pytest.fixture
def served():
    CatalogModelFactory(
        id="acme/model", canonical_slug="acme/model-20260301", price_prompt=Decimal("0.000001"), price_completion=0
    )
    RoleFactory(slug="coder")
    key = ApiKeyFactory(name="poison", scopes=list(Scope.values)).raw_key
    with gunicorn(workers=2) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            yield client


def assert_nothing_stored() -> None:
    assert UsageEvent.objects.count() == 0 and DailyCost.objects.count() == 0


def test_poison_batches_are_refused_naming_index_and_field_and_a_good_batch_is_stored_whole(served, capsys):
    tally = Tally()
    good = real_looking_batch("good")
    body_bytes = len(json.dumps({"events": good}).encode())

    # A NUL in each string field (and in a tool), each time at another index of a full batch.
    for n, field in enumerate((*STRING_FIELDS, "tools")):
        batch = real_looking_batch("bad")
        index = 97 * n + 5
        if field == "tools":
            batch[index]["tools"] = ["web_search", "code\u0000interpreter"]
            expected = f"events.{index}.tools.1"
        else:
            batch[index][field] = batch[index][field][:5] + "\u0000" + batch[index][field][5:]
            expected = f"events.{index}.{field}"
        tally.check(served.post("/api/v1/usage", json={"events": batch}), 422, "body", expected)
        assert_nothing_stored()

    # A lone surrogate (as JSON escapes it: Python's json.dumps writes it the same way).
    batch = real_looking_batch("bad")
    batch[321]["strategy"] = "single\ud800"
    text = json.dumps({"events": batch})
    assert "\\ud800" in text
    tally.check(
        served.post("/api/v1/usage", content=text, headers={"content-type": "application/json"}),
        422,
        "body",
        "events.321.strategy",
    )

    # Year 1, a token count past any column, a cost with absurd digits.
    for index, field, value in [
        (999, "occurred_at", "0001-01-01T00:00:00+00:00"),
        (0, "occurred_at", "0001-01-01T00:00:00+14:00"),
        (500, "prompt_tokens", 2**70),
        (42, "cost_usd", "1e999999"),
    ]:
        batch = real_looking_batch("bad")
        batch[index][field] = value
        tally.check(served.post("/api/v1/usage", json={"events": batch}), 422, "body", f"events.{index}.{field}")
        assert_nothing_stored()

    # 10 MB: refused before it is read.
    big = b'{"events": [' + b" " * 10_000_000 + b"]}"
    tally.check(served.post("/api/v1/usage", content=big, headers={"content-type": "application/json"}), 413)
    assert_nothing_stored()

    # Good right after, on the same server: stored whole.
    answer = served.post("/api/v1/usage", json={"events": good})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == BATCH
    assert UsageEvent.objects.count() == BATCH
    assert sum(DailyCost.objects.values_list("requests", flat=True)) == BATCH

    # The same request_id with another payload: a 409 naming it, and nothing of that batch stored.
    changed = copy.deepcopy(good)
    changed[7]["success"] = not changed[7]["success"]
    changed[8]["request_id"] = "good-new-one"
    body = tally.check(served.post("/api/v1/usage", json={"events": changed}), 409)
    assert body["code"] == "idempotency_conflict" and body["request_ids"] == [good[7]["request_id"]]
    assert UsageEvent.objects.count() == BATCH and not UsageEvent.objects.filter(request_id="good-new-one").exists()
    # An identical repeat stays a duplicate.
    repeat = served.post("/api/v1/usage", json={"events": good[:10]}).json()
    assert (repeat["accepted"], repeat["duplicates"]) == (0, 10)

    with capsys.disabled():
        print(
            f"\npoison batches: {tally.counts['tried']} tried, {tally.counts['4xx JSON']} answered 4xx JSON, "
            f"{tally.counts['5xx']} 5xx; then a good batch of {BATCH} events ({body_bytes:,} bytes) stored whole, "
            f"{UsageEvent.objects.count() - BATCH} lost or extra"
        )
    assert tally.counts["5xx"] == 0 and tally.counts["4xx JSON"] == tally.counts["tried"]


def string_leaves(schema: dict, components: dict, path: tuple = (), depth: int = 0):
    """(path, example body) for each string a request body schema holds, with a NUL in that string
    and nothing else in the body (the check runs before the schema's own validation)."""
    if depth > 6:
        return
    if "$ref" in schema:
        yield from string_leaves(components[schema["$ref"].rsplit("/", 1)[1]], components, path, depth + 1)
        return
    for option in schema.get("anyOf", []) + schema.get("allOf", []):
        yield from string_leaves(option, components, path, depth + 1)
    kind = schema.get("type")
    if kind == "string":
        yield path
    elif kind == "object":
        for name, prop in schema.get("properties", {}).items():
            yield from string_leaves(prop, components, (*path, name), depth + 1)
    elif kind == "array":
        yield from string_leaves(schema.get("items", {}), components, (*path, 0), depth + 1)


def body_with_nul(path: tuple):
    value = "a\u0000b"
    for part in reversed(path):
        value = [value] if isinstance(part, int) else {part: value}
    return value


def test_a_nul_in_every_parameter_and_body_string_of_the_openapi_description_is_a_422(served, capsys):
    tally = Tally()
    schema = served.get("/api/openapi.json").json()
    components = schema.get("components", {}).get("schemas", {})
    operations = Counter()

    for template, path_item in schema["paths"].items():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            operations[method] += 1
            params = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]
            path_names = [p["name"] for p in params if p["in"] == "path"]

            def url(poisoned: str | None = None, template=template, path_names=path_names) -> str:
                filled = template
                for name in path_names:
                    filled = filled.replace("{" + name + "}", "x%00y" if name == poisoned else "x")
                return filled

            for param in params:
                if param["in"] == "path":
                    response = served.request(method, url(param["name"]))
                else:
                    response = served.request(method, f"{url()}?{param['name']}=a%00b")
                tally.check(response, 422, param["in"], param["name"])
                # The bytes of a lone surrogate cannot survive URL decoding: never a server error.
                odd = served.request(method, f"{url()}?{param['name']}=%ED%A0%80")
                tally.counts["tried"] += 1
                tally.counts["5xx" if odd.status_code >= 500 else "4xx JSON or 2xx"] += 1
            if method == "get" and not params:
                # No parameters of its own: one it does not know is checked all the same.
                tally.check(served.get(f"{url()}?probe=%00"), 422, "query", "probe")

            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                for leaf in string_leaves(content["schema"], components):
                    response = served.request(method, url(), json=body_with_nul(leaf))
                    tally.check(response, 422, "body", ".".join(str(p) for p in leaf))

    assert operations["get"] >= 14 and operations["post"] >= 4, operations
    assert UsageEvent.objects.count() == 0
    with capsys.disabled():
        print(
            f"\nNUL in every parameter and body string of {sum(operations.values())} operations: "
            f"{tally.counts['tried']} calls, {tally.counts['4xx JSON']} answered 4xx JSON, "
            f"{tally.counts['4xx JSON or 2xx']} surrogate-byte probes answered below 500, {tally.counts['5xx']} 5xx"
        )
    assert tally.counts["5xx"] == 0


def test_errors_outside_a_view_are_json_under_gunicorn(served):
    tally = Tally()
    tally.check(served.get("/api/v1/no/such/thing"), 404)
    tally.check(served.get("/api/v1/models/acme/nobody"), 404)
    body = tally.check(served.delete("/api/v1/usage"), 405)
    assert body["code"] == "method_not_allowed"
    tally.check(served.post("/api/v1/usage", content=b"{nope", headers={"content-type": "application/json"}), 400)
    admin = served.get("/admin-nothing/", follow_redirects=False)
    assert admin.status_code == 404
    assert not admin.headers.get("content-type", "").startswith("application/json")
