"""The "Finance" and "Catalog curators" groups (llmhive_site/groups.py)."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_groups(apps, schema_editor):
    from llmhive_site.groups import sync_groups

    # Permissions are normally made after migrate (post_migrate); make them now so the groups
    # can hold them on a fresh database.
    for config in global_apps.get_app_configs():
        create_permissions(config, apps=apps, verbosity=0)
    sync_groups(apps)


def remove_groups(apps, schema_editor):
    from llmhive_site.groups import GROUPS

    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("llmhive_site", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("catalog", "0002_seed_families_and_categories"),
        ("routing", "0002_roles_preferences_overrides_strategies"),
        ("costs", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
