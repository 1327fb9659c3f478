"""Fresh places for each child process: a temporary directory, a PostgreSQL schema, a Redis db.

Each child gets its own, and removes it when done: the directory with its
files, the schema with ``DROP SCHEMA ... CASCADE``, and in Redis only the
dedicated database number given by the Redis URL (``FLUSHDB``, never
``FLUSHALL``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: Database 11 of the local Redis: the children flush that database only.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"


class Services:
    """Where a child's systems keep their state, created on first use and removed on close."""

    def __init__(self, dsn: str, redis_url: str) -> None:
        self.dsn = dsn
        self.redis_url = redis_url
        self.schema = f"jwbench_{os.getpid()}_{secrets.token_hex(3)}"
        self._dir: str | None = None
        self._schema_made = False
        self._redis_used = False

    # -- files ----------------------------------------------------------------------------

    def path(self, name: str) -> str:
        """Return a fresh file path in this child's temporary directory."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="jobworker-bench-")
        return os.path.join(self._dir, name)

    # -- PostgreSQL -----------------------------------------------------------------------

    def pg_connect(self, **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, **kwargs)

    def pg_schema(self) -> str:
        """Create this child's schema (once) and return its name."""
        if not self._schema_made:
            with self.pg_connect() as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
            self._schema_made = True
        return self.schema

    def pg_dsn(self) -> str:
        """Return the DSN with ``search_path`` set to this child's schema."""
        schema = self.pg_schema()
        sep = "&" if "?" in self.dsn else "?"
        return f"{self.dsn}{sep}options={quote(f'-csearch_path={schema}')}"

    def pg_size(self) -> int:
        """Return the bytes on disk of every table in the schema, indexes and TOAST included."""
        with self.pg_connect() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'",
                (self.schema,),
            ).fetchone()
        return int(row[0]) if row else 0

    # -- Redis ----------------------------------------------------------------------------

    def redis(self) -> Any:
        """Return a client of the dedicated Redis database, flushed on first use."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        if not self._redis_used:
            client.flushdb()
            self._redis_used = True
        return client

    def redis_size(self) -> int:
        """Return the sum of ``MEMORY USAGE`` over every key of the dedicated database."""
        client = self.redis()
        total = 0
        batch: list[bytes] = []

        def flush() -> int:
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
            size = sum(v or 0 for v in pipe.execute())
            batch.clear()
            return size

        for key in client.scan_iter(count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                total += flush()
        return total + flush()

    # -- cleanup --------------------------------------------------------------------------

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._schema_made:
            with self.pg_connect() as conn:
                # Other sessions of this child (pools, listeners) are closed by now;
                # a leftover one would only delay the drop, not break it.
                conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
        if self._redis_used:
            self.redis().flushdb()


@contextmanager
def services(dsn: str, redis_url: str) -> Iterator[Services]:
    s = Services(dsn, redis_url)
    try:
        yield s
    finally:
        s.close()
