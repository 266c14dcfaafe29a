"""The API description clients can trust: each component name stands for one class, and every
operation documents its error answers with the one error schema."""

from __future__ import annotations

import re
import typing
from collections import defaultdict
from datetime import timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import jsonschema_rs
import pytest
from django.utils import timezone
from ninja.openapi.schema import OpenAPISchema
from pydantic import BaseModel
from typing_extensions import is_typeddict

from core.auth import ApiKeyAuth
from core.errors import ErrorOut, errors
from costs.models import UsageEvent
from llmhive_site.api import api
from tests.conftest import ApiClient
from tests.factories import BudgetFactory, ingest, usage_event

HEALTH_REF = "#/components/schemas/ServiceHealthOut"
ERROR_REF = "#/components/schemas/ErrorOut"


def operations():
    """(method, path as the document names it, operation) for every operation the API serves."""
    for bound in api._get_bound_routers():
        for path, path_view in bound.path_operations.items():
            full_path = re.sub(r"{[^}:]+:", "{", "/api/" + "/".join(p for p in (bound.prefix, path) if p))
            for operation in path_view.operations:
                for method in operation.methods:
                    yield method, re.sub("/+", "/", full_path), operation


def named_types(annotation, seen: set) -> typing.Iterator[type]:
    """The models and typed dicts an annotation holds, at any depth (list[X] | None...)."""
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel) or is_typeddict(annotation)):
        if annotation in seen:
            return
        seen.add(annotation)
        yield annotation
        fields = (
            [f.annotation for f in annotation.model_fields.values()]
            if issubclass(annotation, BaseModel)
            else list(typing.get_type_hints(annotation).values())
        )
        for field in fields:
            yield from named_types(field, seen)
        return
    for arg in typing.get_args(annotation):
        yield from named_types(arg, seen)


def classes_by_name() -> dict[str, set[type]]:
    """Every class behind the document, by the name its schema gets (ninja's wrappers around a
    view's parameters and answers give no component: their fields do)."""
    names: dict[str, set[type]] = defaultdict(set)
    seen: set = set()
    for _method, _path, operation in operations():
        wrappers = [m for m in operation.response_models.values() if isinstance(m, type)] + list(operation.models)
        for wrapper in wrappers:
            for field in wrapper.model_fields.values():
                for cls in named_types(field.annotation, seen):
                    names[cls.__name__].add(cls)
    return names


def test_each_schema_name_stands_for_one_class():
    names = classes_by_name()
    assert {"BudgetOut", "RouteBudgetOut", "ErrorOut", "FieldErrorOut", "UsageEventIn"} <= set(names)
    collisions = {name: sorted(f"{c.__module__}.{c.__qualname__}" for c in classes) for name, classes in names.items()}
    assert {name: where for name, where in collisions.items() if len(where) > 1} == {}


def test_each_component_is_defined_once_while_the_document_is_built():
    """ninja merges each model's definitions into one table, the later silently replacing the
    earlier: record every definition a name is given."""
    given: dict[str, list[dict]] = defaultdict(list)

    class Recording(OpenAPISchema):
        def add_schema_definitions(self, definitions: dict) -> None:
            for name, definition in definitions.items():
                if definition not in given[name]:
                    given[name].append(definition)
            super().add_schema_definitions(definitions)

    document = Recording(api, "api/")
    assert len(given) == len(document["components"]["schemas"]) > 30
    assert {name: len(defs) for name, defs in given.items() if len(defs) > 1} == {}


def test_every_operation_documents_its_error_answers_with_the_error_schema():
    document = api.get_openapi_schema()
    missing = []
    for method, path, operation in operations():
        documented = document["paths"][path][method.lower()]["responses"]
        expected = set()
        if isinstance(operation.auth_callbacks[0] if operation.auth_callbacks else None, ApiKeyAuth):
            expected.add("401")
            if operation.auth_callbacks[0].scope is not None:
                expected.add("403")
        if document["paths"][path][method.lower()].get("parameters"):
            expected.add("422")
        if method == "POST":
            expected |= {"400", "413", "422"}  # not JSON, too large, invalid
        if "{" in path:
            expected.add("404")
        if missing_here := expected - {str(s) for s in documented}:
            missing.append((method, path, sorted(missing_here)))
        for status, answer in documented.items():
            if (method, path, int(status)) == ("GET", "/api/v1/health", 503):
                # The service health check's 503 is its report (what is down), for load balancers.
                assert answer["content"]["application/json"]["schema"] == {"$ref": HEALTH_REF}
            elif int(status) >= 400:
                assert answer["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path, status)
    assert missing == []


def test_the_error_schema_describes_the_answers_the_handlers_give(api_client, anon_client, make_api_key):
    document = api.get_openapi_schema()
    answers = [
        anon_client.get("/api/v1/models"),  # 401
        ApiClient(make_api_key("usage:write")).get("/api/v1/models"),  # 403
        api_client.get("/api/v1/models/acme/none"),  # 404
        api_client.get("/api/v1/models?limit=0"),  # 422 with errors
        api_client.post_json("/api/v1/route", {"role": "nobody"}),  # 404 unknown_role
    ]
    resolved = _resolve({"$ref": ERROR_REF}, document)
    assert [a.status_code for a in answers] == [401, 403, 404, 422, 404]
    for answer in answers:
        jsonschema_rs.validate(resolved, answer.json())
    assert answers[3].json()["errors"][0]["field"] == "limit"


def _resolve(node, document):
    """The schema with its $refs into components replaced by what they name."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]], document)
        return {k: _resolve(v, document) for k, v in node.items() if k != "components"}
    if isinstance(node, list):
        return [_resolve(v, document) for v in node]
    return node


@pytest.mark.django_db
def test_the_budgets_answer_conforms_to_the_documented_budget_schema(api_client):
    """Two schemas were named BudgetOut: /budgets was documented with routing's, and every real
    answer violated it."""
    BudgetFactory(name="monthly", limit_usd=Decimal("10"))
    ingest(2, cost_usd="0.5")
    document = api.get_openapi_schema()
    documented = document["paths"]["/api/v1/budgets"]["get"]["responses"][200]["content"]["application/json"]
    answer = api_client.get("/api/v1/budgets")
    assert answer.status_code == 200
    assert answer.json()[0]["spent_usd"] == "1"
    jsonschema_rs.validate(_resolve(documented["schema"], document), answer.json())


def test_errors_refuses_a_status_without_an_error_answer():
    assert set(errors(401, 422)) == {401, 422}
    assert errors(401)[401] is ErrorOut
    with pytest.raises(ValueError, match="200"):
        errors(200)


# --- What the schemathesis run found -------------------------------------------------------------


@pytest.mark.django_db
def test_an_offset_postgresql_cannot_hold_is_stored_as_the_same_instant_in_utc(api_client):
    """ISO 8601 allows ±23:59, PostgreSQL ±15:59: `+17:56` was a 500."""
    sent = (timezone.now() - timedelta(hours=1)).astimezone(dt_timezone(timedelta(hours=17, minutes=56)))
    event = usage_event(occurred_at=sent.isoformat())
    answer = api_client.post_json("/api/v1/usage", {"events": [event]})
    assert answer.status_code == 200, answer.content
    assert answer.json()["accepted"] == 1
    assert UsageEvent.objects.get(request_id=event["request_id"]).occurred_at == sent


@pytest.mark.django_db
def test_an_instant_before_year_one_in_utc_is_a_422_naming_the_event(api_client):
    event = usage_event(occurred_at="0001-01-01T00:00:00+17:56")
    answer = api_client.post_json("/api/v1/usage", {"events": [usage_event(), event]})
    assert answer.status_code == 422
    assert [(e["in"], e["field"]) for e in answer.json()["errors"]] == [("body", "events.1.occurred_at")]
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/costs/daily?end=0001-01-01", "end"),  # the default start, 29 days earlier, was a 500
        ("/api/v1/telemetry/summary?end=0001-01-01", "end"),
        ("/api/v1/costs/summary?start=9999-12-31&end=9999-12-31", "start"),  # the day after the end was a 500
        ("/api/v1/costs/export.csv?start=1999-12-31", "start"),
    ],
)
def test_report_days_outside_2000_to_2999_are_a_422_naming_the_field(api_client, path, field):
    answer = api_client.get(path)
    assert answer.status_code == 422, answer.content
    assert answer.json()["code"] == "invalid"
    assert answer.json()["errors"][0]["field"] == field


@pytest.mark.django_db
def test_report_days_at_the_bounds_are_answered(api_client):
    assert api_client.get("/api/v1/costs/daily?start=2000-01-01&end=2000-01-31").status_code == 200
    assert api_client.get("/api/v1/telemetry/summary?end=2000-01-01").status_code == 200
    assert api_client.get("/api/v1/costs/summary?start=2999-12-01&end=2999-12-31").status_code == 200
