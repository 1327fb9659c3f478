"""Opening a SQLiteQueue: private files through symlinks, corrupt files left as they were,
no journal switch inside another connection's transaction, stored values too deep to read."""

from __future__ import annotations

import hashlib
import os
import pathlib
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator

import pytest

import jobworker as jw


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def journal_mode(path: pathlib.Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def rollback_journal_database(path: pathlib.Path) -> None:
    """Make *path* a current jobworker database in the rollback journal mode, as after a copy."""
    jw.SQLiteQueue(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()


# -- 1.3: the files are private whatever the path ----------------------------------------------


def test_a_database_created_through_a_dangling_symlink_is_private(
    tmp_path: pathlib.Path, umask_022: None
) -> None:
    target_dir = tmp_path / "data"
    target_dir.mkdir()
    link = tmp_path / "jobs.sqlite3"
    link.symlink_to(target_dir / "jobs.sqlite3")  # dangling: the target does not exist yet
    with jw.SQLiteQueue(link) as queue:
        queue.create_job(jw.new_job("t", {}, id="a"))  # a write: the WAL files exist
        thread = threading.Thread(target=queue.create_job, args=(jw.new_job("t", {}, id="b"),))
        thread.start()
        thread.join(timeout=10)
        assert queue.get_stats()["pending"] == 2
        files = {path.name: mode(path) for path in target_dir.iterdir()}
    assert files == {
        "jobs.sqlite3": 0o600,
        "jobs.sqlite3-wal": 0o600,
        "jobs.sqlite3-shm": 0o600,
    }
    assert link.is_symlink()
    # The queue reads the same file back through the link.
    with jw.SQLiteQueue(link) as queue:
        assert queue.get_stats()["pending"] == 2


# -- 2.5: corrupt files are refused, named, and left exactly as they were ----------------------


def set_version(value: str) -> Callable[[pathlib.Path], None]:
    def make(path: pathlib.Path) -> None:
        rollback_journal_database(path)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "UPDATE jobworker_meta SET value = ? WHERE key = 'schema_version'", (value,)
            )
        conn.close()

    return make


def one_byte(path: pathlib.Path) -> None:
    path.write_bytes(b"x")


def another_programs_meta(path: pathlib.Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE jobworker_meta (name TEXT, setting INTEGER)")
        conn.execute("INSERT INTO jobworker_meta VALUES ('colour', 3)")
    conn.close()


def another_programs_jobs(path: pathlib.Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE jobworker_jobs (job TEXT, done INTEGER)")
        conn.execute("INSERT INTO jobworker_jobs VALUES ('laundry', 0)")
    conn.close()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(set_version("abc"), id="version-abc"),
        pytest.param(set_version("1.5"), id="version-1.5"),
        pytest.param(set_version("-1"), id="version--1"),
        pytest.param(set_version(""), id="version-empty"),
        pytest.param(one_byte, id="one-byte"),
        pytest.param(another_programs_meta, id="another-programs-meta-table"),
        pytest.param(another_programs_jobs, id="another-programs-jobs-table"),
    ],
)
def test_a_corrupt_or_foreign_file_is_refused_and_left_exactly_as_it_was(
    tmp_path: pathlib.Path, make: Callable[[pathlib.Path], None]
) -> None:
    path = tmp_path / "jobs.sqlite3"
    make(path)
    before = sha256(path)
    listing = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(jw.BackendError) as info:
        jw.SQLiteQueue(path)
    assert str(path) in str(info.value)
    assert sha256(path) == before  # the journal mode, in the header, included
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    if path.stat().st_size > 1:
        assert journal_mode(path) == "delete"


def test_another_applications_tables_are_left_alone_beside_the_queues(
    tmp_path: pathlib.Path,
) -> None:
    # The queue may share an application's database (Django's): its tables are kept.
    path = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.close()
    with jw.SQLiteQueue(path) as queue:
        queue.create_job(jw.new_job("t", {}, id="a"))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM customers").fetchall() == [("Ada",)]
    conn.close()
    assert journal_mode(path) == "wal"


# -- 3.4: no journal switch inside another connection's transaction ----------------------------


def test_a_queue_opens_and_enqueues_inside_another_connections_write_transaction(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "jobs.sqlite3"
    rollback_journal_database(path)
    app = sqlite3.connect(path, isolation_level=None)
    app.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    app.execute("BEGIN IMMEDIATE")  # the application's open write transaction
    app.execute("INSERT INTO orders VALUES (1)")
    # busy_timeout=1: were the queue to wait for the write lock, it would fail.
    queue = jw.SQLiteQueue(path, busy_timeout=1.0)
    try:
        created = queue.create_job(jw.new_job("t", {"order": 1}, id="a"), connection=app)
        assert created.params == {"order": 1}
        assert queue.get_job("a") is None  # not committed yet
        app.execute("COMMIT")
        job = queue.get_job("a")
        assert job is not None and job.params == {"order": 1}
        # Once the file is free, the next connection switches it to WAL.
        other = threading.Thread(target=queue.create_job, args=(jw.new_job("t", {}, id="b"),))
        other.start()
        other.join(timeout=10)
        assert queue.get_stats()["pending"] == 2
        assert journal_mode(path) == "wal"
    finally:
        queue.close()
        app.close()


# -- 2.3: a stored value too deep to read is set aside, never left running ---------------------


def test_a_job_stored_too_deep_to_read_is_failed_as_malformed(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    queue = jw.SQLiteQueue(path)
    try:
        for job_id in ("claimed", "listed", "sound"):
            queue.create_job(jw.new_job("t", {}, id=job_id))
        conn = sqlite3.connect(path)
        with conn:  # as another program might write them
            conn.execute(
                "UPDATE jobworker_jobs SET params = ? WHERE id IN ('claimed', 'listed')",
                ("[" * 100_000 + "]" * 100_000,),
            )
        conn.close()
        # Read by list_jobs first: set aside, never a raw RecursionError.
        statuses = {job.metadata.id: job.status for job in queue.list_jobs()}
        assert statuses == {"claimed": "failed", "listed": "failed", "sound": "pending"}
        queue.create_job(jw.new_job("t", {}, id="claimed-later"))
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "UPDATE jobworker_jobs SET params = ? WHERE id = 'claimed-later'",
                ("[" * 100_000 + "]" * 100_000,),
            )
        conn.close()
        # Claimed by a worker: set aside, never left running; the next job is claimed.
        running = queue.poll_next_pending_job(worker="w", timeout=0)
        assert running is not None and running.metadata.id == "sound"
        for job_id in ("claimed", "listed", "claimed-later"):
            job = queue.get_job(job_id)
            assert job is not None and jw.is_failed_job(job)
            assert job.error.startswith("MalformedJob:")
            assert "nests too deeply" in job.error
        assert queue.get_stats() == {
            "pending": 0, "running": 1, "complete": 0, "failed": 3, "cancelled": 0
        }  # fmt: skip
    finally:
        queue.close()
