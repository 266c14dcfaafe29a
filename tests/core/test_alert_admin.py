"""Alerts in the admin (core's Alert, raised by every app): open ones first, filtered by state and
kind, acknowledged in one update, otherwise read-only; and the admin site itself."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalog.models import AlertKind
from core.models import Alert
from tests.catalog.test_admin import listed, message_texts, run_action, update_statements
from tests.factories import AlertFactory, CatalogModelFactory

pytestmark = pytest.mark.django_db


def alert(key: str, *, age_hours: int = 0, acknowledged: bool = False, **kwargs) -> Alert:
    created = timezone.now() - timedelta(hours=age_hours)
    return AlertFactory(
        key=key, message=f"alert {key}", created_at=created, acknowledged_at=created if acknowledged else None, **kwargs
    )


def test_open_alerts_are_listed_first_then_the_latest_acknowledged(admin_client):
    acked_new = alert("acked-new", age_hours=1, acknowledged=True)
    open_old = alert("open-old", age_hours=48)
    acked_old = alert("acked-old", age_hours=72, acknowledged=True)
    open_new = alert("open-new", age_hours=2)

    assert listed(admin_client, "admin:core_alert_changelist") == [
        open_new.pk,
        open_old.pk,
        acked_new.pk,
        acked_old.pk,
    ]


def test_alerts_can_be_filtered_by_state_and_kind(admin_client):
    open_alert = alert("open", kind=AlertKind.SYNC_FAILED)
    acked = alert("acked", acknowledged=True)
    url_name = "admin:core_alert_changelist"

    assert listed(admin_client, url_name, state="open") == [open_alert.pk]
    assert listed(admin_client, url_name, state="acknowledged") == [acked.pk]
    assert listed(admin_client, url_name, kind__exact="sync_failed") == [open_alert.pk]


def test_it_acknowledges_selected_alerts(admin_client, admin_user, django_user_model):
    model = CatalogModelFactory()
    first = alert("first", model_id=model.id)
    second = alert("second")
    someone = django_user_model.objects.create_user(username="someone")
    earlier = alert("earlier", acknowledged=True, acknowledged_by=someone)

    with CaptureQueriesContext(connection) as captured:
        response = run_action(
            admin_client, "admin:core_alert_changelist", "acknowledge", [first.pk, second.pk, earlier.pk]
        )

    assert len(update_statements(captured, "catalog_catalogalert")) == 1
    for a in (first, second):
        a.refresh_from_db()
        assert a.acknowledged_by == admin_user
        assert a.acknowledged_at is not None
    earlier.refresh_from_db()
    assert earlier.acknowledged_by == someone
    assert "Acknowledged 2 alerts." in message_texts(response)


def test_alerts_are_read_only_apart_from_acknowledging(admin_client):
    a = alert("one", details={"changes": [{"field": "prompt"}]})
    change_url = reverse("admin:core_alert_change", args=[a.pk])

    response = admin_client.get(change_url)
    assert response.status_code == HTTPStatus.OK
    assert 'name="message"' not in response.content.decode()
    assert "&quot;changes&quot;" in response.content.decode()
    assert admin_client.post(change_url, {"message": "edited"}).status_code == HTTPStatus.FORBIDDEN
    assert admin_client.get(reverse("admin:core_alert_add")).status_code == HTTPStatus.FORBIDDEN


# --- The site -----------------------------------------------------------------------------------


def test_the_admin_is_titled_llmhive_and_its_index_is_the_dashboard(admin_client):
    # The catalog admin used to overwrite the site's titles at import ("Control plane").
    response = admin_client.get(reverse("admin:index"))

    page = response.content.decode()
    assert "<title>Dashboard | LLMHive admin</title>" in page
    assert "Control plane" not in page
