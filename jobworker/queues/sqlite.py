"""SQLiteQueue: the durable embedded backend, on the standard library's sqlite3.

Several threads and several processes may share one database file. Every
write is one statement or one short ``BEGIN IMMEDIATE`` transaction, so it
takes the write lock before it reads: a claim is one ``UPDATE`` that selects
the best ready job through an index and marks it running, so a job goes to
exactly one worker. The journal is WAL, so readers never wait for the writer.

Each thread uses its own connection, opened on first use and closed when the
thread ends or the queue closes.

Waiting for the write lock: SQLite's own busy handler sleeps between tries,
longer and longer (up to 100 ms a sleep), so a connection that waits behind
a busy writer often sleeps through the moment the lock is free, and web
processes that write all the time win every race. The queue's connections
have no busy handler: a write that finds the lock taken is tried again
after a short pause that grows from 0.1 ms to 1 ms, until ``busy_timeout``.
Only a statement that took no lock is tried again (``SQLITE_BUSY`` comes
before any change), and every statement sent outside ``BEGIN IMMEDIATE`` is
one statement on its own, so nothing runs twice.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

from ..errors import BackendError, QueueClosedError
from ..model import AnyJob, JobId, P, PendingJob
from ._rows import COLUMNS, N_COLUMNS, values_of
from ._sql import SQLQueue, Tx
from ._sqlite_schema import SCHEMA_VERSION, check_schema, migrate

__all__ = ["SQLiteQueue"]

T = TypeVar("T")

Synchronous = Literal["NORMAL", "FULL"]


class SQLiteQueue(SQLQueue):
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

    ARRIVAL = "rowid"
    KEY = "rowid"
    # Values of the wrong storage class never equal a parameter, but these
    # two columns are not compared: check them as row_to_job would.
    WELL_TYPED = "AND typeof(params) = 'text' AND typeof(progress) IN ('null', 'text')"
    # The queue's clock, read again by the statement once it holds the write
    # lock (it may have waited up to busy_timeout for it).
    NOW = "max(?, jobworker_now())"
    # A job's concurrency key: its params field (a JSON path) as text; '' if
    # missing, null, or the params are not JSON (as throttling.key_of).
    KEY_SQL = (
        "CASE WHEN json_valid(params) "
        "THEN COALESCE(CAST(json_extract(params, ?) AS TEXT), '') ELSE '' END"
    )

    def _key_arg(self, field: str) -> str:
        return '$."' + field + '"'

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(
            table="jobworker_jobs", controls="jobworker_controls", placeholder="?", **options
        )
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be >= 0, got {busy_timeout!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        # One connection per thread that used the queue; it closes when the
        # thread ends (its holder is collected) or at the thread's first call
        # after close().
        self._local = threading.local()
        # Whether every new connection finds the file in WAL mode: None until
        # the file is known to be a jobworker database (nothing is switched
        # before), then False until a connection manages the switch.
        self._wal: bool | None = None
        _create_private(self.path)
        try:
            self._open()
        except BaseException:
            # A refused file is not held open (nor its directory's mount busy).
            self.close()
            raise

    def _open(self) -> None:
        """Check the file is a jobworker database (or empty), migrate it, then switch it to WAL.

        Everything up to the migration only reads, so a file that is refused
        is left exactly as it was, its journal mode included.
        """
        _check_header(self.path)
        conn = self._conn()
        try:
            found = self._patiently(lambda: check_schema(conn))
        except BackendError as exc:
            raise BackendError(f"cannot use {self.path!r}: {exc}") from exc
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open {self.path!r} as an SQLite database: {exc}") from exc
        if found != SCHEMA_VERSION:
            self._write(migrate)
        self._wal = False
        self._use_wal(conn)
        if self._wal:
            # A read in WAL mode makes the -wal and -shm files now (with the
            # database's mode), not at the first job.
            self._patiently(lambda: conn.execute("SELECT count(*) FROM jobworker_meta").fetchone())

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL mode unless that means waiting; then it is tried again later.

        The switch needs the whole file to itself. Inside the caller's open
        transaction on the file (Django's ``transaction.atomic()``, say),
        waiting for it could only time out: the queue works in the rollback
        journal mode until a later connection can switch. SQLite keeps the
        mode in the file, so the switch is done once.
        """
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                # Without waiting: the connection has no busy handler.
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise self._error("cannot switch to the WAL journal", exc) from exc
            return  # busy: another connection holds a transaction; try again later
        except sqlite3.Error as exc:
            raise self._error("cannot switch to the WAL journal", exc) from exc
        if mode != "wal":
            raise BackendError(f"{self.path!r} cannot use the WAL journal (got {mode!r})")
        self._wal = True

    def __repr__(self) -> str:
        return f"<SQLiteQueue {self.path!r}>"

    def _conn(self) -> sqlite3.Connection:
        holder: _Holder | None = getattr(self._local, "holder", None)
        if self._is_closed():
            # Each thread closes its own connection: closing one that another
            # thread is using can crash the sqlite3 module.
            if holder is not None:
                holder.conn.close()
            raise QueueClosedError("the queue is closed")
        if holder is not None and holder.pid == os.getpid():
            return holder.conn
        # First use in this thread, or in a forked child: SQLite connections
        # must not cross a fork, so the child opens its own.
        try:
            # No busy handler: the queue waits for locks itself (see _patiently).
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open {self.path!r}: {exc}") from exc
        # Not deterministic: read at each call, inside the statement.
        conn.create_function("jobworker_now", 0, self._now_us)
        try:
            self._patiently(lambda: conn.execute(f"PRAGMA synchronous = {self.synchronous}"))
        except sqlite3.DatabaseError as exc:
            conn.close()
            if self._closed:  # closed while this waited for a lock
                raise QueueClosedError("the queue is closed") from None
            raise BackendError(f"cannot open {self.path!r} as an SQLite database: {exc}") from exc
        if self._wal is False:
            try:
                self._use_wal(conn)
            except BaseException:
                conn.close()
                raise
        holder = _Holder(conn)
        self._local.holder = holder
        return conn

    def _error(self, what: str, exc: sqlite3.Error) -> Exception:
        if self._closed:
            return QueueClosedError("the queue is closed")
        return BackendError(f"{what} on {self.path!r}: {exc}")

    def _patiently(self, attempt: Callable[[], T]) -> T:
        """Run *attempt*, again after a short pause while it finds the database locked.

        Pauses grow from ``_FIRST_PAUSE`` to ``_LONGEST_PAUSE``; after
        ``busy_timeout`` seconds the last busy error is raised.
        """
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        deadline = time.monotonic() + self.busy_timeout
        pause = _FIRST_PAUSE
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._closed:
                return attempt()  # the last try: its busy error is the caller's
            time.sleep(min(pause, left))
            pause = min(pause * 2, _LONGEST_PAUSE)
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise

    def _write(self, body: Callable[[Tx], T]) -> T:
        conn = self._conn()
        try:
            self._patiently(lambda: conn.execute("BEGIN IMMEDIATE"))
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

    def _autocommit(self, body: Callable[[Tx], T], what: str = "write") -> T:
        # Outside BEGIN IMMEDIATE, a writing statement still takes the write
        # lock (waiting up to busy_timeout) before it reads: it cannot fail
        # with a stale snapshot, and it commits when it completes.
        conn = self._conn()
        try:
            return self._patiently(lambda: body(conn))
        except sqlite3.Error as exc:
            raise self._error(f"{what} failed", exc) from exc

    def _insert(self, tx: Tx, stored: PendingJob[str]) -> None:
        marks = ", ".join("?" * (N_COLUMNS + 1))
        # ON CONFLICT DO NOTHING: a taken id or unique key leaves the caller's
        # transaction usable; _conflict then says which was taken.
        sql = f"""INSERT INTO jobworker_jobs ({COLUMNS}, lease_until_us) VALUES ({marks})
            ON CONFLICT DO NOTHING"""
        while not tx.execute(sql, (*values_of(stored), None)).rowcount:
            error = self._conflict(tx, stored)
            if error is not None:
                raise error

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    # -- transactional enqueue ----------------------------------------------------------------

    def create_job(self, job: PendingJob[P], *, connection: Any = None) -> PendingJob[P]:
        """Store a new pending job; with *connection*, inside the caller's transaction.

        With ``connection`` (an :class:`sqlite3.Connection` to this queue's
        file, in a transaction or about to open one implicitly, as Django's
        ``transaction.atomic()`` leaves it), the job exists if and only if that
        transaction commits. The insert takes the database's write lock until
        the caller commits. Idle workers see the job within their
        ``poll_interval``, or at once if the caller calls :meth:`wake` after
        its commit. Otherwise as :meth:`JobQueue.create_job`.
        """
        if connection is None:
            return super().create_job(job)
        self._check_connection(connection, "create_job")
        if _autocommits(connection):
            raise BackendError("create_job(connection=...) needs a connection inside a transaction")
        stored, created = self._encode_new(job)
        try:
            self._insert(connection, stored)
        except sqlite3.Error as exc:
            raise self._error("insert failed", exc) from exc
        return created

    def get_job(self, job_id: JobId | str, *, connection: Any = None) -> AnyJob | None:
        """Return the job with *job_id*; with *connection*, as its transaction sees it.

        With ``connection`` (an :class:`sqlite3.Connection` to this queue's
        file, such as Django's inside ``transaction.atomic()``), the job is
        read through it, so a job that connection created and has not yet
        committed is found. Otherwise as :meth:`JobQueue.get_job`.
        """
        if connection is None:
            return super().get_job(job_id)
        self._check_connection(connection, "get_job")
        try:
            return self._get_in(connection, job_id)
        except sqlite3.Error as exc:
            raise self._error("read failed", exc) from exc

    def _check_connection(self, connection: object, call: str) -> None:
        """Refuse a caller's *connection* that is not an sqlite3 one to this queue's file."""
        if not isinstance(connection, sqlite3.Connection):
            raise TypeError(
                f"connection must be an sqlite3.Connection, got {type(connection).__name__}"
            )
        try:
            rows = connection.execute("PRAGMA database_list").fetchall()
        except sqlite3.Error as exc:
            raise self._error("cannot read the connection's database", exc) from exc
        main = next((row[2] for row in rows if row[1] == "main"), "")
        if not main or not os.path.exists(main) or not os.path.samefile(main, self.path):
            raise BackendError(
                f"{call}(connection=...) got a connection to {main or 'memory'!r}, "
                f"not to this queue's file {self.path!r}"
            )

    def close(self) -> None:
        """Refuse further calls and close this thread's connection.

        Other threads' connections close at their next call or when those
        threads end, never under a thread that may be using one.
        """
        self._mark_closed()
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is not None:
            holder.conn.close()


#: The size of an SQLite file's header: a shorter file is not a database.
_HEADER_SIZE = 100


def _check_header(path: str) -> None:
    """Refuse a file shorter than SQLite's header (but not empty), without writing to it.

    SQLite would take such a file for an empty database and write a new one
    over it. Longer files that are not databases SQLite refuses itself.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(_HEADER_SIZE)
    except OSError as exc:
        raise BackendError(f"cannot read {path!r}: {exc}") from exc
    if 0 < len(header) < _HEADER_SIZE:
        raise BackendError(
            f"cannot open {path!r} as an SQLite database: it holds {len(header)} bytes, "
            f"less than the {_HEADER_SIZE}-byte header of any database"
        )


def _create_private(path: str) -> None:
    """Create the database file *path* with mode 0600 unless it exists.

    Created here so that its mode, not the umask alone, decides; SQLite gives
    the ``-wal`` and ``-shm`` files the mode of the database file. A symlink
    to a missing file is followed to where it points, and the file is made
    there without following any further link (``O_NOFOLLOW``), so no link
    leads the queue into a file someone else made readable.
    """
    target = path
    if os.path.islink(path) and not os.path.exists(path):
        target = os.path.realpath(path)  # a dangling link: where it points
    if os.path.lexists(target):
        return
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(target, flags, 0o600))
    except FileExistsError:
        pass  # another process created it first: that is fine
    except OSError as exc:
        raise BackendError(f"cannot create {path!r}: {exc}") from exc


# The pauses between two tries of a write that found the database locked (seconds).
_FIRST_PAUSE: Final = 0.0001
_LONGEST_PAUSE: Final = 0.001

# SQLITE_BUSY and SQLITE_LOCKED: the C API's codes (sqlite3 names them from Python 3.11).
_BUSY_CODES: Final = (5, 6)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Return whether *exc* says another connection holds a lock on the file."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool(code & 0xFF in _BUSY_CODES)
    return "locked" in str(exc) or "busy" in str(exc)


def _autocommits(conn: sqlite3.Connection) -> bool:
    """Return whether an INSERT on *conn* now would commit at once."""
    if conn.in_transaction:
        return False
    mode = getattr(conn, "autocommit", None)  # Python 3.12+
    if isinstance(mode, bool):
        return mode
    # Legacy transaction control: sqlite3 opens a transaction before an
    # INSERT unless isolation_level is None.
    return conn.isolation_level is None


class _Holder:
    """A thread's connection, closed when the thread's storage is collected."""

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()
        weakref.finalize(self, conn.close)
