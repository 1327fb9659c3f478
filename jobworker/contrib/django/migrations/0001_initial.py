"""Create the queue's tables (jobworker's own schema) and the admin's unmanaged model."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from jobworker.contrib.django.queues import create_tables, drop_tables


def _create(apps: Any, schema_editor: Any) -> None:
    create_tables(schema_editor.connection)


def _drop(apps: Any, schema_editor: Any) -> None:
    drop_tables(schema_editor.connection)


class Migration(migrations.Migration):
    initial = True

    dependencies = ()

    operations = (
        migrations.RunPython(_create, _drop),
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.TextField(primary_key=True, serialize=False)),
                ("type", models.TextField()),
                ("user_id", models.TextField(blank=True)),
                (
                    "status",
                    models.TextField(
                        choices=[
                            ("pending", "pending"),
                            ("running", "running"),
                            ("complete", "complete"),
                            ("failed", "failed"),
                            ("cancelled", "cancelled"),
                        ]
                    ),
                ),
                ("priority", models.IntegerField()),
                ("created_us", models.BigIntegerField()),
                ("retry_count", models.IntegerField()),
                ("max_retries", models.IntegerField()),
                ("run_after_us", models.BigIntegerField(null=True)),
                ("params", models.TextField()),
                ("progress", models.TextField(null=True)),
                ("result", models.TextField(null=True)),
                ("error", models.TextField(null=True)),
                ("started_us", models.BigIntegerField(null=True)),
                ("completed_us", models.BigIntegerField(null=True)),
                ("claim_worker", models.TextField(null=True)),
                ("lease_until_us", models.BigIntegerField(null=True)),
            ],
            options={
                "verbose_name": "job",
                "db_table": "jobworker_jobs",
                "ordering": ("-created_us",),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
    )
