"""SQLiteQueue: the durable embedded backend, on the standard library's sqlite3.

Several threads and several processes may share one database file. Every
write is one short ``BEGIN IMMEDIATE`` transaction: a claim reads the best
ready job through an index and marks it running in the same transaction, so
a job goes to exactly one worker. The journal is WAL, so readers never wait
for the writer.

Threads: each thread uses its own connection (opened on first use, closed by
:meth:`SQLiteQueue.close`). ``_cond`` guards ``_generation`` and ``_closed``;
no database call is made with it held.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import partial
from typing import Any, Final, Literal, TypeVar, cast

from ..errors import (
    BackendError,
    DuplicateJobError,
    InvalidJobError,
    JobNotFoundError,
    QueueClosedError,
    WaitTimeoutError,
)
from ..model import (
    STATUSES,
    WORKER_LOST,
    AnyJob,
    JobId,
    PendingJob,
    RunningJob,
    apply_update,
    cancel,
    fail_or_retry,
    new_claim,
    start,
)
from ._sqlite_rows import (
    COLUMNS,
    MUTABLE,
    N_COLUMNS,
    from_us,
    mutable_values,
    row_to_job,
    sanitize_row,
    to_us,
    values_of,
)
from ._sqlite_schema import migrate
from .base import JobPredicate, JobQueue

__all__ = ["SQLiteQueue"]

P = TypeVar("P")
T = TypeVar("T")

Synchronous = Literal["NORMAL", "FULL"]

_SELECT: Final = f"SELECT {COLUMNS}, rowid FROM jobworker_jobs"
_READY: Final = "status = 'pending' AND (run_after_us IS NULL OR run_after_us <= ?)"
_ORDER: Final = "ORDER BY priority DESC, created_us, rowid"
_PAGE: Final = 16
_ALL_MARKS: Final = ", ".join("?" * (N_COLUMNS + 1))
_MUTABLE_MARKS: Final = ", ".join("?" * (MUTABLE.count(",") + 2))
# Longest wait between two looks at the database for changes made by other
# processes, in wait_for_job (a poll waits up to its own timeout).
_MAX_WAIT_STEP: Final = 0.1


class SQLiteQueue(JobQueue):
    """A durable queue in one SQLite file, shared by threads and processes.

    :param path: the database file; created (mode 0600) if missing. A file
        that is not an SQLite database is refused with :class:`BackendError`
        and left untouched.
    :param synchronous: ``"NORMAL"`` (the default) loses no committed job when
        the process crashes, but may lose the last transactions on power loss
        or an OS crash; ``"FULL"`` syncs every commit and loses none.
    :param busy_timeout: seconds a write waits for another writer before it
        fails with :class:`BackendError`.

    Also takes the keyword arguments of :class:`JobQueue`. Idle workers in this
    process wake the moment a job is created here; jobs created by another
    process are seen within the worker's ``poll_interval``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be >= 0, got {busy_timeout!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        # One per thread that used the queue; a thread's connection closes
        # when the thread ends (its holder is collected) or at close().
        self._holders: weakref.WeakSet[_Holder] = weakref.WeakSet()  # guarded by _cond
        self._cond = threading.Condition()
        self._generation = 0  # guarded by _cond: bumped when a job becomes ready here
        self._closed = False  # guarded by _cond
        if not os.path.exists(self.path):
            # Created here so that its mode, not the umask alone, decides; SQLite
            # gives the -wal and -shm files the mode of the database file.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        self._write(migrate)

    def __repr__(self) -> str:
        return f"<SQLiteQueue {self.path!r}>"

    # -- connections and transactions -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        self._check_open()
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is not None and holder.pid == os.getpid():
            return holder.conn
        # First use in this thread, or in a forked child: SQLite connections
        # must not cross a fork, so the child opens its own.
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open {self.path!r}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise BackendError(f"cannot open {self.path!r} as an SQLite database: {exc}") from exc
        if mode != "wal":
            conn.close()
            raise BackendError(f"{self.path!r} cannot use the WAL journal (got {mode!r})")
        holder = _Holder(conn)
        with self._cond:
            self._holders.add(holder)
        try:
            self._check_open()  # close() may have run meanwhile
        except QueueClosedError:
            conn.close()
            raise
        self._local.holder = holder
        return conn

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run *body* in one ``BEGIN IMMEDIATE`` transaction; commit, or roll back on error."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error("cannot start a write", exc) from exc
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                # A failed rollback must not hide the error that caused it.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error("write failed", exc) from exc
            raise
        return result

    def _check_open(self) -> None:
        # A plain read of a bool that is set once and never cleared.
        if self._closed:
            raise QueueClosedError("the queue is closed")

    def _error(self, what: str, exc: sqlite3.Error) -> Exception:
        if self._closed:
            return QueueClosedError("the queue is closed")
        return BackendError(f"{what} on {self.path!r}: {exc}")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error("read failed", exc) from exc

    def _now_us(self) -> int:
        return to_us(self.clock.now())

    def _notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    # -- rows -------------------------------------------------------------------------------

    def _store(self, conn: sqlite3.Connection, job: AnyJob, lease_until: int | None) -> None:
        conn.execute(
            f"UPDATE jobworker_jobs SET ({MUTABLE}, lease_until_us) = ({_MUTABLE_MARKS}) "
            "WHERE id = ?",
            (*mutable_values(job), lease_until, job.metadata.id),
        )

    def _set_aside(self, conn: sqlite3.Connection, row: Any, reason: str, **kw: Any) -> AnyJob:
        """Turn a malformed row into a failed job that says why; return it."""
        fixed = sanitize_row(row, reason, self._now_us(), **kw)
        conn.execute(
            f"UPDATE jobworker_jobs SET ({COLUMNS}, lease_until_us) = ({_ALL_MARKS}) WHERE id = ?",
            (*fixed, None, row[0]),
        )
        return row_to_job(fixed)

    def _load(self, conn: sqlite3.Connection, row: Any) -> AnyJob:
        """Return the stored-form job of *row*; a malformed row is set aside as failed."""
        try:
            return row_to_job(row)
        except (InvalidJobError, ValueError, OverflowError) as exc:
            return self._set_aside(conn, row, f"{type(exc).__name__}: {exc}")

    def _decode_row(self, row: Any) -> AnyJob:
        """Decode a row read outside a transaction, setting it aside if malformed."""
        try:
            return self._decode(row_to_job(row))
        except (InvalidJobError, ValueError, OverflowError):
            return self._decode(self._write(lambda conn: self._reload(conn, row[0])))

    def _reload(self, conn: sqlite3.Connection, job_id: str) -> AnyJob:
        """Read a job in a write transaction and set it aside unless it decodes."""
        row = conn.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        job = self._load(conn, row)
        try:
            self._decode(job)
        except (InvalidJobError, ValueError) as exc:
            # Values that are not JSON, or no longer fit their registered classes.
            job = self._set_aside(conn, row, f"{type(exc).__name__}: {exc}", keep_params=False)
        return job

    def _recover(self, conn: sqlite3.Connection, now: int) -> None:
        """Recover every job whose lease expired, as a failed attempt."""
        rows = conn.execute(
            f"{_SELECT} WHERE status = 'running' AND lease_until_us <= ?", (now,)
        ).fetchall()
        for row in rows:
            job = self._load(conn, row)
            if isinstance(job, RunningJob):
                delay = self._recovery_delay(job)
                self._store(
                    conn, fail_or_retry(job, WORKER_LOST, now=from_us(now), delay=delay), None
                )

    def _recover_if_due(self) -> None:
        """Recover expired leases, if any; a cheap indexed read when there are none."""
        now = self._now_us()
        if self._read(
            "SELECT 1 FROM jobworker_jobs WHERE status = 'running' AND lease_until_us <= ? LIMIT 1",
            (now,),
        ):
            self._write(lambda conn: self._recover(conn, self._now_us()))
            self._notify()

    # -- the contract ------------------------------------------------------------------------

    def create_job(self, job: PendingJob[P]) -> PendingJob[P]:
        stored = self._encode_new(job)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO jobworker_jobs ({COLUMNS}, lease_until_us) VALUES ({_ALL_MARKS})",
                    (*values_of(stored), None),
                )
            except sqlite3.IntegrityError:
                raise DuplicateJobError(stored.metadata.id) from None

        self._write(insert)
        self._notify()
        return cast("PendingJob[P]", self._decode(stored))

    def get_job(self, job_id: JobId | str) -> AnyJob | None:
        self._recover_if_due()
        rows = self._read(f"{_SELECT} WHERE id = ?", (job_id,))
        return self._decode_row(rows[0]) if rows else None

    def update_job(
        self, job: AnyJob, old_status: str | None = None, *, claim: Any = None
    ) -> AnyJob:
        submitted = self._encode_update(job)
        expected = submitted.status if old_status is None else old_status
        job_id = submitted.metadata.id

        def update(conn: sqlite3.Connection) -> tuple[AnyJob, int | None]:
            now = self._now_us()
            self._recover(conn, now)
            row = conn.execute(
                f"SELECT {COLUMNS}, lease_until_us FROM jobworker_jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise JobNotFoundError(job_id)
            stored = self._load(conn, row)
            new = apply_update(stored, submitted, expected, now=from_us(now), claim=claim)
            lease = row[-1] if new.status == "running" else None
            self._store(conn, new, lease)
            return new, lease

        new, _ = self._write(update)
        if new.status == "pending":
            self._notify()
        return self._decode(new)

    def poll_next_pending_job(
        self,
        *,
        types: Collection[str] | None = None,
        predicate: JobPredicate | None = None,
        worker: str = "anonymous",
        timeout: float | None = 0.0,
        stop_event: threading.Event | None = None,
    ) -> RunningJob[Any, Any] | None:
        self._check_timeout(timeout)
        wanted = None if types is None else sorted(set(types))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._closed:
                    raise QueueClosedError("the queue is closed")
                generation = self._generation
            if stop_event is not None and stop_event.is_set():
                return None
            if predicate is None:
                claimed = self._write(lambda conn: self._claim_best(conn, wanted, worker))
            else:
                claimed = self._claim_accepted(wanted, predicate, worker)
            if claimed is not None:
                try:
                    return self._decode(claimed)
                except (InvalidJobError, ValueError):
                    # Values that do not decode: set the job aside, look for another.
                    self._write(partial(self._reload, job_id=claimed.metadata.id))
                    continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            wake_in = self._next_wake()
            if wake_in is not None and (remaining is None or wake_in < remaining):
                remaining = wake_in
            with self._cond:
                # A job made ready here since we looked bumps the generation:
                # then look again at once instead of sleeping.
                if self._generation == generation and not self._closed:
                    self._cond.wait(remaining)

    def _ready_rows(
        self, conn: sqlite3.Connection, job_type: str | None, now: int, after: Any, limit: int
    ) -> list[Any]:
        where = _READY if job_type is None else f"type = ? AND {_READY}"
        args: list[Any] = [] if job_type is None else [job_type]
        args.append(now)
        if after is not None:
            # Keyset paging in (priority DESC, created_us, rowid) order.
            where += " AND (priority < ? OR (priority = ? AND (created_us, rowid) > (?, ?)))"
            args += [after[0], after[0], after[1], after[2]]
        return conn.execute(f"{_SELECT} WHERE {where} {_ORDER} LIMIT ?", (*args, limit)).fetchall()

    def _claim_row(self, conn: sqlite3.Connection, row: Any, worker: str, now: int) -> AnyJob:
        job = self._load(conn, row)
        if not isinstance(job, PendingJob):
            return job  # set aside as failed
        running = start(job, claim=new_claim(worker), now=from_us(now))
        self._store(conn, running, now + round(self.lease_duration * 1_000_000))
        return running

    def _claim_best(
        self, conn: sqlite3.Connection, wanted: list[str] | None, worker: str
    ) -> RunningJob[Any, Any] | None:
        now = self._now_us()
        self._recover(conn, now)
        while True:
            heads = [
                row
                for job_type in (wanted if wanted is not None else [None])
                for row in self._ready_rows(conn, job_type, now, None, 1)
            ]
            if not heads:
                return None
            best = min(heads, key=_order_key)
            claimed = self._claim_row(conn, best, worker, now)
            if isinstance(claimed, RunningJob):
                return claimed

    def _claim_accepted(
        self, wanted: list[str] | None, predicate: JobPredicate, worker: str
    ) -> RunningJob[Any, Any] | None:
        """Walk ready jobs in order; claim the first that *predicate* accepts.

        The predicate is user code: it runs outside any transaction, and the
        claim re-checks that the job is still pending and due.
        """
        self._recover_if_due()
        now = self._now_us()
        conn = self._conn()
        streams = [self._stream(conn, t, now) for t in (wanted if wanted else [None])]
        for row in heapq.merge(*streams, key=_order_key):
            job = self._decode_row(row)
            if not isinstance(job, PendingJob) or not predicate(job):
                continue

            def claim(conn: sqlite3.Connection, row: Any = row) -> RunningJob[Any, Any] | None:
                now = self._now_us()
                fresh = conn.execute(
                    f"{_SELECT} WHERE id = ? AND {_READY}", (row[0], now)
                ).fetchone()
                if fresh is None:
                    return None
                claimed = self._claim_row(conn, fresh, worker, now)
                return claimed if isinstance(claimed, RunningJob) else None

            claimed = self._write(claim)
            if claimed is not None:
                return claimed
        return None

    def _stream(self, conn: sqlite3.Connection, job_type: str | None, now: int) -> Iterator[Any]:
        after = None
        while True:
            try:
                rows = self._ready_rows(conn, job_type, now, after, _PAGE)
            except sqlite3.Error as exc:
                raise self._error("read failed", exc) from exc
            yield from rows
            if len(rows) < _PAGE:
                return
            after = _order_key(rows[-1])
            after = (-after[0], after[1], after[2])

    def _next_wake(self) -> float | None:
        """Seconds until a scheduled job falls due or a lease expires, if any."""
        now = self._now_us()
        row = self._read(
            """SELECT min(t) FROM (
                SELECT min(run_after_us) AS t FROM jobworker_jobs
                WHERE status = 'pending' AND run_after_us > ?
                UNION ALL
                SELECT min(lease_until_us) FROM jobworker_jobs WHERE status = 'running')""",
            (now,),
        )[0]
        return None if row[0] is None else max(0.0, (row[0] - now) / 1_000_000)

    def renew_lease(self, job: RunningJob[Any, Any]) -> bool:
        def renew(conn: sqlite3.Connection) -> bool:
            now = self._now_us()
            self._recover(conn, now)
            cursor = conn.execute(
                """UPDATE jobworker_jobs SET lease_until_us = ?
                WHERE id = ? AND status = 'running' AND claim_token = ?""",
                (now + round(self.lease_duration * 1_000_000), job.metadata.id, job.claim.token),
            )
            return cursor.rowcount == 1

        return self._write(renew)

    def list_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AnyJob]:
        self._check_list_args(status, limit, offset)
        self._recover_if_due()
        where, args = ["1"], []
        for column, value in (("status", status), ("type", type), ("user_id", user_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        rows = self._read(
            f"{_SELECT} WHERE {' AND '.join(where)} "
            "ORDER BY created_us DESC, rowid DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [self._decode_row(row) for row in rows]

    def cancel_job(self, job_id: JobId | str) -> bool:
        def cancel_row(conn: sqlite3.Connection) -> bool:
            now = self._now_us()
            self._recover(conn, now)
            row = conn.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            job = self._load(conn, row)
            if not isinstance(job, (PendingJob, RunningJob)):
                return False
            self._store(conn, cancel(job, now=from_us(now)), None)
            return True

        done = self._write(cancel_row)
        if done:
            self._notify()
        return done

    def cleanup_old_jobs(self, retention_hours: float = 24) -> int:
        if not retention_hours >= 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours!r}")
        cutoff = self._now_us() - round(retention_hours * 3_600_000_000)

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(
                """DELETE FROM jobworker_jobs WHERE status IN ('complete', 'failed', 'cancelled')
                AND completed_us < ?""",
                (cutoff,),
            ).rowcount

        return self._write(delete)

    def get_stats(self) -> dict[str, int]:
        self._recover_if_due()
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, count in self._read(
            "SELECT status, count(*) FROM jobworker_jobs GROUP BY status"
        ):
            if status in counts:
                counts[status] = count
        return counts

    def wait_for_job(self, job_id: JobId | str, *, timeout: float | None = None) -> AnyJob:
        self._check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        step = 0.001
        while True:
            with self._cond:
                if self._closed:
                    raise QueueClosedError("the queue is closed")
                generation = self._generation
            job = self.get_job(job_id)
            if job is None:
                raise JobNotFoundError(job_id)
            if job.status not in ("pending", "running"):
                return job
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(job_id, timeout or 0.0)
            # Changes made by other processes send no signal: look again after
            # a step that grows to _MAX_WAIT_STEP; changes made here wake us.
            step = min(step * 2, _MAX_WAIT_STEP)
            wait = step if remaining is None else min(step, remaining)
            with self._cond:
                if self._generation == generation and not self._closed:
                    self._cond.wait(wait)

    def wake(self) -> None:
        self._notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            holders = list(self._holders)
        for holder in holders:
            holder.conn.close()


def _order_key(row: Any) -> tuple[int, int, int]:
    """Claim order of a row: priority (higher first), created, then arrival (rowid).

    A malformed value sorts as 0 here; claiming the row sets it aside.
    """
    priority, created = row[4], row[5]
    return (
        -priority if isinstance(priority, int) else 0,
        created if isinstance(created, int) else 0,
        row[-1],
    )


class _Holder:
    """A thread's connection; closing it when the thread's storage is collected."""

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()
        weakref.finalize(self, conn.close)
