"""Each factory builds a valid, saved object; API keys authenticate; usage events are accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import CatalogModel, SyncStatus
from core.models import Alert, ApiKey
from costs.models import Budget, UsageEvent
from routing.models import EscalationOverride, Role, RolePreference, Strategy
from tests.conftest import ApiClient
from tests.factories import (
    AlertFactory,
    ApiKeyFactory,
    BudgetFactory,
    CatalogModelFactory,
    EscalationOverrideFactory,
    FamilyFactory,
    ModelEndpointFactory,
    RoleFactory,
    RolePreferenceFactory,
    StrategyFactory,
    SyncRunFactory,
    ingest,
    usage_event,
)

pytestmark = pytest.mark.django_db


def test_role_factory_makes_a_valid_role_once_per_slug():
    role = RoleFactory()
    role.full_clean()
    assert role.pk and role.required_capabilities == [] and role.active
    assert RoleFactory(slug=role.slug) == role
    assert Role.objects.filter(slug=role.slug).count() == 1


def test_role_preference_factory_makes_a_model_or_a_family_preference():
    by_model = RolePreferenceFactory()
    by_model.full_clean()
    assert by_model.pk and by_model.model_id and by_model.family_id is None

    family = FamilyFactory()
    by_family = RolePreferenceFactory(role=by_model.role, family=family)
    by_family.full_clean()
    assert by_family.model_id is None and by_family.family == family
    assert by_family.position > by_model.position

    model = CatalogModelFactory()
    by_id = RolePreferenceFactory(role=by_model.role, model_id=model.id, position=by_family.position + 1)
    assert (by_id.model, by_id.position) == (model, by_family.position + 1)
    assert list(RolePreference.objects.filter(role=by_model.role).order_by("position")) == [by_model, by_family, by_id]
    assert CatalogModel.objects.count() == 2  # no model made for the family or the model_id preference


def test_escalation_override_factory_makes_a_valid_override():
    override = EscalationOverrideFactory()
    override.full_clean()
    assert override.pk and override.from_model_id != override.to_model_id

    family = FamilyFactory()
    target = CatalogModelFactory()
    scoped = EscalationOverrideFactory(from_family=family, to_model_id=target.id, role=RoleFactory())
    scoped.full_clean()
    assert (scoped.from_model_id, scoped.to_model) == (None, target) and scoped.role_id
    assert EscalationOverride.objects.count() == 2 and CatalogModel.objects.count() == 3


def test_strategy_factory_makes_a_strategy_once_per_slug():
    strategy = StrategyFactory()
    strategy.full_clean()
    assert StrategyFactory(slug=strategy.slug) == strategy and Strategy.objects.count() == 1


def test_budget_factory_makes_a_valid_global_budget_and_scoped_ones():
    budget = BudgetFactory()
    budget.full_clean()
    assert (budget.scope, budget.scope_value, budget.limit_usd) == ("global", "", Decimal("10"))

    scoped = BudgetFactory(scope="role", scope_value="coder", limit_usd="2.5")
    scoped.full_clean()
    assert scoped.limit_usd == Decimal("2.5") and Budget.objects.count() == 2


def test_alert_factory_keys_an_alert_by_kind_and_model():
    alert = AlertFactory(kind="price_change", model_id="acme/a", message="moved")
    alert.full_clean()
    assert alert.key == "price_change:acme/a" and alert.message == "moved"
    assert AlertFactory(kind="sync_failed").key == "sync_failed:"
    assert AlertFactory(model_id="acme/b").key == "new_model:acme/b"
    assert list(Alert.objects.open().order_by("key").values_list("key", flat=True)) == [
        "new_model:acme/b",
        "price_change:acme/a",
        "sync_failed:",
    ]


def test_sync_run_factory_makes_a_finished_sync_unless_running():
    run = SyncRunFactory()
    run.full_clean()
    assert run.status == SyncStatus.SUCCEEDED and run.finished_at == run.started_at
    assert SyncRunFactory(status=SyncStatus.RUNNING).finished_at is None


def test_api_key_factory_issues_a_key_that_authenticates():
    key = ApiKeyFactory(scopes=["route"])

    response = ApiClient(key.raw_key).get("/api/v1/key")

    assert response.status_code == 200, response.content
    assert response.json()["scopes"] == ["route"] and response.json()["name"] == key.name
    assert ApiKey.objects.get().secret_hash != key.raw_key
    revoked = ApiKeyFactory(revoked=True)
    assert revoked.is_revoked and ApiClient(revoked.raw_key).get("/api/v1/key").status_code == 401


def test_usage_events_are_accepted_by_the_usage_api():
    model = CatalogModelFactory()
    writer = ApiClient(ApiKeyFactory(scopes=["usage:write"]).raw_key)
    events = [usage_event(model=model), usage_event(model=model, cost_usd="0.25", success=False)]
    assert isinstance(events[1]["cost_usd"], Decimal) and events[0]["occurred_at"].tzinfo is not None

    response = writer.post_json("/api/v1/usage", {"events": events})

    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2, "duplicates": 0, "unknown_models": [], "unpriced_models": []}
    assert UsageEvent.objects.filter(model=model).count() == 2


def test_ingest_stores_a_count_or_the_events_given_completed_with_the_overrides():
    assert ingest(3, role="writer").accepted == 3
    assert UsageEvent.objects.filter(role="writer").count() == 3

    yesterday = datetime.now(UTC) - timedelta(days=1)
    result = ingest({"request_id": "a"}, {"request_id": "b", "role": "reviewer"}, occurred_at=yesterday, role="planner")

    assert (result.accepted, result.unknown_models) == (2, ["test-author/model"])
    stored = {e.request_id: e for e in UsageEvent.objects.filter(request_id__in=["a", "b"])}
    assert (stored["a"].role, stored["a"].occurred_at, stored["a"].strategy) == ("planner", yesterday, "single")
    assert stored["b"].role == "reviewer"  # what an event says wins over the overrides


def test_model_endpoint_factory_makes_an_endpoint_of_a_new_or_given_model():
    endpoint = ModelEndpointFactory()
    endpoint.full_clean()
    assert endpoint.model_id and (endpoint.provider_name, endpoint.tag, endpoint.status) == (
        "Acme Cloud",
        "acme-cloud",
        0,
    )

    model = CatalogModelFactory()
    by_id = ModelEndpointFactory(model_id=model.id, provider_name="Amazon Bedrock")
    assert (by_id.model, by_id.tag) == (model, "amazon-bedrock")
    assert CatalogModel.objects.count() == 2
