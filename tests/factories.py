"""Test data: a factory per model the tests build, and usage events for the ledger.

Every factory saves through the model's manager (or, for API keys, through `ApiKey.issue`), so
the signals that bump data versions fire as they do for objects made by hand. Defaults are valid
(a model's full_clean() passes); pass what a test's assertions depend on explicitly.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from catalog.models import AlertKind as CatalogAlertKind
from catalog.models import (
    CatalogModel,
    Category,
    Family,
    FamilySuggestion,
    ModelEndpoint,
    SyncKind,
    SyncRun,
    SyncStatus,
)
from core.models import Alert, AlertDelivery, AlertFormat, AlertSubscription, ApiKey, Scope
from costs.ingest import IngestResult, ingest_events
from costs.models import Budget, BudgetPeriod, BudgetScope
from routing.models import EscalationOverride, Role, RolePreference, Strategy


def _given(obj, *names: str) -> bool:
    """Whether any of `names` was passed to the factory (and is not None)."""
    return any(getattr(obj, name, None) is not None for name in names)


def _decimal(value) -> Decimal | None:
    return value if value is None or isinstance(value, Decimal) else Decimal(str(value))


# --- Catalog -------------------------------------------------------------------------------------


class FamilyFactory(DjangoModelFactory):
    class Meta:
        model = Family
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"family-{n}")
    name = factory.LazyAttribute(lambda f: f.slug.title())
    pattern = factory.LazyAttribute(lambda f: f"test/{f.slug}*")
    priority = 50


class FamilySuggestionFactory(DjangoModelFactory):
    """A pending suggestion (research writes them; tests make their own)."""

    class Meta:
        model = FamilySuggestion

    slug = factory.Sequence(lambda n: f"suggested-{n}")
    name = factory.LazyAttribute(lambda f: f.slug.title())
    pattern = factory.LazyAttribute(lambda f: f"test/{f.slug}*")
    priority = 150
    model_ids = factory.LazyFunction(list)


class CategoryFactory(DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"category-{n}")
    name = factory.LazyAttribute(lambda c: c.slug.title())


class CatalogModelFactory(DjangoModelFactory):
    class Meta:
        model = CatalogModel

    id = factory.Sequence(lambda n: f"test-author/model-{n}")
    name = factory.LazyAttribute(lambda m: f"Test: {m.id.split('/')[-1]}")
    canonical_slug = factory.LazyAttribute(lambda m: m.id)
    author = factory.LazyAttribute(lambda m: m.id.split("/")[0])
    context_length = 128_000
    max_completion_tokens = 16_384
    input_modalities = factory.LazyFunction(lambda: ["text"])
    output_modalities = factory.LazyFunction(lambda: ["text"])
    supported_parameters = factory.LazyFunction(lambda: ["max_tokens", "temperature"])
    price_prompt = Decimal("0.00000125")
    price_completion = Decimal("0.00001")


class ModelEndpointFactory(DjangoModelFactory):
    """An endpoint of a new catalog model (unless model or model_id is given), up, in fp16, its tag
    the provider's name lower-cased. Research replaces endpoints in bulk and bumps the catalog's
    version itself; so does a test after making endpoints for a snapshot already built."""

    class Meta:
        model = ModelEndpoint

    model = factory.Maybe(
        factory.LazyAttribute(lambda e: _given(e, "model_id")),
        no_declaration=factory.SubFactory(CatalogModelFactory),
    )
    provider_name = "Acme Cloud"
    tag = factory.LazyAttribute(lambda e: "-".join(e.provider_name.lower().split()))
    name = factory.LazyAttribute(lambda e: f"{e.provider_name}: model")
    quantization = "fp16"
    status = 0


class SyncRunFactory(DjangoModelFactory):
    """A finished, successful catalog sync by default. A run still `running` has no finished_at;
    any other status finishes when it started unless finished_at is given."""

    class Meta:
        model = SyncRun

    kind = SyncKind.SYNC
    status = SyncStatus.SUCCEEDED
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda r: None if r.status == SyncStatus.RUNNING else r.started_at)


# --- Core ----------------------------------------------------------------------------------------


class AlertFactory(DjangoModelFactory):
    """An open alert. Its key is kind:model_id, as `core.alerts.NewAlert` makes it, unless given:
    like the real ones, two open alerts with the same key cannot both exist."""

    class Meta:
        model = Alert

    kind = CatalogAlertKind.NEW_MODEL
    model_id = None
    key = factory.LazyAttribute(lambda a: f"{a.kind}:{a.model_id or ''}")
    message = factory.LazyAttribute(lambda a: f"Test alert: {a.key}")
    created_at = factory.LazyFunction(timezone.now)
    last_raised_at = factory.SelfAttribute("created_at")


class AlertSubscriptionFactory(DjangoModelFactory):
    """An active webhook subscription to every kind, signed JSON; give `target` (a receiver's URL)."""

    class Meta:
        model = AlertSubscription

    target = factory.Sequence(lambda n: f"http://127.0.0.1:9/hook-{n}")
    kinds = factory.LazyFunction(list)
    secret = factory.Sequence(lambda n: f"secret-{n}")
    format = AlertFormat.JSON
    active = True


class AlertDeliveryFactory(DjangoModelFactory):
    """A pending delivery of a new alert to a new subscription."""

    class Meta:
        model = AlertDelivery

    subscription = factory.SubFactory(AlertSubscriptionFactory)
    alert = factory.SubFactory(AlertFactory, key=factory.Sequence(lambda n: f"delivered:{n}"))


class ApiKeyFactory(DjangoModelFactory):
    """A key made by `ApiKey.issue`; its secret is kept on the instance as `raw_key`:

        key = ApiKeyFactory(scopes=["usage:write"])
        ApiClient(key.raw_key).post_json(...)

    Other fields (revoked_at, last_used_at…) are set after issuing; `revoked=True` revokes it now.
    """

    class Meta:
        model = ApiKey

    class Params:
        revoked = factory.Trait(revoked_at=factory.LazyFunction(timezone.now))

    name = factory.Sequence(lambda n: f"test key {n}")
    scopes = factory.LazyFunction(lambda: [Scope.ROUTE.value])
    created_by = None

    @classmethod
    def _create(cls, model_class, *args, name, scopes, created_by=None, **fields):
        key, raw_key = model_class.issue(name=name, scopes=list(scopes), created_by=created_by)
        if fields:
            for field, value in fields.items():
                setattr(key, field, value)
            key.save(update_fields=list(fields))
        key.raw_key = raw_key
        return key


# --- Routing -------------------------------------------------------------------------------------


class RoleFactory(DjangoModelFactory):
    class Meta:
        model = Role
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"role-{n}")
    required_capabilities = factory.LazyFunction(list)


class RolePreferenceFactory(DjangoModelFactory):
    """A preference for a new catalog model, unless a model, a model_id, a family or a family_id
    is given; positions follow the order of creation unless given."""

    class Meta:
        model = RolePreference

    role = factory.SubFactory(RoleFactory)
    model = factory.Maybe(
        factory.LazyAttribute(lambda p: _given(p, "model_id", "family", "family_id")),
        no_declaration=factory.SubFactory(CatalogModelFactory),
    )
    position = factory.Sequence(lambda n: n)


class EscalationOverrideFactory(DjangoModelFactory):
    """From a new model (unless a from_model, from_model_id, from_family or from_family_id is
    given) to a new model (unless to_model or to_model_id is given), for every role."""

    class Meta:
        model = EscalationOverride

    from_model = factory.Maybe(
        factory.LazyAttribute(lambda o: _given(o, "from_model_id", "from_family", "from_family_id")),
        no_declaration=factory.SubFactory(CatalogModelFactory),
    )
    to_model = factory.Maybe(
        factory.LazyAttribute(lambda o: _given(o, "to_model_id")),
        no_declaration=factory.SubFactory(CatalogModelFactory),
    )
    position = factory.Sequence(lambda n: n)


class StrategyFactory(DjangoModelFactory):
    class Meta:
        model = Strategy
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"strategy-{n}")


# --- Costs ---------------------------------------------------------------------------------------


class BudgetFactory(DjangoModelFactory):
    """A global monthly budget of 10 USD. Only one budget may cover a scope, value and period:
    give a scope (and scope_value) or another period to make a second one."""

    class Meta:
        model = Budget
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"budget-{n}")
    scope = BudgetScope.GLOBAL
    scope_value = ""
    period = BudgetPeriod.MONTH
    limit_usd = Decimal("10")

    @classmethod
    def _adjust_kwargs(cls, **kwargs):
        kwargs["limit_usd"] = _decimal(kwargs["limit_usd"])  # "1.5" or 100 as a Decimal, as a form saves it
        return kwargs


_request_ids = itertools.count(1)


def usage_event(**overrides) -> dict:
    """A valid usage report, as `ingest_events` and POST /api/v1/usage take it.

    A unique request_id, now (UTC) for occurred_at, 100 prompt and 10 completion tokens, a
    success and no reported cost; anything may be overridden. `model` may be a CatalogModel;
    `cost_usd` may be given as a string or a number (it becomes a Decimal).
    """
    event = {
        "request_id": f"test-request-{next(_request_ids)}",
        "occurred_at": datetime.now(UTC),
        "model": "test-author/model",
        "role": "coder",
        "strategy": "single",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "success": True,
    }
    event.update(overrides)
    if isinstance(event["model"], CatalogModel):
        event["model"] = event["model"].id
    if "cost_usd" in event:
        event["cost_usd"] = _decimal(event["cost_usd"])
    return event


def ingest(*events: dict | int, **overrides) -> IngestResult:
    """Store usage events through `ingest_events`, in one batch.

    ingest(3, role="writer"): three usage_event(role="writer"). ingest(e1, e2, role="writer"): the
    events given (dicts), each completed with the overrides, then with usage_event's defaults (what
    an event says wins over the overrides). ingest(): one default event.
    """
    if len(events) == 1 and isinstance(events[0], int):
        batch = [usage_event(**overrides) for _ in range(events[0])]
    elif any(isinstance(e, int) for e in events):
        raise TypeError("ingest() takes a count or events, not both")
    else:
        batch = [usage_event(**{**overrides, **e}) for e in events] or [usage_event(**overrides)]
    return ingest_events(batch)
