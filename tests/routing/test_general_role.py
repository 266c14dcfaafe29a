"""A fresh install routes at once: the `general` role comes with the migrations, and with an
empty catalog (no sync yet, or OpenRouter unreachable) /route answers from the bootstrap models."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection

from routing.models import Role

pytestmark = pytest.mark.django_db

general_role_migration = importlib.import_module("routing.migrations.0008_general_role")


def test_a_fresh_database_routes_the_general_role_to_the_bootstrap_models(api_client, settings):
    settings.BOOTSTRAP_FALLBACK_MODELS = ["boot/a", "boot/b"]

    response = api_client.post("/api/v1/route", {"role": "general"}, content_type="application/json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["source"] == "bootstrap" and body["model"] == "boot/a" and body["fallbacks"] == ["boot/b"]
    role = Role.objects.get(slug="general")
    assert role.active and role.required_capabilities == [] and role.default_accuracy == "balanced"


class Editor:
    """What the data migration reads of its schema editor: the connection. (A real one cannot be
    opened inside the test's transaction on SQLite.)"""

    connection = connection


def test_the_migration_creates_general_when_absent_and_leaves_an_edited_one_alone():
    Role.objects.filter(slug="general").delete()
    general_role_migration.create_general_role(django_apps, Editor())
    assert Role.objects.get(slug="general").name == "General"

    Role.objects.filter(slug="general").update(name="Ours", active=False, required_capabilities=["supports_tools"])
    general_role_migration.create_general_role(django_apps, Editor())
    kept = Role.objects.get(slug="general")
    assert (kept.name, kept.active, kept.required_capabilities) == ("Ours", False, ["supports_tools"])
    assert Role.objects.filter(slug="general").count() == 1
