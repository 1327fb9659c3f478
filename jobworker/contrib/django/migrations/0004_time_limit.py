"""A job's own time limit: jobworker's schema version 4 (the ``time_limit`` column)."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from jobworker.contrib.django.queues import create_tables


def _upgrade(apps: Any, schema_editor: Any) -> None:
    # Brings jobworker's own schema up to date, as the queue would.
    create_tables(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = (("jobworker", "0003_status_index"),)

    operations = (
        migrations.RunPython(_upgrade, migrations.RunPython.noop),
        migrations.AddField(
            model_name="job",
            name="time_limit",
            field=models.FloatField(null=True),
        ),
    )
