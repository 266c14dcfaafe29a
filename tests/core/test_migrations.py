"""A database laid out before `core` existed, holding data, migrates to the new layout with
nothing lost: the moved models keep their tables and rows, and the permissions people held on
them (and the admin's log) follow the renamed content types."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from core.auth import key_cache
from core.models import Alert, DataVersion, Lock, hash_secret

pytestmark = pytest.mark.django_db(transaction=True)

# Every app as the last commit before `core` left it.
BEFORE_CORE = [
    ("catalog", "0002_seed_families_and_categories"),
    ("routing", "0002_roles_preferences_overrides_strategies"),
    ("llmhive_site", "0002_admin_groups"),
    ("costs", "0001_initial"),
    ("health", "0002_run_status_trigger_updated_at"),
]


def migrate_to(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    graph = executor.loader.graph
    named = {app for app, _ in targets}
    others = [leaf for leaf in graph.leaf_nodes() if leaf[0] not in named]  # auth, admin… as they are
    return executor.loader.project_state([t for t in targets if t[1] is not None] + others).apps


@pytest.fixture
def old_layout():
    apps = migrate_to([("core", None), *BEFORE_CORE])
    try:
        yield apps
    finally:
        call_command("migrate", verbosity=0)  # whatever happened, leave the database at the latest


def test_a_database_from_before_core_migrates_with_nothing_lost(old_layout):
    apps = old_layout
    now = timezone.now()
    User = apps.get_model("auth", "User")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    LogEntry = apps.get_model("admin", "LogEntry")
    CatalogModel = apps.get_model("catalog", "CatalogModel")

    # What main held: a model, an alert about it, a lock, data versions, an API key, and a
    # person allowed to see alerts and keys, with an admin log entry about a key.
    CatalogModel.objects.create(id="acme/one", name="One", canonical_slug="acme/one", author="acme")
    alert = apps.get_model("catalog", "CatalogAlert").objects.create(
        kind="new_model",
        model_id="acme/one",
        key="new_model:acme/one",
        message="New model acme/one.",
        details={"n": 1},
        created_at=now,
        last_raised_at=now,
        times=3,
    )
    apps.get_model("catalog", "SyncLock").objects.create(
        name="catalog sync", locked_until=now + timedelta(minutes=5), holder="run #7"
    )
    apps.get_model("llmhive_site", "DataVersion").objects.create(name="catalog", version=123456789)
    raw_key = "lh_abcd1234_secret-of-the-orchestrator"
    key = apps.get_model("routing", "ApiKey").objects.create(
        name="orchestrator", prefix="abcd1234", secret_hash=hash_secret(raw_key), scopes=["route"], created_at=now
    )
    person = User.objects.create(username="curator", is_staff=True)
    alert_type = ContentType.objects.get(app_label="catalog", model="catalogalert")
    key_type = ContentType.objects.get(app_label="routing", model="apikey")
    person.user_permissions.add(
        Permission.objects.get(content_type=alert_type, codename="change_catalogalert"),
        Permission.objects.get(content_type=key_type, codename="view_apikey"),
    )
    team = Group.objects.create(name="alert readers")
    team.permissions.add(Permission.objects.get(content_type=alert_type, codename="view_catalogalert"))
    person.groups.add(team)
    LogEntry.objects.create(
        user=person,
        content_type=key_type,
        object_id=str(key.pk),
        object_repr="orchestrator",
        action_flag=1,
        action_time=now,
    )

    call_command("migrate", verbosity=0)

    moved = Alert.objects.get(pk=alert.pk)
    assert (moved.kind, moved.model_id, moved.key, moved.details, moved.times) == (
        "new_model",
        "acme/one",
        "new_model:acme/one",
        {"n": 1},
        3,
    )
    assert moved.kind_label == "New model"
    assert Lock.objects.get(name="catalog sync").holder == "run #7"
    assert DataVersion.objects.get(name="catalog").version == 123456789
    key_cache.clear()
    assert key_cache.lookup(raw_key).pk == key.pk

    from django.contrib.admin.models import LogEntry as LiveLogEntry
    from django.contrib.auth.models import User as LiveUser

    person = LiveUser.objects.get(username="curator")
    assert (
        person.has_perm("core.change_alert")
        and person.has_perm("core.view_alert")
        and person.has_perm("core.view_apikey")
    )
    assert not person.has_perm("catalog.change_catalogalert")
    assert LiveLogEntry.objects.get(object_id=str(key.pk)).get_edited_object().name == "orchestrator"
    # Alerts keep their models after the foreign key became an id: a model is never deleted.
    assert Alert.objects.filter(model_id="acme/one").count() == 1


def test_the_move_to_core_can_be_undone_back_to_the_old_layout(old_layout):
    call_command("migrate", verbosity=0)
    apps = migrate_to([("core", None), *BEFORE_CORE])

    ContentType = apps.get_model("contenttypes", "ContentType")
    assert ContentType.objects.filter(app_label="catalog", model="catalogalert").exists()
    assert not ContentType.objects.filter(app_label="core").exists()
    assert apps.get_model("auth", "Permission").objects.filter(codename="view_catalogalert").exists()


def test_the_models_and_the_migrations_agree():
    # Moving models between apps is where a state-only migration drifts from the models.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
