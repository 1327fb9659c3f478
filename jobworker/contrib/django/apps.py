"""The Django app: the admin's view of jobs, migrations, ``runworker``, and in-process workers."""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.signals import request_started, setting_changed
from django.db.backends.base.creation import BaseDatabaseCreation
from django.db.models.signals import post_migrate
from django.utils.module_loading import module_has_submodule

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


_BACKEND = "jobworker.contrib.django.tasks.JobworkerBackend"


def _discover_tasks(own: str) -> None:
    """Import the ``tasks`` module of every installed app, if a jobworker Tasks backend is set.

    Their ``@task`` functions register themselves with the backend, so jobs
    can name them; nothing else is ever imported to run a job.
    """
    backends = getattr(settings, "TASKS", None) or {}
    if not any(conf.get("BACKEND") == _BACKEND for conf in backends.values()):
        return
    for app in apps.get_app_configs():
        if app.name != own and module_has_submodule(app.module, "tasks"):
            import_module(f"{app.name}.tasks")


def _close_before_destroy(destroy: Any) -> Any:
    """Wrap ``destroy_test_db``: close the test database's queues before it is dropped.

    The queue's pool and its LISTEN connection would otherwise keep
    PostgreSQL from dropping the test database ("being accessed by other
    users") at the end of ``manage.py test``.
    """

    @functools.wraps(destroy)
    def destroy_test_db(self: BaseDatabaseCreation, *args: Any, **kwargs: Any) -> Any:
        from .queues import close_queues  # noqa: PLC0415
        from .workers import stop_workers  # noqa: PLC0415

        stop_workers()
        close_queues(using=self.connection.alias)
        return destroy(self, *args, **kwargs)

    destroy_test_db.jobworker_wrapped = True  # type: ignore[attr-defined]
    return destroy_test_db


class JobworkerConfig(AppConfig):
    """``jobworker.contrib.django``, with the app label ``jobworker``.

    With ``JOBWORKER["START_WORKERS"]``, the workers start with the first
    request this process serves: never in a management command (``migrate``,
    ``shell``, ``runworker``), never in runserver's reloading parent process,
    and, under a pre-forking server (gunicorn, uWSGI), in each forked
    process rather than in the master before the fork.

    At startup, with a jobworker Tasks backend in ``TASKS``, the ``tasks``
    module of each installed app is imported, so that its ``@task``
    functions are known. When Django's test runner destroys a test
    database, the workers started in this process are stopped and the
    queues on that database closed first.
    """

    name = "jobworker.contrib.django"
    label = "jobworker"
    verbose_name = "jobworker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        request_started.connect(_start_on_first_request, dispatch_uid="jobworker-start")
        setting_changed.connect(_settings_changed, dispatch_uid="jobworker-settings")
        post_migrate.connect(_use_wal, sender=self, dispatch_uid="jobworker-wal")
        destroy = BaseDatabaseCreation.destroy_test_db
        if not getattr(destroy, "jobworker_wrapped", False):
            # Django sends no signal when it drops a test database.
            BaseDatabaseCreation.destroy_test_db = _close_before_destroy(destroy)  # type: ignore[method-assign]
        _discover_tasks(self.name)
