"""Queue URLs: one string that names a backend and where its jobs live.

- ``memory:``: a new :class:`MemoryQueue`.
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: an
  :class:`SQLiteQueue` on that file.
- ``postgresql://...`` (or ``postgres://...``): a :class:`PostgresQueue`;
  the URL is passed to libpq as it is.
"""

from __future__ import annotations

from typing import Any

from .queues.base import JobQueue
from .queues.memory import MemoryQueue
from .queues.sqlite import SQLiteQueue
from .redact import mask_secrets

__all__ = ["open_queue"]


def open_queue(url: str, **options: Any) -> JobQueue:
    """Open the queue that *url* names, passing *options* to its constructor.

    >>> open_queue("memory:")
    <MemoryQueue jobs=0 closed=False>

    :raises ValueError: the URL names no known backend.
    """
    if url == "memory:":
        return MemoryQueue(**options)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ValueError("a sqlite: URL needs a path, as in sqlite:///jobs.db")
        return SQLiteQueue(path, **options)
    if url.startswith(("postgresql://", "postgres://")):
        # Imported here: psycopg is an optional dependency (jobworker[postgres]).
        from .queues.postgres import PostgresQueue  # noqa: PLC0415

        return PostgresQueue(url, **options)
    raise ValueError(
        f"unknown queue URL {mask_secrets(url)!r}: use memory:, sqlite:///PATH or postgresql://..."
    )
