"""Unique keys: jobworker's schema version 5 (``unique_key``, ``unique_states``, their index)."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from jobworker.contrib.django.queues import create_tables


def _upgrade(apps: Any, schema_editor: Any) -> None:
    # Brings jobworker's own schema up to date, as the queue would.
    create_tables(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = (("jobworker", "0004_time_limit"),)

    operations = (
        migrations.RunPython(_upgrade, migrations.RunPython.noop),
        migrations.AddField(
            model_name="job",
            name="unique_key",
            field=models.TextField(null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="unique_states",
            field=models.TextField(null=True),
        ),
    )
