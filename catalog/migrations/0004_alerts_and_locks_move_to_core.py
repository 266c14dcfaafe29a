"""CatalogAlert and SyncLock are core's Alert and Lock now (core's 0001): the state only, the
tables stay."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_alert_model_without_constraint"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="CatalogAlert"), migrations.DeleteModel(name="SyncLock")],
            database_operations=[],
        ),
    ]
