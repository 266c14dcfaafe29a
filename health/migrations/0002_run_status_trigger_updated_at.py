import django.utils.timezone
from django.db import migrations, models


def rename_failures(apps, schema_editor):
    """Runs recorded before `degraded` and `failed` existed said `failures`."""
    HealthCheckRun = apps.get_model("health", "HealthCheckRun")
    HealthCheckRun.objects.filter(status="failures").exclude(models_failed=models.F("models_checked")).update(status="degraded")
    HealthCheckRun.objects.filter(status="failures").update(status="failed")


class Migration(migrations.Migration):

    dependencies = [
        ("health", "0001_health_checks"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="healthcheckrun",
            options={
                "get_latest_by": "started_at",
                "ordering": ["-started_at"],
                "permissions": [("run_healthcheckrun", "Can run health checks")],
            },
        ),
        migrations.AlterField(
            model_name="healthcheckrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "running"),
                    ("ok", "ok: every checked model healthy"),
                    ("degraded", "degraded: some checked models failed"),
                    ("failed", "failed: every checked model failed"),
                    ("error", "error: could not check (OpenRouter unreachable)"),
                ],
                default="running",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="healthcheckrun",
            name="trigger",
            field=models.CharField(
                choices=[("command", "command"), ("schedule", "schedule"), ("admin", "admin"), ("api", "API")],
                default="command",
                max_length=16,
            ),
        ),
        migrations.RunPython(rename_failures, migrations.RunPython.noop),
        migrations.AddField(
            model_name="modelreliability",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.AddConstraint(
            model_name="modelreliability",
            constraint=models.CheckConstraint(
                condition=models.Q(("reliability__gte", 0), ("reliability__lte", 1)), name="health_reliability_0_1"
            ),
        ),
    ]
