"""PostgreSQL for the command line: a quick reachability check, and ``migrate``.

The queue's pool retries for several seconds and then reports a timeout; a
command line should say at once why the server cannot be reached.
"""

from __future__ import annotations

import psycopg

from .errors import BackendError
from .queues._postgres_schema import Names, migrate, schema_version
from .redact import mask_secrets

__all__ = ["check_reachable", "migrate_tables", "tables_version"]


def _connect(conninfo: str, timeout: int) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(conninfo, connect_timeout=timeout)
    except psycopg.Error as exc:
        raise BackendError(f"cannot connect to PostgreSQL: {mask_secrets(str(exc))}") from None


def check_reachable(conninfo: str, *, timeout: int = 5) -> None:
    """Open and close one connection to *conninfo*.

    :raises BackendError: the server cannot be reached or refuses the login;
        the message is libpq's, with any password masked.
    """
    _connect(conninfo, timeout).close()


def tables_version(conninfo: str, names: Names, *, timeout: int = 5) -> int | None:
    """Return the schema version of the tables *names* (``None`` if they are missing)."""
    with _connect(conninfo, timeout) as conn:
        try:
            return schema_version(conn, names)
        except psycopg.Error as exc:
            raise BackendError(f"cannot read the schema version: {exc}") from None


def migrate_tables(conninfo: str, names: Names, *, timeout: int = 5) -> int:
    """Create or upgrade the tables *names* in one transaction; return the version found.

    0 when there were no tables.
    """
    with _connect(conninfo, timeout) as conn:
        try:
            with conn.transaction():
                return migrate(conn, names)
        except psycopg.Error as exc:
            raise BackendError(f"cannot migrate {names.jobs}: {exc}") from None
