"""PostgresQueue: the distributed backend, on psycopg 3 and its connection pool.

Workers on many machines share one PostgreSQL database. A claim selects the
best ready job ``FOR UPDATE SKIP LOCKED`` and marks it running in the same
short transaction, which never spans ``execute_job``. Times come from the
database's clock, never the worker's. Idle workers wake on LISTEN / NOTIFY
at once; polling at the worker's ``poll_interval`` stays as the fallback that
keeps delivery correct when a notification is lost. Notifications carry the
job type only, never params.

Install with the ``postgres`` extra: ``pip install jobworker[postgres]``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from ..errors import BackendError, DuplicateJobError, QueueClosedError
from ..model import PendingJob
from ._postgres_schema import SCHEMA_VERSION, Names, migrate, schema_version
from ._rows import COLUMNS, N_COLUMNS, from_us
from ._sql import SQLQueue, Tx

__all__ = ["PostgresQueue"]

log = logging.getLogger("jobworker.postgres")

P = TypeVar("P")
T = TypeVar("T")

_NOW_US = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"


class DatabaseClock:
    """The database server's clock, read without a round trip.

    The server's time is sampled at most every *resync* seconds, over a
    connection of its own (never one a transaction holds), and carried
    forward with ``time.monotonic()``. So a worker whose wall clock is wrong,
    or steps, still stores and compares the server's time.
    """

    def __init__(self, conninfo: str, resync: float = 30.0) -> None:
        self._conninfo = conninfo
        self._resync = resync
        self._lock = threading.Lock()
        # guarded by _lock: server microseconds and monotonic seconds of the last sample
        self._anchor: tuple[int, float] | None = None

    def now(self) -> _dt.datetime:
        """Return the server's current time, timezone-aware UTC."""
        with self._lock:
            anchor = self._anchor
        if anchor is None or time.monotonic() - anchor[1] > self._resync:
            anchor = self._sample(anchor)
        server_us, at = anchor
        return from_us(server_us + round((time.monotonic() - at) * 1_000_000))

    def _sample(self, previous: tuple[int, float] | None) -> tuple[int, float]:
        try:
            with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                # Time the query alone, not the connect: the server read the
                # clock somewhere within it; take the middle.
                before = time.monotonic()
                row = conn.execute(_NOW_US).fetchone()
                after = time.monotonic()
        except psycopg.Error as exc:
            if previous is None:
                raise BackendError(f"cannot read the database clock: {exc}") from exc
            log.warning("cannot read the database clock; carrying the last sample forward")
            return previous
        assert row is not None
        anchor = (int(row[0]), (before + after) / 2)
        with self._lock:
            self._anchor = anchor
        return anchor


class PostgresQueue(SQLQueue):
    """A queue in a PostgreSQL database, shared by processes on many machines.

    :param conninfo: a libpq connection string or URL.
    :param schema: the schema that holds the tables (created by migration).
    :param prefix: the prefix of the table names (``jobworker_jobs``, ...).
    :param pool_size: the most connections this queue opens for its work
        (plus one for LISTEN when *notify* is on).
    :param notify: wake idle workers with LISTEN / NOTIFY; off, they poll.
    :param migrate: create or upgrade the tables now. Off by default: no DDL
        runs unless asked for (see :meth:`migrate` and ``jobworker migrate``).

    Also takes the keyword arguments of :class:`JobQueue`; without ``clock``
    the queue uses the database's clock (pass a clock only in tests).

    :raises BackendError: the server cannot be reached, or the tables are
        missing or from another release.
    """

    ARRIVAL = "seq"
    LOCK_ROW = "FOR UPDATE"
    SKIP_LOCKED = "FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "public",
        prefix: str = "jobworker_",
        pool_size: int = 10,
        notify: bool = True,
        migrate: bool = False,
        **options: Any,
    ) -> None:
        names = Names(schema=schema, prefix=prefix)
        if not pool_size >= 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        database_clock = options.get("clock") is None
        super().__init__(table=names.jobs, placeholder="%s", **options)
        self.names = names
        self.notify = notify
        self._conninfo = conninfo
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            # A connection broken by a server restart is replaced at checkout.
            check=ConnectionPool.check_connection,
            timeout=10.0,
            name=f"jobworker-{names.channel}",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=10.0)
        except psycopg.Error as exc:
            raise BackendError(f"cannot connect to PostgreSQL: {exc}") from exc
        except Exception as exc:  # broad: psycopg_pool raises its own PoolTimeout
            raise BackendError(f"cannot connect to PostgreSQL: {exc}") from exc
        if database_clock:
            self.clock = DatabaseClock(conninfo)
        try:
            if migrate:
                self.migrate()
            self._check_schema()
        except BaseException:
            self._pool.close()
            raise
        self._listener: threading.Thread | None = None
        if notify:
            self._listener = threading.Thread(
                target=self._listen,
                name=f"jobworker-listen-{names.channel}",
                # Daemon on purpose: it holds no job and writes nothing, so the
                # interpreter may end it at exit if close() was never called.
                daemon=True,
            )
            self._listener.start()

    def __repr__(self) -> str:
        return f"<PostgresQueue {self.names.jobs}>"

    # -- schema ----------------------------------------------------------------------------

    def migrate(self) -> int:
        """Create or upgrade this queue's tables; return the version found before."""
        return self._write(lambda tx: migrate(tx, self.names))

    def _check_schema(self) -> None:
        found = self._reading(lambda tx: schema_version(tx, self.names))
        if found != SCHEMA_VERSION:
            state = "missing" if found is None else f"at version {found}"
            raise BackendError(
                f"the jobworker tables {self.names.jobs} are {state}, not at version "
                f"{SCHEMA_VERSION}: run `jobworker migrate` or pass migrate=True"
            )

    # -- the dialect -------------------------------------------------------------------------

    def _write(self, body: Callable[[Tx], T]) -> T:
        self._check_open()
        try:
            with self._pool.connection() as conn, conn.transaction():
                return body(conn)
        except psycopg.Error as exc:
            raise self._error("write failed", exc) from exc

    def _reading(self, body: Callable[[Tx], T]) -> T:
        self._check_open()
        try:
            with self._pool.connection() as conn:
                return body(conn)
        except psycopg.Error as exc:
            raise self._error("read failed", exc) from exc

    def _error(self, what: str, exc: Exception) -> Exception:
        if self._closed:
            return QueueClosedError("the queue is closed")
        return BackendError(f"PostgreSQL {what}: {exc}")

    def _insert(self, tx: Tx, values: Sequence[Any]) -> None:
        marks = ", ".join(["%s"] * (N_COLUMNS + 1))
        sql = f"INSERT INTO {self.names.jobs} ({COLUMNS}, lease_until_us) VALUES ({marks})"
        # A savepoint, written out: a duplicate must not abort a caller's
        # transaction, and psycopg's transaction() would commit on its own on
        # a connection whose implicit transaction has not begun yet.
        tx.execute("SAVEPOINT jobworker_insert")
        try:
            tx.execute(sql, values)
        except psycopg.errors.UniqueViolation:
            tx.execute("ROLLBACK TO SAVEPOINT jobworker_insert")
            raise DuplicateJobError(values[0]) from None
        tx.execute("RELEASE SAVEPOINT jobworker_insert")

    def _announce(self, tx: Tx, job_type: str) -> None:
        if self.notify:
            # Delivered at commit; a rolled-back job announces nothing.
            tx.execute("SELECT pg_notify(%s, %s)", (self.names.channel, job_type))

    # -- transactional enqueue ----------------------------------------------------------------

    def create_job(self, job: PendingJob[P], *, connection: Any = None) -> PendingJob[P]:
        """Store a new pending job; with *connection*, inside the caller's transaction.

        With ``connection`` (a psycopg connection in a transaction), the job
        exists if and only if that transaction commits, and idle workers are
        woken at its commit. Otherwise as :meth:`JobQueue.create_job`.
        """
        if connection is None:
            return super().create_job(job)
        stored = self._encode_new(job)
        try:
            self._create(connection, stored)
        except psycopg.errors.NoActiveSqlTransaction:
            raise BackendError(
                "create_job(connection=...) needs a connection inside a transaction"
            ) from None
        except psycopg.Error as exc:
            raise self._error("insert failed", exc) from exc
        return cast("PendingJob[P]", self._decode(stored))

    # -- notifications --------------------------------------------------------------------------

    def _listen(self) -> None:
        """LISTEN for new jobs and wake local pollers; reconnect with capped backoff."""
        backoff = 0.1
        while not self._is_closed():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{self.names.channel}"')
                    backoff = 0.1
                    # Jobs may have arrived while we were not listening.
                    self._notify()
                    while not self._is_closed():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._notify()
            except psycopg.Error:
                if self._is_closed():
                    return
                log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
                with self._cond:
                    self._cond.wait_for(lambda: self._closed, timeout=backoff)
                backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._listener is not None:
            # Wake our listener out of its wait so it sees the queue closed
            # (other listeners on the channel just look for work again).
            with contextlib.suppress(psycopg.Error), self._pool.connection() as conn:
                conn.execute("SELECT pg_notify(%s, '')", (self.names.channel,))
            self._listener.join(timeout=5.0)
        self._pool.close()
