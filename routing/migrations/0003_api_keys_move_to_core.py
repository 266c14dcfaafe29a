"""ApiKey is core's now (core's 0001): the state only, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0002_roles_preferences_overrides_strategies"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="ApiKey")], database_operations=[]),
    ]
