"""A quick reachability check of a PostgreSQL server, for the command line.

The queue's pool retries for several seconds and then reports a timeout; a
command line should say at once why the server cannot be reached.
"""

from __future__ import annotations

import psycopg

from .errors import BackendError

__all__ = ["check_reachable"]


def check_reachable(conninfo: str, *, timeout: int = 5) -> None:
    """Open and close one connection to *conninfo*.

    :raises BackendError: the server cannot be reached or refuses the login;
        the message is libpq's.
    """
    try:
        with psycopg.connect(conninfo, connect_timeout=timeout):
            pass
    except psycopg.Error as exc:
        raise BackendError(f"cannot connect to PostgreSQL: {exc}") from exc
