"""The Django app: the admin's view of jobs, migrations, ``runworker``, and in-process workers."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started, setting_changed
from django.db.models.signals import post_migrate

__all__ = ["JobworkerConfig"]


def _start_on_first_request(**kwargs: Any) -> None:
    # Imported here: workers imports the ORM helpers, which must wait for the registry.
    from .conf import get_settings  # noqa: PLC0415
    from .workers import is_running, start_workers  # noqa: PLC0415

    if not is_running() and get_settings().start_workers:
        start_workers()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DATABASES", "JOBWORKER"):
        from .queues import close_queues  # noqa: PLC0415

        close_queues()


def _use_wal(*, using: str, **kwargs: Any) -> None:
    """Leave an SQLite database that ``migrate`` just ran on in WAL mode, as the queue uses it.

    The queue switches it itself when it opens, unless another connection
    holds a transaction then (a ``transaction.atomic()`` block); switching
    here, outside any transaction, means a deployment's first request never
    runs in the slower rollback journal mode.
    """
    from django.db import DatabaseError, connections  # noqa: PLC0415

    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return
    try:
        # An in-memory database answers "memory" and stays as it is.
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode = WAL")
    except DatabaseError:
        pass  # busy: the queue switches when it can, and works meanwhile


class JobworkerConfig(AppConfig):
    """``jobworker.contrib.django``, with the app label ``jobworker``.

    With ``JOBWORKER["START_WORKERS"]``, the workers start with the first
    request this process serves: never in a management command (``migrate``,
    ``shell``, ``runworker``), never in runserver's reloading parent process,
    and, under a pre-forking server (gunicorn, uWSGI), in each forked
    process rather than in the master before the fork.
    """

    name = "jobworker.contrib.django"
    label = "jobworker"
    verbose_name = "jobworker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        request_started.connect(_start_on_first_request, dispatch_uid="jobworker-start")
        setting_changed.connect(_settings_changed, dispatch_uid="jobworker-settings")
        post_migrate.connect(_use_wal, sender=self, dispatch_uid="jobworker-wal")
