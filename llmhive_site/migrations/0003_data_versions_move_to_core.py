"""DataVersion is core's now (core's 0001): the state only, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("llmhive_site", "0002_admin_groups"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="DataVersion")], database_operations=[]),
    ]
