"""The alert table is about to move to `core` (core's 0001), which sits below the catalog and so
names a model by its id rather than by a foreign key: drop the constraint, keep the column and
every row."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_seed_families_and_categories"),
    ]

    operations = [
        migrations.AlterField(
            model_name="catalogalert",
            name="model",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="alerts",
                to="catalog.catalogmodel",
            ),
        ),
    ]
