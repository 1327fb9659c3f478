"""The queue in the project's own database, and enqueueing inside its transactions.

Threads: ``_lock`` guards ``_queues``. A queue is opened (which may connect to
PostgreSQL) with the lock held, so two threads never open the same queue twice.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Final

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction

from ...errors import BackendError
from ...model import AnyJob, P, PendingJob, new_job
from ...queues._sqlite_schema import migrate as migrate_sqlite
from ...queues.base import JobQueue
from ...queues.sqlite import SQLiteQueue
from .conf import get_settings

if TYPE_CHECKING:
    from ...queues.postgres import PostgresQueue

__all__ = [
    "close_queues",
    "create_tables",
    "drop_tables",
    "enqueue",
    "enqueue_job",
    "get_queue",
    "read_job",
]

log = logging.getLogger("jobworker.contrib.django")

_lock = threading.Lock()
# (alias, where the database is) -> the open queue; guarded by _lock.
_queues: dict[tuple[str, str], JobQueue] = {}
# alias -> (its settings dict, their repr, _location's answer). Not locked:
# two threads may both compute an entry, and either answer is right.
_locations: dict[str, tuple[Any, str, tuple[str, str]]] = {}

_SQLITE: Final = "sqlite"
_POSTGRES: Final = "postgresql"


def _location(alias: str) -> tuple[str, str]:
    """Return the backend and the place of database *alias*, as configured now.

    Worked out again only when the alias's settings change (a test database
    renames it in place; ``override_settings`` replaces it), not at every
    enqueue: libpq's parameters take far longer to build than to compare.
    """
    connection: Any = connections[alias]
    settings_dict = connection.settings_dict
    seen = _locations.get(alias)
    # repr() covers nested OPTIONS and TEST; the identity, a replaced dict.
    if seen is not None and seen[0] is settings_dict and seen[1] == repr(settings_dict):
        return seen[2]
    found = _find_location(alias, connection)
    _locations[alias] = (settings_dict, repr(settings_dict), found)
    return found


def _find_location(alias: str, connection: Any) -> tuple[str, str]:
    # Typed loosely: the methods used below belong to one backend each.
    vendor = connection.vendor
    if vendor == _SQLITE:
        if connection.is_in_memory_db():
            raise ImproperlyConfigured(
                f"jobworker cannot use the in-memory SQLite database {alias!r}: worker "
                f"threads and processes need a file. Give DATABASES[{alias!r}] a file NAME "
                f"(and, for tests, TEST = {{'NAME': 'a-file.sqlite3'}})."
            )
        return vendor, os.path.abspath(connection.settings_dict["NAME"])
    if vendor == _POSTGRES:
        from . import _postgres  # noqa: PLC0415 (psycopg is needed on PostgreSQL only)

        return vendor, _postgres.conninfo(connection)
    raise ImproperlyConfigured(
        f"jobworker keeps jobs in SQLite or PostgreSQL; database {alias!r} is {vendor}"
    )


def get_queue(using: str | None = None) -> JobQueue:
    """Return the queue in database *using* (``JOBWORKER["DATABASE"]`` by default).

    The queue is opened on first use from Django's connection settings as
    they are then (so Django's test databases are used in tests) and shared
    by every later call for the same database. ``QUEUE_OPTIONS`` are passed
    to :class:`~jobworker.SQLiteQueue` or :class:`~jobworker.PostgresQueue`;
    ``LIMITS`` are set on its registry. Thread-safe.

    :raises ImproperlyConfigured: the database is in-memory SQLite or neither
        SQLite nor PostgreSQL, or ``QUEUE_OPTIONS`` holds an unknown option.
    :raises BackendError: the database cannot be reached, or (PostgreSQL) the
        tables are missing: run ``manage.py migrate jobworker``.
    """
    conf = get_settings()
    alias = conf.database if using is None else using
    vendor, where = _location(alias)
    key = (alias, where)
    with _lock:
        queue = _queues.get(key)
        if queue is not None:
            return queue
        try:
            if vendor == _SQLITE:
                queue = SQLiteQueue(where, **conf.queue_options)
            else:
                from . import _postgres  # noqa: PLC0415

                queue = _postgres.open_queue(connections[alias], conf.queue_options)
        except TypeError as exc:
            raise ImproperlyConfigured(f"JOBWORKER['QUEUE_OPTIONS']: {exc}") from exc
        for job_type, limits in conf.limits.items():
            queue.registry.set_limits(job_type, limits)
        _queues[key] = queue
        return queue


def close_queues(using: str | None = None) -> None:
    """Close the queues :func:`get_queue` opened; the next call opens them anew.

    Every queue, or those of the database alias *using*. Called when
    ``DATABASES`` or ``JOBWORKER`` change (``override_settings``) and before
    Django's test runner destroys a test database. Stop the workers that use
    the queues first.
    """
    with _lock:
        keys = [key for key in _queues if using is None or key[0] == using]
        queues = [_queues.pop(key) for key in keys]
    for queue in queues:
        queue.close()


def enqueue_job(job: PendingJob[P], *, using: str | None = None) -> PendingJob[P]:
    """Store *job* in the queue of database *using*; return it as stored.

    Inside ``transaction.atomic()`` on that database, the job is written
    through the same connection: it exists if and only if the transaction
    commits, and idle workers are woken at the commit. Outside a
    transaction it is stored at once.

    :raises DuplicateJobError: a job with this id exists.
    :raises InvalidJobError: the job cannot be stored.
    """
    alias = get_settings().database if using is None else using
    caller = _in_transaction(alias)
    if caller is None:
        return get_queue(alias).create_job(job)
    queue, raw = caller
    job_type = job.metadata.type
    if isinstance(queue, SQLiteQueue):
        created = queue.create_job(job, connection=raw)
        # Wakes one idle worker of this process that takes the type.
        transaction.on_commit(lambda: queue.wake(job_type), using=alias)
        return created
    # PostgreSQL: announced after the commit, not inside the transaction,
    # whose commit would then wait for the server-wide notification lock.
    created = queue.create_job(job, connection=raw, announce=False)
    transaction.on_commit(lambda: _announce(queue, job_type, alias), using=alias)
    return created


def _announce(queue: PostgresQueue, job_type: str, alias: str) -> None:
    """Wake idle workers, here and in other processes, for a job just committed on *alias*."""
    from . import _postgres  # noqa: PLC0415

    try:
        queue.announce(job_type, connection=_postgres.raw_connection(connections[alias]))
    except BackendError:
        # The job is committed; idle workers find it within their poll_interval.
        log.warning("could not notify workers of a new %r job", job_type, exc_info=True)
    queue.wake(job_type)


def read_job(job_id: str, *, using: str | None = None) -> AnyJob | None:
    """Return the job *job_id* in the queue of database *using*, or ``None``.

    Inside ``transaction.atomic()`` on that database, the job is read
    through the same connection :func:`enqueue_job` writes through, so a job
    enqueued in this transaction (a ``TestCase``, ``ATOMIC_REQUESTS``) is
    found. Outside a transaction, as :meth:`JobQueue.get_job`.
    """
    alias = get_settings().database if using is None else using
    caller = _in_transaction(alias)
    if caller is None:
        return get_queue(alias).get_job(job_id)
    queue, raw = caller
    return queue.get_job(job_id, connection=raw)


def _in_transaction(alias: str) -> tuple[SQLiteQueue | PostgresQueue, Any] | None:
    """Return the queue of *alias* and the driver connection of its open transaction.

    ``None`` outside ``transaction.atomic()`` on that database. Inside, the
    connection is the one Django's wraps, so the queue reads and writes
    within the caller's transaction.
    """
    connection = connections[alias]
    if not connection.in_atomic_block:
        return None
    queue = get_queue(alias)
    if connection.vendor == _SQLITE:
        assert isinstance(queue, SQLiteQueue)
        connection.ensure_connection()
        return queue, connection.connection
    from ...queues.postgres import PostgresQueue  # noqa: PLC0415
    from . import _postgres  # noqa: PLC0415

    assert isinstance(queue, PostgresQueue)
    return queue, _postgres.raw_connection(connection)


def enqueue(
    job_type: str,
    params: Any = None,
    *,
    using: str | None = None,
    id: str | None = None,
    user_id: str = "",
    max_retries: int = 3,
    priority: int = 0,
    run_after: _dt.datetime | None = None,
) -> PendingJob[Any]:
    """Create a job of *job_type* with *params* and store it with :func:`enqueue_job`.

    ``params`` default to ``{}``; the other arguments are those of
    :func:`jobworker.new_job`.
    """
    job = new_job(
        job_type,
        {} if params is None else params,
        id=id,
        user_id=user_id,
        max_retries=max_retries,
        priority=priority,
        run_after=run_after,
    )
    return enqueue_job(job, using=using)


def create_tables(connection: Any) -> None:
    """Create the queue's tables through Django's *connection*, in its transaction."""
    if connection.vendor == _SQLITE:
        migrate_sqlite(connection.connection)
    elif connection.vendor == _POSTGRES:
        from . import _postgres  # noqa: PLC0415

        _postgres.create_tables(connection)


def drop_tables(connection: Any) -> None:
    """Drop the queue's tables through Django's *connection*, in its transaction."""
    if connection.vendor == _SQLITE:
        connection.connection.execute("DROP TABLE IF EXISTS jobworker_jobs")
        connection.connection.execute("DROP TABLE IF EXISTS jobworker_meta")
        connection.connection.execute("DROP TABLE IF EXISTS jobworker_controls")
    elif connection.vendor == _POSTGRES:
        from . import _postgres  # noqa: PLC0415

        _postgres.drop_tables(connection)
