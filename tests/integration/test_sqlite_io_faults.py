"""SQLiteQueue when the file system or the file fails it: real files, real limits, real locks.

A missing or vanished directory, a directory where the file should be, a
file-size limit (RLIMIT_FSIZE) hit in the middle of a write, a read-only
file system, corrupt pages met after the open, a write lock held past
``busy_timeout`` at ``BEGIN IMMEDIATE``, and a caller's connection that
fails. Each call ends in a typed error naming the file, and the jobs already
stored are left as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.queues.sqlite import _is_busy

JOIN = 10.0


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored(db: pathlib.Path) -> list[tuple[Any, ...]]:
    """Every row's id, status and params, read outside the queue."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, status, params FROM jobworker_jobs ORDER BY id").fetchall()
    finally:
        conn.close()


def in_thread(call: Any) -> dict[str, Any]:
    """Run *call* in a new thread to its end; its return value or exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(JOIN)
    assert not thread.is_alive()
    return outcome


# -- the file cannot be made or opened -----------------------------------------------------


def test_bad_options_are_refused_before_any_file_is_made(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "never.sqlite"
    with pytest.raises(ValueError, match="synchronous"):
        jw.SQLiteQueue(path, synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        jw.SQLiteQueue(path, busy_timeout=-1)
    with pytest.raises(ValueError, match="busy_timeout"):
        jw.SQLiteQueue(path, busy_timeout=float("nan"))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_is_a_backend_error_and_makes_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "missing" / "jobs.sqlite"
    with pytest.raises(jw.BackendError, match="cannot create") as info:
        jw.SQLiteQueue(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_in_place_of_the_file_is_refused_and_left_alone(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "jobs.sqlite"
    path.mkdir()
    (path / "inside").write_text("kept")
    with pytest.raises(jw.BackendError, match="cannot read") as info:
        jw.SQLiteQueue(path)
    assert isinstance(info.value.__cause__, IsADirectoryError)
    assert [p.name for p in path.iterdir()] == ["inside"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.sqlite"]


def test_a_thread_whose_directory_vanished_gets_a_backend_error(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    queue = jw.SQLiteQueue(folder / "jobs.sqlite")
    try:
        queue.create_job(jw.new_job("t", {}, id="j"))
        shutil.rmtree(folder)

        # A thread's first call opens its own connection: there is no file to open.
        outcome = in_thread(lambda: queue.get_job("j"))

        error = outcome.get("error")
        assert isinstance(error, jw.BackendError), outcome
        assert "cannot open" in str(error)
        assert isinstance(error.__cause__, sqlite3.OperationalError)
    finally:
        queue.close()


# -- a file-size limit in the middle of a write ---------------------------------------------

# Run in a child process, so the limit binds it alone. SIGXFSZ is ignored,
# so a write past the limit fails with EFBIG instead of killing the process.
FSIZE_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    import jobworker as jw
    from jobworker import model as m

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    queue = jw.SQLiteQueue(sys.argv[1])
    queue.create_job(jw.new_job("t", {"n": 1}, id="small"))
    running = queue.poll_next_pending_job(timeout=0)
    big = "x" * 400_000
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    out = {}
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    for step, call in (
        ("create", lambda: queue.create_job(jw.new_job("t", {"big": big}, id="big"))),
        ("complete", lambda: queue.update_job(
            m.complete(running, big, now=queue.clock.now()), "running", claim=running.claim)),
    ):
        try:
            call()
            out[step] = None
        except jw.BackendError as exc:
            out[step] = [type(exc).__name__, str(exc), type(exc.__cause__).__name__]
    out["small_during"] = queue.get_job("small").status
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    # The limit lifted: the same queue stores both at once.
    queue.create_job(jw.new_job("t", {"big": big}, id="big"))
    done = queue.update_job(
        m.complete(running, "short", now=queue.clock.now()), "running", claim=running.claim)
    out["after"] = [queue.get_job("big").status, done.status]
    queue.close()
    print(json.dumps(out))
    """
)


def test_a_file_size_limit_fails_the_write_whole_and_the_queue_recovers(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "limited.sqlite"
    here = str(pathlib.Path(jw.__file__).resolve().parent.parent)  # the jobworker under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-c", FSIZE_CHILD, str(db)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.strip().splitlines()[-1])

    for step in ("create", "complete"):
        name, message, cause = out[step]
        assert name == "BackendError", out
        assert str(db) in message
        assert cause in ("OperationalError", "DatabaseError"), out
        assert "full" in message or "I/O" in message, message
    assert out["small_during"] == "running"  # the failed completion left the claim
    assert out["after"] == ["pending", "complete"]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT id, status, result FROM jobworker_jobs ORDER BY id").fetchall()
    finally:
        conn.close()
    # Nothing half-written: the big job once, the small one with the short result.
    assert [(row[0], row[1]) for row in rows] == [("big", "pending"), ("small", "complete")]
    assert json.loads(rows[1][2]) == "short"


# -- a read-only file system ----------------------------------------------------------------


@contextlib.contextmanager
def read_only_folder() -> Iterator[pathlib.Path]:
    """A folder whose files cannot be written: a read-only mount as root, else permissions.

    Root ignores file modes, so as root the folder is a small tmpfs mounted
    read-only once filled (yielded writable until the caller remounts it).
    """
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jobworker-ro-"))
    mounted = False
    try:
        if os.geteuid() == 0:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                check=False,
                capture_output=True,
            )
            if done.returncode != 0:
                pytest.skip(f"root without the right to mount a tmpfs: {done.stderr!r}")
            mounted = True
        yield folder
    finally:
        if mounted:
            # Lazily if busy: a file left open must not leave the mount behind.
            if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(folder)], check=True)
        else:
            for path in (folder, *folder.iterdir()):
                path.chmod(0o700)
        shutil.rmtree(folder)


def make_read_only(folder: pathlib.Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        for path in folder.iterdir():
            path.chmod(0o444)
        folder.chmod(0o555)


def test_a_read_only_file_in_rollback_mode_is_refused_at_the_wal_switch_and_left_alone() -> None:
    with read_only_folder() as folder:
        db = folder / "jobs.sqlite"
        with jw.SQLiteQueue(db) as queue:
            queue.create_job(jw.new_job("t", {"n": 1}, id="j"))
        # Back to the rollback journal, so the next open must switch to WAL again.
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
        conn.close()
        before = sha256(db)
        names = sorted(p.name for p in folder.iterdir())
        make_read_only(folder)

        with pytest.raises(jw.BackendError, match="WAL") as info:
            jw.SQLiteQueue(db)

        assert str(db) in str(info.value)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        # The refused queue closed its connection: nothing holds the file open.
        del info
        assert not open_in_this_process(db)
        assert sha256(db) == before
        assert sorted(p.name for p in folder.iterdir()) == names
        assert stored(db) == [("j", "pending", '{"n":1}')]


def open_in_this_process(path: pathlib.Path) -> bool:
    """Whether this process holds *path* open (Linux: its descriptors)."""
    fds = pathlib.Path("/proc/self/fd")
    if not fds.is_dir():
        return False
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                return True
    return False


# -- corrupt pages met after the open -------------------------------------------------------


def test_corrupt_pages_met_by_a_read_are_a_backend_error_and_writes_nothing(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "corrupt.sqlite"
    with jw.SQLiteQueue(db) as queue:
        for i in range(300):
            queue.create_job(jw.new_job("t", {"i": i, "pad": "x" * 300}, id=f"job-{i:03}"))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    queue = jw.SQLiteQueue(db)  # opens: the schema and meta pages are sound
    try:
        # Zero the second half of the file's pages: the jobs' leaves.
        with open(db, "r+b") as f:
            f.seek(page * (pages // 2))
            f.write(b"\xff" * page * (pages - pages // 2))
        before = sha256(db)

        with pytest.raises(jw.BackendError) as info:
            queue.list_jobs()

        assert "malformed" in str(info.value)
        assert str(db) in str(info.value)
        assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
        assert sha256(db) == before
    finally:
        queue.close()


def test_a_corrupt_meta_page_is_refused_at_open_and_left_untouched(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "meta.sqlite"
    with jw.SQLiteQueue(db) as queue:
        queue.create_job(jw.new_job("t", {}, id="j"))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'jobworker_meta'"
    ).fetchone()
    conn.close()
    with open(db, "r+b") as f:  # the schema page is sound; the meta table's page is not
        f.seek(page * (root - 1))
        f.write(b"\xff" * page)
    before = sha256(db)

    with pytest.raises(jw.BackendError, match="as an SQLite database") as info:
        jw.SQLiteQueue(db)

    assert "malformed" in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert sha256(db) == before


# -- BEGIN IMMEDIATE under a lock held past busy_timeout ------------------------------------


class TracedQueue(jw.SQLiteQueue):
    """Sets ``beginning`` when one of its connections sends BEGIN IMMEDIATE."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.beginning = threading.Event()
        super().__init__(*args, **kw)

    def _conn(self) -> sqlite3.Connection:
        conn = super()._conn()
        conn.set_trace_callback(self._trace)
        return conn

    def _trace(self, statement: str) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            self.beginning.set()


@pytest.fixture
def locked(tmp_path: pathlib.Path) -> Iterator[tuple[TracedQueue, sqlite3.Connection]]:
    """A queue with a job 'j', and a connection of the test's own to hold the write lock."""
    db = tmp_path / "locked.sqlite"
    queue = TracedQueue(db, busy_timeout=0.5)
    queue.create_job(jw.new_job("t", {"n": 1}, id="j"))
    queue.beginning.clear()  # set by the migration of the new file
    lock = sqlite3.connect(db, isolation_level=None)
    yield queue, lock
    if lock.in_transaction:
        lock.execute("ROLLBACK")
    lock.close()
    queue.close()


def test_begin_immediate_under_a_held_lock_is_a_backend_error_and_changes_nothing(
    locked: tuple[TracedQueue, sqlite3.Connection],
) -> None:
    queue, lock = locked
    lock.execute("BEGIN IMMEDIATE")

    with pytest.raises(jw.BackendError, match="cannot start a write") as info:
        queue.cancel_job("j")

    assert "locked" in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert lock.execute("SELECT status FROM jobworker_jobs").fetchall() == [("pending",)]
    lock.execute("ROLLBACK")
    assert queue.cancel_job("j") is True
    job = queue.get_job("j")
    assert job is not None and job.status == "cancelled"


def test_a_write_failing_after_close_is_queue_closed_error(
    locked: tuple[TracedQueue, sqlite3.Connection],
) -> None:
    queue, lock = locked
    lock.execute("BEGIN IMMEDIATE")
    outcome: dict[str, Any] = {}

    def cancel() -> None:
        try:
            outcome["value"] = queue.cancel_job("j")
        except BaseException as exc:  # handed to the test, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=cancel)
    thread.start()
    assert queue.beginning.wait(JOIN)  # the thread waits for the lock, inside its call
    queue.close()
    thread.join(JOIN)

    assert not thread.is_alive()
    error = outcome.get("error")
    assert isinstance(error, jw.QueueClosedError), outcome
    assert isinstance(error.__cause__, sqlite3.OperationalError)
    assert lock.execute("SELECT status FROM jobworker_jobs").fetchall() == [("pending",)]


@pytest.mark.parametrize(
    ("message", "busy"),
    [
        ("database is locked", True),
        ("database table is locked", True),
        ("database is busy", True),
        ("disk I/O error", False),
    ],
)
def test_busy_is_told_from_the_message_where_sqlite3_gives_no_code(
    message: str, busy: bool
) -> None:
    # Python 3.10's sqlite3 sets no sqlite_errorcode: the message decides there.
    exc = sqlite3.OperationalError(message)
    assert getattr(exc, "sqlite_errorcode", None) is None
    assert _is_busy(exc) is busy


# -- a caller's connection that fails -------------------------------------------------------


def deny_jobs(action: int, table: str | None, *_: Any) -> int:
    """An SQLite authorizer that refuses every read and write of the jobs table."""
    if table == "jobworker_jobs" and action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_INSERT):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def test_a_callers_connection_that_fails_is_a_backend_error_and_stores_nothing(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "caller.sqlite"
    with jw.SQLiteQueue(db) as queue:
        queue.create_job(jw.new_job("t", {"n": 1}, id="j"))
        before = stored(db)

        closed = sqlite3.connect(db)
        closed.close()
        with pytest.raises(jw.BackendError, match="cannot read the connection"):
            queue.get_job("j", connection=closed)

        denied = sqlite3.connect(db)
        denied.set_authorizer(deny_jobs)
        try:
            with pytest.raises(jw.BackendError, match="read failed") as info:
                queue.get_job("j", connection=denied)
            assert "prohibited" in str(info.value)
            denied.execute("BEGIN")
            with pytest.raises(jw.BackendError, match="insert failed"):
                queue.create_job(jw.new_job("t", {}, id="k"), connection=denied)
            denied.execute("ROLLBACK")
        finally:
            denied.close()

        # Another connection holds the write lock past the caller's timeout.
        lock = sqlite3.connect(db, isolation_level=None)
        caller = sqlite3.connect(db, timeout=0.2)
        try:
            lock.execute("BEGIN IMMEDIATE")
            caller.execute("SELECT 1")
            with pytest.raises(jw.BackendError, match="insert failed") as info:
                queue.create_job(jw.new_job("t", {}, id="k"), connection=caller)
            assert "locked" in str(info.value)
            caller.rollback()
            lock.execute("ROLLBACK")
        finally:
            caller.close()
            lock.close()

        assert stored(db) == before
        found = queue.get_job("j")
        assert isinstance(found, m.PendingJob) and found.params == {"n": 1}
