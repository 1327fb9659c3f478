"""PostgreSQL through Django's connection: its libpq parameters, its psycopg connection.

psycopg is imported here only, so that a project on SQLite needs none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import psycopg
from django.core.exceptions import ImproperlyConfigured
from psycopg import pq
from psycopg.conninfo import make_conninfo

from ...queues._postgres_schema import Names, migrate
from ...queues.postgres import PostgresQueue

__all__ = ["NAMES", "conninfo", "create_tables", "drop_tables", "open_queue", "raw_connection"]

#: Where the tables live: ``public.jobworker_jobs`` and ``public.jobworker_meta``,
#: the names the admin's model reads.
NAMES: Final = Names(schema="public", prefix="jobworker_")


def conninfo(connection: Any) -> str:
    """Return the libpq connection string of Django's *connection*, as configured now.

    Django's own parameters (``NAME``, ``USER``, ``HOST``, ... and libpq
    ``OPTIONS`` such as ``sslmode``), minus what only Django understands.
    """
    keywords = {bytes(option.keyword).decode() for option in pq.Conninfo.get_defaults()}
    params: Mapping[str, Any] = connection.get_connection_params()
    kept = {key: value for key, value in params.items() if key in keywords and value != ""}
    return make_conninfo("", **kept)


def open_queue(connection: Any, options: Mapping[str, Any]) -> PostgresQueue:
    """Open a :class:`PostgresQueue` on the database of Django's *connection*."""
    return PostgresQueue(conninfo(connection), schema=NAMES.schema, prefix=NAMES.prefix, **options)


def raw_connection(connection: Any) -> psycopg.Connection[Any]:
    """Return the psycopg 3 connection under Django's *connection*."""
    connection.ensure_connection()
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):
        raise ImproperlyConfigured(
            f"jobworker needs Django's PostgreSQL backend on psycopg 3, "
            f"got a {type(raw).__module__}.{type(raw).__name__} connection"
        )
    return raw


def create_tables(connection: Any) -> None:
    """Create the queue's tables in the transaction of Django's *connection*."""
    migrate(raw_connection(connection), NAMES)


def drop_tables(connection: Any) -> None:
    """Drop the queue's tables in the transaction of Django's *connection*."""
    raw = raw_connection(connection)
    raw.execute(f"DROP TABLE IF EXISTS {NAMES.jobs}, {NAMES.meta}, {NAMES.controls}")
