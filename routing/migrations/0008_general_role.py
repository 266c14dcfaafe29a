"""A fresh install has a `general` role, so that POST /route answers at once (from the bootstrap
models while the catalog has not synced) instead of 404 "unknown role". An existing `general`
role, edited or deactivated, is left as it is."""

from django.db import migrations

GENERAL = {
    "name": "General",
    "description": (
        "Any task, no special needs: the balanced choice among the routable models. "
        "Created by the installation so that /route answers at once; edit it or add roles of your own."
    ),
    "required_capabilities": [],
    "default_accuracy": "balanced",
    "active": True,
}


def create_general_role(apps, schema_editor):
    Role = apps.get_model("routing", "Role")
    Role.objects.using(schema_editor.connection.alias).get_or_create(slug="general", defaults=GENERAL)


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0007_cooldowns_and_error_counts"),
    ]

    # Going back leaves the role: by then it may be the one every client names.
    operations = [migrations.RunPython(create_general_role, migrations.RunPython.noop)]
