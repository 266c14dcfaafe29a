"""The catalog admin: curating models, families and categories, triggering syncs, reading runs and alerts."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from catalog.models import (
    CatalogModel,
    Category,
    CategoryRanking,
    Family,
    ModelEndpoint,
    ModelStatus,
    PriceChange,
    SyncKind,
    SyncStatus,
)
from tests.factories import CatalogModelFactory, CategoryFactory, FamilyFactory, SyncRunFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:catalog_catalogmodel_changelist"


def listed(client, url_name: str = CHANGELIST, **params) -> list:
    response = client.get(reverse(url_name), params)
    assert response.status_code == HTTPStatus.OK
    return [obj.pk for obj in response.context["cl"].result_list]


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def management_data(response) -> dict:
    """The management forms of every inline on a rendered change form."""
    data = {}
    for inline in response.context["inline_admin_formsets"]:
        form = inline.formset.management_form
        for name in form.fields:
            data[form.add_prefix(name)] = form[name].value()
    return data


def run_action(client, url_name: str, action: str, pks) -> object:
    return client.post(reverse(url_name), {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True)


def update_statements(captured, table: str) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE") and table in q["sql"]]


# The queue tests look for the task in django-q2's ORM broker, the default (no LLMHIVE_REDIS_URL).
needs_orm_broker = pytest.mark.skipif("orm" not in settings.Q_CLUSTER, reason="the task queue is not the ORM broker")


@pytest.fixture
def staff_viewer(django_user_model):
    """A staff user who may look at models but not change them."""
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_catalogmodel"))
    return user


# --- The model list -----------------------------------------------------------------------------


def _catalog(count: int) -> None:
    family = FamilyFactory(slug="acme", pattern="acme/*")
    for i in range(count):
        CatalogModelFactory(id=f"acme/model-{i:03}", family=family if i % 2 else None, supports_tools=bool(i % 3))


def test_it_lists_fifty_models_in_as_many_queries_as_five(admin_client, django_assert_max_num_queries):
    _catalog(5)
    with CaptureQueriesContext(connection) as five:
        response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == HTTPStatus.OK
    assert len(response.context["cl"].result_list) == 5

    for i in range(5, 50):
        CatalogModelFactory(id=f"acme/model-{i:03}", family=Family.objects.get(slug="acme"), supports_reasoning=True)
    with django_assert_max_num_queries(len(five)):
        response = admin_client.get(reverse(CHANGELIST))
    assert len(response.context["cl"].result_list) == 50


def test_it_shows_prices_per_million_tokens(admin_client):
    CatalogModelFactory(id="acme/priced", price_prompt=Decimal("0.00000125"), price_completion=Decimal("0.00001"))
    CatalogModelFactory(id="acme/router", variable_pricing=True, price_prompt=None, price_completion=None)
    CatalogModelFactory(id="acme/unpriced", price_prompt=None, price_completion=None)

    response = admin_client.get(reverse(CHANGELIST))

    content = response.content.decode()
    assert (
        '<td class="field-prompt_per_million"><span class="money" title="0.00000125 USD per token">$1.25</span></td>'
        in content
    )
    assert (
        '<td class="field-completion_per_million"><span class="money" title="0.00001 USD per token">$10.00</span>'
        in content
    )
    assert '<td class="field-prompt_per_million">variable</td>' in content
    assert '<td class="field-prompt_per_million">—</td>' in content


def test_it_shows_capabilities_as_letters(admin_client):
    CatalogModelFactory(id="acme/tools-and-images", supports_tools=True, supports_multimodal_image=True)

    response = admin_client.get(reverse(CHANGELIST))

    assert '<span title="tools">T</span>' in response.content.decode()
    assert '<span title="image input">I</span>' in response.content.decode()
    assert '<span title="no reasoning">·</span>' in response.content.decode()


def test_it_filters_by_family_and_by_no_family(admin_client):
    family = FamilyFactory(slug="acme", pattern="acme/*")
    CatalogModelFactory(id="acme/in-family", family=family)
    CatalogModelFactory(id="other/no-family", family=None)

    assert listed(admin_client, family="acme") == ["acme/in-family"]
    assert listed(admin_client, family="-") == ["other/no-family"]


def test_it_filters_by_status(admin_client):
    CatalogModelFactory(id="acme/here")
    CatalogModelFactory(id="acme/gone", status=ModelStatus.MISSING)

    assert listed(admin_client, status__exact="missing") == ["acme/gone"]
    assert listed(admin_client, status__exact="active") == ["acme/here"]


@pytest.mark.parametrize(
    "capability",
    [
        "supports_tools",
        "supports_reasoning",
        "supports_structured_outputs",
        "supports_multimodal_image",
        "supports_file_pdf",
        "supports_audio",
        "supports_video",
    ],
)
def test_it_filters_by_each_capability(admin_client, capability):
    CatalogModelFactory(id="acme/capable", **{capability: True})
    CatalogModelFactory(id="acme/plain")

    assert listed(admin_client, **{f"{capability}__exact": "1"}) == ["acme/capable"]
    assert listed(admin_client, **{f"{capability}__exact": "0"}) == ["acme/plain"]


def test_it_filters_by_author_and_lists_authors_with_counts(admin_client):
    CatalogModelFactory(id="acme/one")
    CatalogModelFactory(id="acme/two")
    CatalogModelFactory(id="globex/one")

    assert listed(admin_client, author="globex") == ["globex/one"]
    response = admin_client.get(reverse(CHANGELIST))
    assert "acme (2)" in response.content.decode()
    assert "globex (1)" in response.content.decode()


def test_it_filters_by_enabled_and_variable_pricing(admin_client):
    CatalogModelFactory(id="acme/off", enabled=False)
    CatalogModelFactory(id="openrouter/auto", variable_pricing=True)
    CatalogModelFactory(id="acme/plain")

    assert listed(admin_client, enabled__exact="0") == ["acme/off"]
    assert listed(admin_client, variable_pricing__exact="1") == ["openrouter/auto"]


def test_it_searches_ids_names_and_canonical_slugs(admin_client):
    CatalogModelFactory(id="acme/widget", name="Acme: Widget", canonical_slug="acme/widget-20250101")
    CatalogModelFactory(id="globex/gadget", name="Globex: Gadget")

    assert listed(admin_client, q="20250101") == ["acme/widget"]
    assert listed(admin_client, q="Gadget") == ["globex/gadget"]


# --- Actions ------------------------------------------------------------------------------------


def test_it_disables_selected_models_in_one_update(admin_client):
    on = CatalogModelFactory.create_batch(3, enabled=True)
    already_off = CatalogModelFactory(enabled=False)

    with CaptureQueriesContext(connection) as captured:
        response = run_action(admin_client, CHANGELIST, "disable_models", [m.pk for m in on] + [already_off.pk])

    assert not CatalogModel.objects.filter(enabled=True).exists()
    assert len(update_statements(captured, "model_catalog")) == 1
    assert "Disabled 3 models." in message_texts(response)


def test_it_enables_selected_models_in_one_update(admin_client):
    off = CatalogModelFactory(enabled=False)
    untouched = CatalogModelFactory(enabled=False)

    with CaptureQueriesContext(connection) as captured:
        response = run_action(admin_client, CHANGELIST, "enable_models", [off.pk])

    off.refresh_from_db()
    untouched.refresh_from_db()
    assert off.enabled and not untouched.enabled
    assert len(update_statements(captured, "model_catalog")) == 1
    assert "Enabled 1 model." in message_texts(response)


# --- The model change form ----------------------------------------------------------------------


def test_it_shows_the_raw_payload_pretty_printed_and_read_only(admin_client):
    model = CatalogModelFactory(
        id="acme/widget", name="Widget", raw={"id": "acme/widget", "pricing": {"prompt": "0.1"}}
    )
    url = reverse("admin:catalog_catalogmodel_change", args=[model.pk])

    response = admin_client.get(url)
    content = response.content.decode()
    assert "<pre" in content
    assert "&quot;pricing&quot;: {\n    &quot;prompt&quot;: &quot;0.1&quot;" in content
    assert 'name="raw"' not in content
    assert 'name="name"' not in content  # synced fields are read-only

    data = {
        **management_data(response),
        "notes": "Curated by hand.",
        "raw": json.dumps({"id": "tampered"}),
        "name": "Tampered",
        "price_prompt": "1",
    }  # `enabled` left out: the checkbox is unticked
    response = admin_client.post(url, data)

    assert response.status_code == HTTPStatus.FOUND
    model.refresh_from_db()
    assert model.enabled is False
    assert model.notes == "Curated by hand."
    assert model.raw == {"id": "acme/widget", "pricing": {"prompt": "0.1"}}
    assert model.name == "Widget"
    assert model.price_prompt == Decimal("0.00000125")


def test_it_shows_price_history_newest_first_and_endpoints(admin_client):
    model = CatalogModelFactory(id="acme/widget")
    now = timezone.now()
    for days in range(25):
        PriceChange.objects.create(
            model=model,
            field="prompt",
            old=Decimal(days),
            new=Decimal(days + 1),
            observed_at=now - timedelta(days=days),
        )
    ModelEndpoint.objects.create(model=model, provider_name="Acme Cloud", quantization="fp8")

    response = admin_client.get(reverse("admin:catalog_catalogmodel_change", args=[model.pk]))

    price_history, endpoints = response.context["inline_admin_formsets"]
    shown = [form.original for form in price_history]
    assert len(shown) == 20
    assert shown[0].observed_at == now
    assert [c.observed_at for c in shown] == sorted((c.observed_at for c in shown), reverse=True)
    assert not price_history.has_add_permission and not price_history.has_change_permission
    assert [form.original.provider_name for form in endpoints] == ["Acme Cloud"]
    assert "Acme Cloud" in response.content.decode()


def test_it_offers_no_way_to_add_or_delete_models(admin_client):
    model = CatalogModelFactory()

    assert admin_client.get(reverse("admin:catalog_catalogmodel_add")).status_code == HTTPStatus.FORBIDDEN
    delete_url = reverse("admin:catalog_catalogmodel_delete", args=[model.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    response = admin_client.get(reverse(CHANGELIST))
    assert "delete_selected" not in response.content.decode()
    assert CatalogModel.objects.filter(pk=model.pk).exists()


# --- Sync and research buttons ------------------------------------------------------------------


@needs_orm_broker
def test_sync_now_queues_a_sync_task(admin_client):
    response = admin_client.post(reverse("admin:catalog_catalogmodel_sync"), follow=True)

    queued = OrmQ.objects.get()
    assert queued.task["func"] == "catalog.tasks.sync_catalog_task"
    kwargs = dict(queued.task["kwargs"])
    assert kwargs.pop("queue_token")  # the one-per-kind slot it frees when it ends
    assert kwargs == {"trigger": "admin", "force": False}
    assert any(queued.task_id() in text for text in message_texts(response))
    assert response.redirect_chain[-1][0] == reverse(CHANGELIST)


@needs_orm_broker
def test_pressing_sync_now_again_queues_no_second_job(admin_client):
    admin_client.post(reverse("admin:catalog_catalogmodel_sync"))
    first = OrmQ.objects.get()

    for _ in range(5):
        response = admin_client.post(reverse("admin:catalog_catalogmodel_sync"), follow=True)

    assert OrmQ.objects.count() == 1
    assert any("already queued" in text and first.task_id() in text for text in message_texts(response))


@needs_orm_broker
def test_research_now_queues_a_research_task(admin_client):
    response = admin_client.post(reverse("admin:catalog_catalogmodel_research"), follow=True)

    queued = OrmQ.objects.get()
    assert queued.task["func"] == "catalog.tasks.research_catalog_task"
    kwargs = dict(queued.task["kwargs"])
    assert kwargs.pop("queue_token")
    assert kwargs == {"trigger": "admin"}
    assert any(queued.task_id() in text for text in message_texts(response))


def test_the_change_list_shows_the_sync_buttons(admin_client):
    content = admin_client.get(reverse(CHANGELIST)).content.decode()

    assert f'action="{reverse("admin:catalog_catalogmodel_sync")}"' in content
    assert f'action="{reverse("admin:catalog_catalogmodel_research")}"' in content
    assert reverse("admin:catalog_catalogmodel_force_sync") in content


def test_sync_now_does_not_queue_on_get(admin_client):
    response = admin_client.get(reverse("admin:catalog_catalogmodel_sync"))

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert not OrmQ.objects.exists()


def test_force_sync_asks_for_confirmation_first(admin_client):
    SyncRunFactory(
        kind=SyncKind.SYNC,
        status=SyncStatus.FAILED,
        error="the list would mark 40 of 50 active models missing (80%, limit 20%)",
    )

    response = admin_client.get(reverse("admin:catalog_catalogmodel_force_sync"))

    assert response.status_code == HTTPStatus.OK
    content = response.content.decode()
    assert "marked <em>missing</em>" in content
    assert "even an empty or much shorter list" in content
    assert "the list would mark 40 of 50 active models missing" in content
    assert not OrmQ.objects.exists()


def test_force_sync_says_when_the_last_sync_did_not_fail(admin_client):
    earlier = timezone.now() - timedelta(hours=6)
    SyncRunFactory(kind=SyncKind.SYNC, status=SyncStatus.FAILED, error="an empty model list", started_at=earlier)
    SyncRunFactory(kind=SyncKind.SYNC, status=SyncStatus.SUCCEEDED)

    content = admin_client.get(reverse("admin:catalog_catalogmodel_force_sync")).content.decode()

    assert "did not fail: a normal sync is probably what you want" in content
    assert "an empty model list" not in content


@needs_orm_broker
def test_force_sync_queues_a_forced_sync_when_confirmed(admin_client):
    response = admin_client.post(reverse("admin:catalog_catalogmodel_force_sync"), {"post": "yes"}, follow=True)

    queued = OrmQ.objects.get()
    assert queued.task["func"] == "catalog.tasks.sync_catalog_task"
    assert queued.task["kwargs"] == {"trigger": "admin", "force": True}
    assert any("Forced catalog sync queued" in text and queued.task_id() in text for text in message_texts(response))


@pytest.mark.parametrize(
    "url_name, method",
    [
        ("admin:catalog_catalogmodel_sync", "post"),
        ("admin:catalog_catalogmodel_research", "post"),
        ("admin:catalog_catalogmodel_force_sync", "get"),
        ("admin:catalog_catalogmodel_force_sync", "post"),
    ],
)
def test_a_user_without_change_permission_cannot_trigger_a_sync(client, staff_viewer, url_name, method):
    client.force_login(staff_viewer)

    response = getattr(client, method)(reverse(url_name))

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not OrmQ.objects.exists()


def test_a_user_without_change_permission_sees_no_sync_buttons(client, staff_viewer):
    client.force_login(staff_viewer)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == HTTPStatus.OK
    assert "Sync now" not in response.content.decode()


def test_an_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.post(reverse("admin:catalog_catalogmodel_sync"))

    assert response.status_code == HTTPStatus.FOUND
    assert reverse("admin:login") in response["Location"]
    assert not OrmQ.objects.exists()


# --- Families -----------------------------------------------------------------------------------


def family_data(**overrides) -> dict:
    return {
        "slug": "acme-widget",
        "name": "Acme Widget",
        "pattern": "acme/widget-*",
        "priority": "10",
        "vendor": "Acme",
        **overrides,
    }


def test_saving_a_family_reclassifies_the_models(admin_client):
    model = CatalogModelFactory(id="acme/widget-2")
    FamilyFactory(slug="acme-any", pattern="acme/*", priority=500)

    response = admin_client.post(reverse("admin:catalog_family_add"), family_data(), follow=True)

    family = Family.objects.get(slug="acme-widget")
    model.refresh_from_db()
    assert model.family == family
    assert "Re-classified the catalog: 1 model changed family." in message_texts(response)

    url = reverse("admin:catalog_family_change", args=[family.pk])
    response = admin_client.post(url, family_data(pattern="acme/gadget-*"), follow=True)

    model.refresh_from_db()
    assert model.family.slug == "acme-any"
    assert "Re-classified the catalog: 1 model changed family." in message_texts(response)


def test_deleting_a_family_reclassifies_the_models(admin_client):
    widget = FamilyFactory(slug="acme-widget", pattern="acme/widget-*", priority=10)
    FamilyFactory(slug="acme-any", pattern="acme/*", priority=500)
    model = CatalogModelFactory(id="acme/widget-2", family=widget)

    response = admin_client.post(reverse("admin:catalog_family_delete", args=[widget.pk]), {"post": "yes"}, follow=True)

    model.refresh_from_db()
    assert model.family.slug == "acme-any"
    assert "Re-classified the catalog: 1 model changed family." in message_texts(response)


def test_a_family_pattern_must_be_a_glob_on_the_model_id(admin_client):
    response = admin_client.post(reverse("admin:catalog_family_add"), family_data(pattern="widget"))

    assert response.status_code == HTTPStatus.OK
    assert response.context["adminform"].form.errors["pattern"] == [
        "The pattern is a glob on the model id and must contain “/” or “*”, "
        "for example openai/gpt-5.2* or anthropic/claude-*-4.5*."
    ]
    assert not Family.objects.filter(slug="acme-widget").exists()


def test_the_family_list_shows_how_many_models_match(admin_client):
    family = FamilyFactory(slug="acme", pattern="acme/*")
    CatalogModelFactory.create_batch(3, family=family)
    CatalogModelFactory(family=family, status=ModelStatus.MISSING)

    response = admin_client.get(reverse("admin:catalog_family_changelist"))

    row = next(f for f in response.context["cl"].result_list if f.slug == "acme")
    assert (row.model_count, row.active_count) == (4, 3)
    assert '?family=acme">4</a>' in response.content.decode()


# --- Categories ---------------------------------------------------------------------------------


def test_categories_can_be_retired_from_the_list(admin_client):
    category = CategoryFactory(slug="zz-retire-me", name="Retire me")
    categories = list(Category.objects.order_by("slug"))
    data = {
        "form-TOTAL_FORMS": str(len(categories)),
        "form-INITIAL_FORMS": str(len(categories)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for i, c in enumerate(categories):
        data[f"form-{i}-id"] = str(c.pk)
        if c.pk != category.pk:
            data[f"form-{i}-active"] = "on"

    response = admin_client.post(reverse("admin:catalog_category_changelist"), data)

    assert response.status_code == HTTPStatus.FOUND
    category.refresh_from_db()
    assert category.active is False
    assert Category.objects.filter(active=True).count() == len(categories) - 1


# --- Sync runs ----------------------------------------------------------------------------------


def test_sync_runs_are_listed_with_a_coloured_status(admin_client):
    started = timezone.now() - timedelta(seconds=90)
    SyncRunFactory(
        status=SyncStatus.SUCCEEDED, started_at=started, finished_at=started + timedelta(seconds=4), seen=300
    )
    SyncRunFactory(status=SyncStatus.FAILED, error="OpenRouter answered 503 " + "x" * 200)

    content = admin_client.get(reverse("admin:catalog_syncrun_changelist")).content.decode()

    assert '<strong style="color: #2e7d32">Succeeded</strong>' in content
    assert '<strong style="color: #c62828">Failed</strong>' in content
    assert "4.0 s" in content
    assert "OpenRouter answered 503 xxx" in content


@pytest.mark.parametrize(
    "params, expected", [({"status__exact": "failed"}, "failed"), ({"kind__exact": "research"}, "research")]
)
def test_sync_runs_can_be_filtered(admin_client, params, expected):
    failed = SyncRunFactory(status=SyncStatus.FAILED)
    research = SyncRunFactory(kind=SyncKind.RESEARCH, status=SyncStatus.SUCCEEDED, trigger="admin")

    assert listed(admin_client, "admin:catalog_syncrun_changelist", **params) == [
        failed.pk if expected == "failed" else research.pk
    ]
    assert listed(admin_client, "admin:catalog_syncrun_changelist", trigger__exact="admin") == [research.pk]


def test_sync_runs_are_read_only(admin_client):
    run = SyncRunFactory(status=SyncStatus.SUCCEEDED, details={"added_ids": ["acme/new"]})
    change_url = reverse("admin:catalog_syncrun_change", args=[run.pk])

    response = admin_client.get(change_url)
    assert response.status_code == HTTPStatus.OK
    assert "&quot;added_ids&quot;: [\n    &quot;acme/new&quot;\n  ]" in response.content.decode()
    assert 'name="status"' not in response.content.decode()

    assert admin_client.post(change_url, {"status": "failed"}).status_code == HTTPStatus.FORBIDDEN
    assert admin_client.get(reverse("admin:catalog_syncrun_add")).status_code == HTTPStatus.FORBIDDEN
    delete_url = reverse("admin:catalog_syncrun_delete", args=[run.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    run.refresh_from_db()
    assert run.status == SyncStatus.SUCCEEDED


# --- Rankings -----------------------------------------------------------------------------------


def test_rankings_are_a_read_only_list_filtered_by_category(admin_client, django_assert_max_num_queries):
    run = SyncRunFactory(kind=SyncKind.RESEARCH, status=SyncStatus.SUCCEEDED)
    programming, legal = CategoryFactory(slug="zz-programming"), CategoryFactory(slug="zz-legal")
    for rank in range(1, 21):
        model = CatalogModelFactory()
        CategoryRanking.objects.create(category=programming, model=model, rank=rank, run=run)
    legal_row = CategoryRanking.objects.create(category=legal, model=CatalogModelFactory(), rank=1, run=run)
    url_name = "admin:catalog_categoryranking_changelist"

    with django_assert_max_num_queries(10):
        assert len(listed(admin_client, url_name)) == 21
    assert listed(admin_client, url_name, category__id__exact=legal.pk) == [legal_row.pk]
    assert admin_client.get(reverse("admin:catalog_categoryranking_add")).status_code == HTTPStatus.FORBIDDEN
    change_url = reverse("admin:catalog_categoryranking_change", args=[legal_row.pk])
    assert admin_client.post(change_url, {"rank": "5"}).status_code == HTTPStatus.FORBIDDEN
