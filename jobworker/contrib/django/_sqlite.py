"""SQLiteQueue for a Django project: opening it never waits for the project's own write lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar
from urllib.request import pathname2url

from ...queues._sql import Tx
from ...queues._sqlite_schema import SCHEMA_VERSION, migrate
from ...queues.sqlite import SQLiteQueue

__all__ = ["DjangoSQLiteQueue"]

T = TypeVar("T")


class DjangoSQLiteQueue(SQLiteQueue):
    """An :class:`SQLiteQueue` that skips its opening migration when the schema is current.

    ``SQLiteQueue`` migrates in a write transaction when it opens. In a Django
    project the queue is often opened for the first time inside
    ``transaction.atomic()``, whose connection already holds the database's
    write lock: that write would wait for the lock its own thread holds. The
    migrations of ``jobworker.contrib.django`` create the schema, so a read
    (which WAL never blocks) is enough to open the queue.
    """

    def _write(self, body: Callable[[Tx], T]) -> T:
        if body is migrate and self._schema_version() == SCHEMA_VERSION:
            return SCHEMA_VERSION  # type: ignore[return-value]  # migrate's own return value
        return super()._write(body)

    def _schema_version(self) -> int | None:
        # A connection of its own, read-only and closed at once: a read in
        # WAL mode never waits for a writer.
        try:
            uri = f"file:{pathname2url(self.path)}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)
        except sqlite3.Error:
            return None
        try:
            row = conn.execute(
                "SELECT value FROM jobworker_meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.Error:
            return None  # no jobworker_meta yet, or not a database: migrate says why
        finally:
            conn.close()
        return None if row is None else int(row[0])
