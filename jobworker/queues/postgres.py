"""PostgresQueue: the distributed backend, on psycopg 3 and its connection pool.

Workers on many machines share one PostgreSQL database. A claim is one
statement that selects the best ready job ``FOR UPDATE SKIP LOCKED`` and marks
it running; no transaction spans ``execute_job``. A job's common path is one
round trip per step (create, claim, outcome), each statement in autocommit.
Times come from the database's clock, never the worker's. Idle workers wake on
LISTEN / NOTIFY at once; polling at the worker's ``poll_interval`` stays as
the fallback that keeps delivery correct when a notification is lost.
Notifications carry the job type only, never params.

Every database call is bounded in time (see :class:`Bounds`), so a worker cut
off from the server by a silent partition gets an error within the bound
instead of a socket wait of minutes; the queue logs the loss once, and the
return once.

Install with the ``postgres`` extra: ``pip install jobworker[postgres]``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from ..errors import BackendError, DuplicateJobError, QueueClosedError
from ..model import AnyJob, JobId, PendingJob
from ..redact import mask_secrets
from ._postgres_schema import SCHEMA_VERSION, Names, migrate, schema_version
from ._rows import COLUMNS, N_COLUMNS, from_us, values_of
from ._sql import SQLQueue, Tx
from ._sql_limits import PAUSED

__all__ = ["PostgresQueue"]

log = logging.getLogger("jobworker.postgres")

P = TypeVar("P")
T = TypeVar("T")

# The ready condition of _sql, with the table named (inside a LATERAL subquery).
_READY_PG = "{t}.status = 'pending' AND ({t}.run_after_us IS NULL OR {t}.run_after_us <= ?)"

_CLOCK_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
_NOW_US = f"SELECT {_CLOCK_US}"


class Bounds:
    """The time bounds of a queue's database calls, all derived from one *timeout*.

    *timeout* (seconds) bounds a statement (``statement_timeout``), a wait for
    a pool connection, a transaction left open by a vanished client
    (``idle_in_transaction_session_timeout``), and unacknowledged data on a
    socket (``tcp_user_timeout``). A connect gives up after
    ``connect_timeout`` whole seconds (libpq's least is 2), and keepalive
    probes find an idle connection (LISTEN's) dead within about *timeout*.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.connect_timeout = max(2, math.ceil(timeout))
        #: Keyword arguments of every connection the queue opens.
        self.connect_kwargs: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "keepalives": 1,
            "keepalives_idle": max(1, round(timeout / 2)),
            "keepalives_interval": max(1, round(timeout / 4)),
            "keepalives_count": 2,
            "tcp_user_timeout": max(1, round(timeout * 1000)),
        }

    def configure(self, conn: psycopg.Connection[Any]) -> None:
        """Set the server-side bounds of a new pool connection (autocommit)."""
        ms = str(max(1, round(self.timeout * 1000)))
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false)",
            (ms, ms),
        )


class _Reachability:
    """Whether the server answers, as seen by every thread of one queue.

    The first failure of an outage is logged (WARNING), and the first
    success after it (INFO); the failures in between are logged at DEBUG.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lost_at: float | None = None  # guarded by _lock: monotonic time of the loss

    def failed(self, exc: BaseException, bound: float) -> None:
        with self._lock:
            first = self._lost_at is None
            if first:
                self._lost_at = time.monotonic()
        if first:
            log.warning(
                "PostgreSQL unreachable (%s); every call fails within %.1f s until it is back",
                mask_secrets(str(exc)).strip(),
                bound,
            )
        else:
            log.debug("PostgreSQL still unreachable: %s", mask_secrets(str(exc)).strip())

    def answered(self) -> None:
        if self._lost_at is None:  # the common case: a plain read, no lock
            return
        with self._lock:
            lost_at, self._lost_at = self._lost_at, None
        if lost_at is not None:
            log.info("PostgreSQL reachable again after %.1f s", time.monotonic() - lost_at)


class DatabaseClock:
    """The database server's clock, read without a round trip.

    The server's time is sampled at most every *resync* seconds, over a
    connection of its own (never one a transaction holds), and carried
    forward with ``time.monotonic()``. So a worker whose wall clock is wrong,
    or steps, still stores and compares the server's time. A failed sample
    carries the last one forward, and the next try waits (doubling, up to
    *resync*): an unreachable server costs one bounded try per wait, not one
    per call.
    """

    def __init__(
        self,
        conninfo: str,
        resync: float = 30.0,
        *,
        connect_kwargs: dict[str, Any] | None = None,
        reachability: _Reachability | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._resync = resync
        self._connect_kwargs = connect_kwargs or {"connect_timeout": 5}
        self._reachability = reachability
        self._lock = threading.Lock()
        # guarded by _lock: server microseconds and monotonic seconds of the last sample
        self._anchor: tuple[int, float] | None = None
        self._next_try = 0.0  # guarded by _lock: monotonic time of the next sample
        self._backoff = 0.5  # guarded by _lock: the wait after a failed sample

    def now(self) -> _dt.datetime:
        """Return the server's current time, timezone-aware UTC."""
        with self._lock:
            anchor = self._anchor
            due = anchor is None or (
                time.monotonic() - anchor[1] > self._resync and time.monotonic() >= self._next_try
            )
            if due and anchor is not None:
                # One thread samples; the others carry the last sample forward.
                self._next_try = time.monotonic() + self._backoff
        if due:
            anchor = self._sample(anchor)
        assert anchor is not None
        server_us, at = anchor
        return from_us(server_us + round((time.monotonic() - at) * 1_000_000))

    def _sample(self, previous: tuple[int, float] | None) -> tuple[int, float]:
        try:
            with psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs) as conn:
                # Time the query alone, not the connect: the server read the
                # clock somewhere within it; take the middle.
                before = time.monotonic()
                row = conn.execute(_NOW_US).fetchone()
                after = time.monotonic()
        except psycopg.Error as exc:
            if previous is None:
                message = mask_secrets(str(exc)).strip()
                raise BackendError(f"cannot read the database clock: {message}") from None
            with self._lock:
                self._next_try = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self._resync)
            if self._reachability is not None:
                self._reachability.failed(exc, self._connect_kwargs["connect_timeout"])
            else:
                log.warning("cannot read the database clock; carrying the last sample forward")
            return previous
        assert row is not None
        anchor = (int(row[0]), (before + after) / 2)
        with self._lock:
            self._anchor = anchor
            self._backoff = 0.5
        if self._reachability is not None:
            self._reachability.answered()
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
    :param timeout: seconds that bound every database call: a statement, a
        wait for a pool connection, a socket that stops answering; a connect
        gives up after the same time in whole seconds, at least 2. ``None``
        (the default): half the ``lease_duration``, at least 1 s, so a worker
        cut off from the server notices well within one lease (the
        PostgreSQL guide lists every bound it sets).

    Also takes the keyword arguments of :class:`JobQueue`; without ``clock``
    the queue uses the database's clock (pass a clock only in tests).

    :raises BackendError: the server cannot be reached (with the server's or
        the driver's own reason, password masked), or the tables are missing
        or from another release.
    """

    ARRIVAL = "seq"
    CONTAINS = "strpos(id, ?) > 0"
    KEY = "id"
    SAME_RUN_AFTER = "run_after_us IS NOT DISTINCT FROM CAST(? AS bigint)"
    SAME_ATTEMPTS = "attempts IS NOT DISTINCT FROM CAST(? AS text)"
    SAME_TIME_LIMIT = "time_limit IS NOT DISTINCT FROM CAST(? AS double precision)"
    LOCK_ROW = "FOR UPDATE"
    SKIP_LOCKED = "FOR UPDATE SKIP LOCKED"
    # A job's concurrency key: its params field as text; '' if missing or null
    # (as throttling.key_of).
    KEY_SQL = "COALESCE(CAST(params AS jsonb) ->> CAST(? AS text), '')"
    HELD = "unique_key IS NOT NULL AND strpos(unique_states, ',' || status || ',') > 0"

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "public",
        prefix: str = "jobworker_",
        pool_size: int = 10,
        notify: bool = True,
        migrate: bool = False,
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        names = Names(schema=schema, prefix=prefix)
        if not pool_size >= 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        self._database_clock = options.get("clock") is None
        super().__init__(table=names.jobs, controls=names.controls, placeholder="%s", **options)
        self.names = names
        self.notify = notify
        self._bounds = Bounds(max(1.0, self.lease_duration / 2) if timeout is None else timeout)
        self._conninfo = conninfo
        self._reachability = _Reachability()
        # One connection first, to fail at once with the real reason (a
        # missing database, a refused port, a malformed DSN), not the pool's
        # "initialization incomplete" after its own timeout. It also checks
        # (or migrates) the tables, and closes: the pool and the LISTEN
        # connection open only when this process first uses them (see
        # _connection and _before_wait), so a process that only enqueues
        # through its own connection holds none of the queue's.
        self._pool = ConnectionPool(
            conninfo,
            # Connections are made as threads need them, one at a time: a
            # process that reads now and then holds one, not a full pool.
            min_size=0,
            max_size=pool_size,
            kwargs={"autocommit": True, **self._bounds.connect_kwargs},
            configure=self._bounds.configure,
            # No check at checkout (a round trip each time): a statement that
            # finds its connection broken runs again on another while the
            # call's time bound allows (see _autocommit); the pool replaces
            # the broken one when it comes back.
            timeout=self._bounds.timeout,
            # A failed background connect is retried for this long, then
            # given up: the next call that needs a connection starts afresh,
            # so the pool is not asleep in a long backoff when the server returns.
            reconnect_timeout=self._bounds.timeout,
            name=f"jobworker-{names.channel}",
            open=False,
        )
        # Guards _pool_opened and _listener: each is started once, by the
        # first thread that needs it.
        self._start_lock = threading.Lock()
        self._pool_opened = False
        self._listener: threading.Thread | None = None
        if self._database_clock:
            self.clock = DatabaseClock(
                conninfo,
                connect_kwargs=self._bounds.connect_kwargs,
                reachability=self._reachability,
            )
        try:
            with psycopg.connect(conninfo, autocommit=True, **self._bounds.connect_kwargs) as conn:
                self._bounds.configure(conn)
                if migrate:
                    with conn.transaction():
                        self._migrate_in(conn)
                found = schema_version(conn, self.names)
        except psycopg.Error as exc:
            message = mask_secrets(str(exc)).strip()
            raise BackendError(f"cannot connect to PostgreSQL: {message}") from None
        self._check_version(found)

    def __repr__(self) -> str:
        return f"<PostgresQueue {self.names.jobs}>"

    # -- schema ----------------------------------------------------------------------------

    def migrate(self) -> int:
        """Create or upgrade this queue's tables; return the version found before."""
        return self._write(self._migrate_in)

    def _migrate_in(self, tx: Tx) -> int:
        # DDL on a large table may outlast the bound of everyday statements.
        tx.execute("SET LOCAL statement_timeout = 0")
        return migrate(tx, self.names)

    def _check_version(self, found: int | None) -> None:
        if found != SCHEMA_VERSION:
            state = "missing" if found is None else f"at version {found}"
            raise BackendError(
                f"the jobworker tables {self.names.jobs} and {self.names.meta} are {state} "
                f"(this release needs version {SCHEMA_VERSION}): create them with "
                f"PostgresQueue(..., migrate=True) or the `jobworker migrate` command"
            )

    # -- the dialect -------------------------------------------------------------------------

    def _write(self, body: Callable[[Tx], T]) -> T:
        self._check_open()
        deadline = time.monotonic() + self._bounds.timeout
        attempts = self._pool.max_size + 1
        for attempt in range(1, attempts + 1):
            began = False
            conn = None
            try:
                with self._connection(deadline) as conn, conn.transaction():
                    began = True
                    result = body(conn)
            except psycopg.Error as exc:
                # Broken before the transaction began: nothing ran, so run it
                # on another connection (the pool drops this one).
                if not began and self._may_retry(attempt, attempts, conn, deadline):
                    continue
                raise self._error("write failed", exc, conn) from exc
            self._reachability.answered()
            return result
        raise AssertionError("unreachable")

    def _autocommit(self, body: Callable[[Tx], T], what: str = "write") -> T:
        self._check_open()
        deadline = time.monotonic() + self._bounds.timeout
        # After a server restart every pooled connection is broken: each
        # try drops one, so the pool's size plus one tries reach a new one.
        attempts = self._pool.max_size + 1
        for attempt in range(1, attempts + 1):
            conn = None
            try:
                with self._connection(deadline) as conn:
                    result = body(conn)
            except psycopg.Error as exc:
                # A connection the server closed (a restart, an idle timeout)
                # is found out when used: run the statement again on
                # another. Every statement sent this way is safe to repeat:
                # reads; claims (a first claim that did commit is a lease
                # that expires); writes fenced by a claim or a status;
                # cleanup (whose count then misses what the first run
                # deleted); and create_job, which tells its own first insert
                # apart.
                if self._may_retry(attempt, attempts, conn, deadline):
                    continue
                raise self._error(f"{what} failed", exc, conn) from exc
            self._reachability.answered()
            return result
        raise AssertionError("unreachable")

    def _connection(self, deadline: float) -> contextlib.AbstractContextManager[Any]:
        """A pool connection, waited for until *deadline* (a tenth of a second at least).

        The pool opens at the first call; it connects as threads ask.
        """
        if not self._pool_opened:
            with self._start_lock:
                if not self._pool_opened:
                    self._check_open()
                    self._pool.open(wait=False)
                    self._pool_opened = True
        return self._pool.connection(timeout=max(0.1, deadline - time.monotonic()))

    def _wake_local(self, job_type: str) -> None:
        # With a listener, the job's notification wakes one poll of this
        # process as of every other: waking one here too would wake two.
        if self._listener is None:
            self._job_ready(job_type)

    def _before_wait(self) -> None:
        """Start listening for new jobs, the first time a thread of this process waits."""
        if self._listener is not None or not self.notify:
            return
        with self._start_lock:
            if self._listener is not None or self._is_closed():
                return
            self._listener = threading.Thread(
                target=self._listen,
                name=f"jobworker-listen-{self.names.channel}",
                # Daemon on purpose: it holds no job and writes nothing, so the
                # interpreter may end it at exit if close() was never called.
                daemon=True,
            )
            self._listener.start()

    def _may_retry(self, attempt: int, attempts: int, conn: Any, deadline: float) -> bool:
        """Whether a call whose connection failed may run again on another.

        Only a broken connection, and only within the call's time bound: a
        server that restarted breaks every pooled connection at once (each
        found out at once); a silent partition makes one try last the bound.
        """
        return (
            attempt < attempts
            and _broken(conn)
            and not self._closed
            and time.monotonic() < deadline
        )

    def _error(self, what: str, exc: Exception, conn: Any = None) -> Exception:
        if self._closed:
            return QueueClosedError("the queue is closed")
        if isinstance(exc, psycopg.OperationalError) or _broken(conn):
            # No connection (a PoolTimeout is one), or it broke: the server is
            # out of reach as far as this call can tell, not refusing a statement.
            self._reachability.failed(exc, self._bounds.timeout)
        return BackendError(f"PostgreSQL {what}: {mask_secrets(str(exc)).strip()}")

    def _now_sql(self) -> str:
        # The server's clock when the statement writes, after its waits, but
        # never before the queue's clock (the server's, sampled) read before
        # it. A clock of the caller's own (tests) is taken as it is.
        if self._database_clock:
            return f"GREATEST(CAST(? AS bigint), {_CLOCK_US})"
        return "CAST(? AS bigint)"

    def _insert(self, tx: Tx, stored: PendingJob[str], *, announce: bool = True) -> None:
        # One statement: ON CONFLICT leaves a duplicate id out without an
        # error, so a caller's transaction goes on; pg_notify runs only for
        # an inserted row, and is delivered at commit.
        marks = ", ".join(["%s"] * (N_COLUMNS + 1))
        notify = self.notify and announce
        returning = "pg_notify(%s, type)" if notify else "1"
        # No conflict target: a taken unique key (a partial unique index) is
        # left out without an error too; _conflict then says which was taken.
        sql = f"""INSERT INTO {self.names.jobs} ({COLUMNS}, lease_until_us) VALUES ({marks})
            ON CONFLICT DO NOTHING RETURNING {returning}"""
        args = (*values_of(stored), None, *((self.names.channel,) if notify else ()))
        while not tx.execute(sql, args).fetchall():
            error = self._conflict(tx, stored)
            if error is not None:
                raise error

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def _insert_once(self, tx: Tx, stored: PendingJob[str], tries: list[int]) -> None:
        """Insert, telling a duplicate apart from this call's own insert run twice."""
        tries.append(1)
        try:
            self._insert(tx, stored)
        except DuplicateJobError:
            if len(tries) > 1:
                # An earlier try's connection broke, maybe after its commit:
                # the row it would have written is ours, not a duplicate.
                row = tx.execute(
                    f"SELECT {COLUMNS}, lease_until_us FROM {self.names.jobs} WHERE id = %s",
                    (stored.metadata.id,),
                ).fetchone()
                if row is not None and tuple(row) == (*values_of(stored), None):
                    return
            raise

    def _announce(self, tx: Tx, job_type: str) -> None:
        if self.notify:
            # Delivered at commit; a rolled-back job announces nothing.
            tx.execute("SELECT pg_notify(%s, %s)", (self.names.channel, job_type))

    def _slot_freed(self, job_type: str) -> None:
        if self.notify:
            # Idle workers of other processes may now take a job of the type.
            self._autocommit(
                lambda tx: tx.execute("SELECT pg_notify(%s, %s)", (self.names.channel, job_type))
            )

    def _best_of_types(self, count: int) -> str:
        # One head per type, each from that type's index, locked and skipping
        # locked rows; the placeholders are the types (an array) and now.
        return f"""SELECT h.id FROM unnest(CAST(? AS text[])) AS wanted(type)
            CROSS JOIN LATERAL (
                SELECT id, priority, created_us, seq FROM {{t}}
                WHERE {{t}}.type = wanted.type AND {_READY_PG} AND {PAUSED}
                ORDER BY priority DESC, created_us, seq LIMIT 1 FOR UPDATE SKIP LOCKED
            ) AS h ORDER BY h.priority DESC, h.created_us, h.seq LIMIT 1"""

    def _best_of_types_args(self, wanted: list[str], now: int) -> list[Any]:
        return [wanted, now]

    # -- transactional enqueue ----------------------------------------------------------------

    def create_job(
        self, job: PendingJob[P], *, connection: Any = None, announce: bool = True
    ) -> PendingJob[P]:
        """Store a new pending job; with *connection*, inside the caller's transaction.

        With ``connection`` (a psycopg connection in a transaction, or one
        not in autocommit mode, whose implicit transaction this begins), the
        job exists if and only if that transaction commits, and idle workers
        are woken at its commit. Otherwise as :meth:`JobQueue.create_job`.

        With ``announce=False`` (and a *connection*), the caller's transaction
        sends no notification: PostgreSQL lets only one transaction that
        notified commit at a time, server-wide, so a busy web application
        should not hold that lock through its own commits. The caller then
        calls :meth:`announce` after its commit, or idle workers find the job
        only at their ``poll_interval``.
        """
        if connection is None:
            stored, created = self._encode_new(job)
            tries: list[int] = []
            self._autocommit(lambda tx: self._insert_once(tx, stored, tries))
            self._wake_local(created.metadata.type)
            return created
        stored, created = self._encode_new(job)
        if (
            getattr(connection, "autocommit", False)
            and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        ):
            raise BackendError("create_job(connection=...) needs a connection inside a transaction")
        try:
            self._insert(connection, stored, announce=announce)
        except psycopg.Error as exc:
            raise self._error("insert failed", exc) from exc
        return created

    def announce(self, job_type: str, *, connection: Any) -> None:
        """Tell idle workers of every process that a job of *job_type* was committed.

        Sent through *connection* (a psycopg connection, outside any
        transaction: the notification commits at once, in a transaction
        that writes nothing and so holds PostgreSQL's notification lock for
        no disk flush). Pair it with ``create_job(..., announce=False)``.
        Wakes one idle poll that takes the type in each process listening.
        """
        if not self.notify:
            return
        try:
            connection.execute("SELECT pg_notify(%s, %s)", (self.names.channel, job_type))
        except psycopg.Error as exc:
            raise self._error("notify failed", exc) from exc

    def get_job(self, job_id: JobId | str, *, connection: Any = None) -> AnyJob | None:
        """Return the job with *job_id*; with *connection*, as its transaction sees it.

        With ``connection`` (a psycopg connection, such as Django's inside
        ``transaction.atomic()``), the job is read through it, so a job that
        connection created and has not yet committed is found. Otherwise as
        :meth:`JobQueue.get_job`.
        """
        if connection is None:
            return super().get_job(job_id)
        try:
            return self._get_in(connection, job_id)
        except psycopg.Error as exc:
            raise self._error("read failed", exc) from exc

    # -- notifications --------------------------------------------------------------------------

    def _listen(self) -> None:
        """LISTEN for new jobs and wake local pollers; reconnect with capped backoff."""
        backoff = 0.1
        # The connection idles between notifications: keepalive probes (see
        # Bounds) find it dead within about the bound when the server vanishes.
        kwargs = self._bounds.connect_kwargs
        while not self._is_closed():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, **kwargs) as conn:
                    conn.execute(f'LISTEN "{self.names.channel}"')
                    self._reachability.answered()
                    backoff = 0.1
                    # Jobs may have arrived while we were not listening.
                    self._notify()
                    while not self._is_closed():
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            if note.payload:
                                # One idle poll of this process per new job.
                                self._job_ready(note.payload)
                            else:
                                self._notify()
            except psycopg.Error as exc:
                if self._is_closed():
                    return
                log.debug("LISTEN connection lost; polling until it is back", exc_info=True)
                self._reachability.failed(exc, self._bounds.timeout)
                with self._cond:
                    self._cond.wait_for(lambda: self._closed, timeout=backoff)
                backoff = min(backoff * 2, self._bounds.timeout)

    def close(self) -> None:
        if not self._mark_closed():
            return
        with self._start_lock:
            listener, opened = self._listener, self._pool_opened
        if listener is not None:
            # Wake our listener out of its wait so it sees the queue closed
            # (other listeners on the channel just look for work again).
            # (A listener runs only after a wait, which opened the pool.)
            with contextlib.suppress(psycopg.Error), self._pool.connection() as conn:
                conn.execute("SELECT pg_notify(%s, '')", (self.names.channel,))
            listener.join(timeout=5.0)
        if opened:
            self._pool.close()


def _broken(conn: Any) -> bool:
    """Return whether *conn* (``None``: none was checked out) can no longer be used."""
    return conn is not None and bool(conn.broken or conn.closed)
