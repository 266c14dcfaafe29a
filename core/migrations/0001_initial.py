"""Core takes over four models from the apps that held them before it existed: DataVersion (from
llmhive_site), ApiKey (from routing), and SyncLock and CatalogAlert (from catalog, as Lock and
Alert). Their tables stay where they are (`db_table`), so this changes the migration state only;
catalog's 0003 dropped the alert's foreign key constraint to the catalog first, since core sits
below the catalog. The content types are renamed rather than recreated, so the permissions that
users and groups hold, and the admin's log, carry over.
"""

import core.kinds
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


# (old app label, old model name) -> new model name in core
MOVED = {
    ("llmhive_site", "dataversion"): "dataversion",
    ("routing", "apikey"): "apikey",
    ("catalog", "synclock"): "lock",
    ("catalog", "catalogalert"): "alert",
}
# The permission names Django made from the old verbose names ("Can view catalog alert").
VERBOSE = {"synclock": ("sync lock", "lock"), "catalogalert": ("catalog alert", "alert")}


def rename_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for (app_label, old), new in MOVED.items():
        moved = ContentType.objects.filter(app_label=app_label, model=old).first()
        if moved is None:
            continue  # a database that never had it (its permissions come from post_migrate)
        stale = ContentType.objects.filter(app_label="core", model=new).first()
        if stale is not None:  # made by a post_migrate that ran before this migration
            Permission.objects.filter(content_type=stale).delete()
            stale.delete()
        moved.app_label, moved.model = "core", new
        moved.save(update_fields=["app_label", "model"])
        for permission in Permission.objects.filter(content_type=moved):
            action, _, _ = permission.codename.partition("_")
            permission.codename = f"{action}_{new}"
            old_name, new_name = VERBOSE.get(old, (None, None))
            if old_name:
                permission.name = permission.name.replace(old_name, new_name)
            permission.save(update_fields=["codename", "name"])


def restore_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for (app_label, old), new in MOVED.items():
        moved = ContentType.objects.filter(app_label="core", model=new).first()
        if moved is None:
            continue
        moved.app_label, moved.model = app_label, old
        moved.save(update_fields=["app_label", "model"])
        for permission in Permission.objects.filter(content_type=moved):
            action, _, _ = permission.codename.partition("_")
            permission.codename = f"{action}_{old}"
            old_name, new_name = VERBOSE.get(old, (None, None))
            if old_name:
                permission.name = permission.name.replace(new_name, old_name)
            permission.save(update_fields=["codename", "name"])


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("catalog", "0003_alert_model_without_constraint"),
        ("routing", "0002_roles_preferences_overrides_strategies"),
        ("llmhive_site", "0002_admin_groups"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                name='DataVersion',
                fields=[
                    ('name', models.CharField(max_length=32, primary_key=True, serialize=False)),
                    ('version', models.BigIntegerField(default=0)),
                    ('changed_at', models.DateTimeField(default=django.utils.timezone.now)),
                ],
                options={
                    'verbose_name': 'data version',
                    'db_table': 'llmhive_site_dataversion',
                },
            ),
                migrations.CreateModel(
                name='Lock',
                fields=[
                    ('name', models.CharField(max_length=32, primary_key=True, serialize=False)),
                    ('locked_until', models.DateTimeField()),
                    ('holder', models.CharField(blank=True, max_length=64)),
                ],
                options={
                    'db_table': 'catalog_synclock',
                },
            ),
                migrations.CreateModel(
                name='ApiKey',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=100)),
                    ('prefix', models.CharField(help_text='Shown in clear to tell keys apart.', max_length=16, unique=True)),
                    ('secret_hash', models.CharField(editable=False, max_length=64)),
                    ('scopes', models.JSONField(default=list)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('last_used_at', models.DateTimeField(blank=True, null=True)),
                    ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'verbose_name': 'API key',
                    'db_table': 'routing_apikey',
                    'ordering': ['-created_at'],
                },
            ),
                migrations.CreateModel(
                name='Alert',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=core.kinds.alert_kinds, max_length=32)),
                    ('model_id', models.CharField(blank=True, db_index=True, max_length=200, null=True, verbose_name='model')),
                    ('key', models.CharField(max_length=300)),
                    ('message', models.TextField()),
                    ('details', models.JSONField(blank=True, default=dict)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('last_raised_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('times', models.PositiveIntegerField(default=1)),
                    ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                    ('acknowledged_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'catalog_catalogalert',
                    'ordering': ['-created_at', '-id'],
                    'indexes': [models.Index(fields=['kind', '-created_at'], name='alert_kind_idx')],
                    'constraints': [models.UniqueConstraint(condition=models.Q(('acknowledged_at__isnull', True)), fields=('key',), name='alert_open_once')],
                },
            ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_content_types, restore_content_types),
    ]
