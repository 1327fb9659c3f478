"""SQLiteQueue.create_job(connection=...): a job exists if and only if the caller commits."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

import jobworker as jw
from jobworker.testing import run_pending


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[tuple[jw.SQLiteQueue, sqlite3.Connection]]:
    path = tmp_path / "jobs.sqlite3"
    queue = jw.SQLiteQueue(path)
    # Python's default (legacy) transaction control, as Django's atomic() leaves it.
    conn = sqlite3.connect(path, isolation_level="")
    conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
    conn.commit()
    yield queue, conn
    conn.close()
    queue.close()


class Recorder(jw.JobWorker):
    def __init__(self, queue: jw.JobQueue) -> None:
        super().__init__(queue)
        self.ran: list[str] = []

    def get_worker_name(self) -> str:
        return "recorder"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> None:
        self.ran.append(job.metadata.id)


def test_a_rolled_back_transaction_leaves_no_job(
    db: tuple[jw.SQLiteQueue, sqlite3.Connection],
) -> None:
    queue, conn = db
    conn.execute("INSERT INTO orders VALUES ('o1')")
    created = queue.create_job(jw.new_job("ship", {"order": "o1"}, id="j1"), connection=conn)
    assert created.metadata.id == "j1"
    conn.rollback()
    assert queue.get_job("j1") is None
    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)


def test_a_committed_transaction_stores_the_job_and_a_worker_runs_it(
    db: tuple[jw.SQLiteQueue, sqlite3.Connection],
) -> None:
    queue, conn = db
    conn.execute("INSERT INTO orders VALUES ('o2')")
    queue.create_job(jw.new_job("ship", {"order": "o2"}, id="j2"), connection=conn)
    conn.commit()
    queue.wake()
    worker = Recorder(queue)
    assert [o.status for o in run_pending(worker)] == ["complete"]
    assert worker.ran == ["j2"]
    job = queue.get_job("j2")
    assert job is not None and job.status == "complete"


def test_an_autocommit_connection_is_refused_with_nothing_stored(
    db: tuple[jw.SQLiteQueue, sqlite3.Connection], tmp_path: pathlib.Path
) -> None:
    queue, _ = db
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3", isolation_level=None)
    try:
        with pytest.raises(jw.BackendError, match="inside a transaction"):
            queue.create_job(jw.new_job("ship", {}, id="j3"), connection=conn)
    finally:
        conn.close()
    assert queue.get_job("j3") is None


def test_a_connection_to_another_file_is_refused(
    db: tuple[jw.SQLiteQueue, sqlite3.Connection], tmp_path: pathlib.Path
) -> None:
    queue, _ = db
    other = sqlite3.connect(tmp_path / "other.sqlite3", isolation_level="")
    try:
        with pytest.raises(jw.BackendError, match="not to this queue's file"):
            queue.create_job(jw.new_job("ship", {}, id="j4"), connection=other)
        assert other.execute("SELECT name FROM sqlite_master").fetchall() == []
    finally:
        other.close()
    assert queue.get_job("j4") is None


def test_not_a_connection_is_a_type_error(db: tuple[jw.SQLiteQueue, sqlite3.Connection]) -> None:
    queue, _ = db
    with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
        queue.create_job(jw.new_job("ship", {}), connection="jobs.sqlite3")


def test_a_duplicate_id_raises_and_keeps_the_callers_transaction(
    db: tuple[jw.SQLiteQueue, sqlite3.Connection],
) -> None:
    queue, conn = db
    queue.create_job(jw.new_job("ship", {"n": 1}, id="dup"))
    conn.execute("INSERT INTO orders VALUES ('o5')")
    with pytest.raises(jw.DuplicateJobError):
        queue.create_job(jw.new_job("ship", {"n": 2}, id="dup"), connection=conn)
    conn.commit()
    assert conn.execute("SELECT id FROM orders").fetchall() == [("o5",)]
    job = queue.get_job("dup")
    assert job is not None and job.params == {"n": 1}


def test_an_explicit_begin_on_an_autocommit_connection_is_a_transaction(
    db: tuple[jw.SQLiteQueue, sqlite3.Connection], tmp_path: pathlib.Path
) -> None:
    queue, _ = db
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3", isolation_level=None)
    try:
        conn.execute("BEGIN")
        queue.create_job(jw.new_job("ship", {}, id="kept"), connection=conn)
        found = queue.get_job("kept", connection=conn)
        assert found is not None and found.status == "pending"
        assert queue.get_job("kept") is None  # not committed: no other connection sees it
        conn.execute("COMMIT")
    finally:
        conn.close()
    stored = queue.get_job("kept")
    assert stored is not None and stored.status == "pending"
