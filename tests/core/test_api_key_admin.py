"""API keys in the admin: the secret is shown once and never stored; keys are revoked, not deleted."""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from core.auth import key_cache
from core.models import ApiKey, Scope
from tests.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db

RAW_KEY = re.compile(r"lh_[0-9a-f]{8}_[A-Za-z0-9_\-]+")


def secrets_in(text: str) -> list[str]:
    return RAW_KEY.findall(text)


def test_adding_a_key_shows_its_secret_once_and_stores_only_a_hash(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:core_apikey_add"),
        {"name": "orchestrator", "scopes": [Scope.ROUTE, Scope.USAGE_WRITE]},
        follow=True,
    )

    assert response.status_code == HTTPStatus.OK
    [shown] = secrets_in(response.content.decode())
    [message] = [m for m in response.context["messages"] if m.level_tag == "warning"]
    assert shown in str(message)
    assert "will not be shown again" in str(message)

    key = ApiKey.objects.get()
    assert key_cache.lookup(shown).pk == key.pk
    assert (key.name, key.scopes, key.created_by) == ("orchestrator", ["route", "usage:write"], admin_user)
    assert key.secret_hash != shown
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert not any(shown in str(value) for value in row.values())
    assert shown.startswith(f"lh_{key.prefix}_")

    for url in (reverse("admin:core_apikey_changelist"), reverse("admin:core_apikey_change", args=[key.pk])):
        assert secrets_in(admin_client.get(url).content.decode()) == []


def test_the_add_form_asks_for_a_name_and_scopes_with_checkboxes(admin_client):
    response = admin_client.get(reverse("admin:core_apikey_add"))

    form = response.context["adminform"].form
    assert list(form.fields) == ["name", "scopes"]
    content = response.content.decode()
    for scope in Scope.values:
        assert f'type="checkbox" name="scopes" value="{scope}"' in content


def test_a_key_needs_at_least_one_scope(admin_client):
    response = admin_client.post(reverse("admin:core_apikey_add"), {"name": "no scopes"})

    assert response.status_code == HTTPStatus.OK
    assert "scopes" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_the_change_form_edits_name_and_scopes_only(admin_client):
    key = ApiKeyFactory(name="old name", scopes=[Scope.ROUTE])
    url = reverse("admin:core_apikey_change", args=[key.pk])

    response = admin_client.get(url)
    assert list(response.context["adminform"].form.fields) == ["name", "scopes"]
    assert key.prefix in response.content.decode()

    response = admin_client.post(
        url, {"name": "new name", "scopes": [Scope.COSTS_READ, Scope.ROUTE], "prefix": "hijacked", "secret_hash": "x"}
    )

    assert response.status_code == HTTPStatus.FOUND
    key.refresh_from_db()
    assert (key.name, key.scopes) == ("new name", ["costs:read", "route"])
    assert key_cache.lookup(key.raw_key).pk == key.pk  # prefix and hash untouched


def test_it_revokes_selected_keys(admin_client):
    first, second, kept = (ApiKeyFactory(name=name, scopes=[Scope.ROUTE]) for name in ("first", "second", "kept"))

    response = admin_client.post(
        reverse("admin:core_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )

    assert "Revoked 2 API keys." in [str(m) for m in get_messages(response.wsgi_request)]
    assert ApiKey.objects.count() == 3
    assert set(ApiKey.objects.filter(revoked_at__isnull=False).values_list("name", flat=True)) == {"first", "second"}
    assert key_cache.lookup(first.raw_key) is None
    assert key_cache.lookup(kept.raw_key).pk == kept.pk


def test_keys_cannot_be_deleted(admin_client):
    key = ApiKeyFactory(scopes=[Scope.ROUTE])

    response = admin_client.post(reverse("admin:core_apikey_delete", args=[key.pk]), {"post": "yes"})

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert ApiKey.objects.filter(pk=key.pk).exists()
    assert "delete_selected" not in admin_client.get(reverse("admin:core_apikey_changelist")).content.decode()


def test_a_revoked_key_is_read_only(admin_client):
    key = ApiKeyFactory(scopes=[Scope.ROUTE], revoked=True)
    url = reverse("admin:core_apikey_change", args=[key.pk])

    response = admin_client.get(url)
    assert response.status_code == HTTPStatus.OK
    assert 'name="name"' not in response.content.decode()
    assert admin_client.post(url, {"name": "renamed", "scopes": [Scope.ROUTE]}).status_code == HTTPStatus.FORBIDDEN


def test_the_key_list_shows_scopes_and_whether_revoked(admin_client):
    live = ApiKeyFactory(name="live", scopes=[Scope.ROUTE, Scope.CATALOG_SYNC])
    gone = ApiKeyFactory(name="gone", scopes=[Scope.ROUTE], revoked=True)

    response = admin_client.get(reverse("admin:core_apikey_changelist"))

    content = response.content.decode()
    assert "catalog:sync, route" in content
    assert live.prefix in content and gone.prefix in content
    response = admin_client.get(reverse("admin:core_apikey_changelist"), {"state": "revoked"})
    assert [k.pk for k in response.context["cl"].result_list] == [gone.pk]


def test_the_new_secret_never_travels_in_a_cookie_and_leaves_the_session_once_shown(admin_client):
    created = admin_client.post(reverse("admin:core_apikey_add"), {"name": "orchestrator", "scopes": [Scope.ROUTE]})
    assert created.status_code == HTTPStatus.FOUND
    # Messages are kept in the session (server side): no messages cookie, nothing secret set.
    assert "messages" not in created.cookies
    cookies = "; ".join(f"{name}={morsel.value}" for name, morsel in created.cookies.items())
    assert secrets_in(cookies) == []

    shown = admin_client.get(created["Location"])
    [secret] = secrets_in(shown.content.decode())
    assert secret not in "; ".join(f"{name}={morsel.value}" for name, morsel in shown.cookies.items())
    # Displayed once, then gone from the session too.
    assert secret not in str(dict(admin_client.session))
    assert secrets_in(admin_client.get(created["Location"]).content.decode()) == []
