"""Pause job types and limit them: jobworker's schema version 6 (the controls table)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from jobworker.contrib.django.queues import create_tables


def _upgrade(apps: Any, schema_editor: Any) -> None:
    # Brings jobworker's own schema up to date, as the queue would.
    create_tables(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = (("jobworker", "0005_unique_keys"),)

    operations = (migrations.RunPython(_upgrade, migrations.RunPython.noop),)
