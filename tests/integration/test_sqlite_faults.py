"""SQLiteQueue against bad data and a failing database: real files, real threads.

Malformed rows, files that are not (or no longer) jobworker databases, a
lock held by another connection, a full disk, a schema from the future.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pathlib
import sqlite3
import threading
import time
from typing import Any

import pytest

import jobworker as jw

# -- malformed rows -------------------------------------------------------------------------

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def us(value: dt.datetime) -> int:
    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def insert_raw(conn: sqlite3.Connection, job_id: str, created: int, **columns: Any) -> None:
    """Write a row straight into jobworker_jobs: a valid pending job unless *columns* say not."""
    row: dict[str, Any] = {
        "id": job_id,
        "type": "t",
        "user_id": "",
        "status": "pending",
        "priority": 0,
        "created_us": created,
        "retry_count": 0,
        "max_retries": 3,
        "params": '{"n": 0}',
    }
    row.update(columns)
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    conn.execute(f"INSERT INTO jobworker_jobs ({names}) VALUES ({marks})", tuple(row.values()))


# id -> (columns that make the row malformed, what the recorded reason must name)
MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "bad-json": ({"params": "{not json"}, "{not json"),
    "bad-status": ({"status": "paused"}, "paused"),
    "bad-counts": ({"retry_count": 5, "max_retries": 2}, "retry_count"),
    "bad-integer": ({"priority": "high"}, "priority"),
}
# The rows a claim meets: the malformed rows still 'pending'.
CLAIMABLE = {"bad-json", "bad-counts", "bad-integer"}


class DoublingWorker(jw.JobWorker):
    def get_worker_name(self) -> str:
        return "doubling"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        return job.params["n"] * 2


def raw_rows(db: pathlib.Path) -> dict[str, tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, status, error, params FROM jobworker_jobs").fetchall()
    finally:
        conn.close()
    return {row[0]: row[1:] for row in rows}


@pytest.mark.parametrize("met_by", ["get_job", "list_jobs", "claim"])
def test_malformed_rows_are_set_aside_and_good_jobs_keep_flowing(
    tmp_path: pathlib.Path, met_by: str
) -> None:
    db = tmp_path / "malformed.sqlite"
    queue = jw.SQLiteQueue(db)
    # Good jobs created around the malformed rows: before, between, after.
    good = [f"good-{i}" for i in range(len(MALFORMED) + 1)]
    created = [BASE + dt.timedelta(seconds=2 * i) for i in range(len(good))]
    for job_id, at in zip(good, created, strict=True):
        n = int(job_id[-1])
        queue.create_job(jw.new_job("t", {"n": n}, id=job_id, created=at))
    conn = sqlite3.connect(db)
    for i, (job_id, (columns, _)) in enumerate(MALFORMED.items()):
        insert_raw(conn, job_id, us(created[i]) + 1_000_000, **columns)
    conn.commit()
    conn.close()

    worker = DoublingWorker(queue, poll_interval=0.1, error_backoff=0.05)
    thread: threading.Thread | None = None
    try:
        if met_by == "get_job":
            met = {job_id: queue.get_job(job_id) for job_id in MALFORMED}
        elif met_by == "list_jobs":
            listed = queue.list_jobs()
            assert [job.metadata.id for job in listed if job.metadata.id in good] == good[::-1]
            met = {job.metadata.id: job for job in listed if job.metadata.id in MALFORMED}
        # The good jobs complete, whatever the malformed rows around them.
        thread = worker.start_in_thread()
        for job_id in good:
            done = queue.wait_for_job(job_id, timeout=10)
            assert jw.is_complete_job(done), done
            assert done.result == 2 * int(job_id[-1])
        assert worker.stop(timeout=10)
        metrics = worker.get_metrics()
        assert (metrics.processed, metrics.loop_errors) == (len(good), 0)

        if met_by == "claim":
            # Every claimable malformed row was met and set aside in the database;
            # a row in an unknown status is not claimable, so nothing met it.
            stored = raw_rows(db)
            assert {job_id for job_id in MALFORMED if stored[job_id][0] == "failed"} == CLAIMABLE
            assert stored["bad-status"][0] == "paused"
            met = {job_id: queue.get_job(job_id) for job_id in MALFORMED}
        stored = raw_rows(db)
        for job_id, (_, named) in MALFORMED.items():
            job = met[job_id]
            assert isinstance(job, jw.FailedJob), job
            assert job.error.startswith("MalformedJob: "), job.error
            assert named in job.error, job.error
            # Set aside in the database too, never deleted, and read back the same.
            assert stored[job_id][:2] == ("failed", job.error)
            assert queue.get_job(job_id) == job
        assert queue.get_stats() == {
            "pending": 0,
            "running": 0,
            "complete": len(good),
            "failed": len(MALFORMED),
            "cancelled": 0,
        }
        # Params that were not JSON are dropped (they are in the error); JSON params are kept.
        assert met["bad-json"].params is None
        assert "{not json" in met["bad-json"].error
        assert met["bad-counts"].params == {"n": 0}
    finally:
        worker.stop(timeout=10)
        if thread is not None:
            thread.join(timeout=10)
        queue.close()


def test_list_jobs_by_status_leaves_out_rows_it_sets_aside(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "filtered.sqlite"
    with jw.SQLiteQueue(db) as queue:
        queue.create_job(jw.new_job("t", {"n": 1}, id="good", created=BASE))
        conn = sqlite3.connect(db)
        for job_id in CLAIMABLE:  # malformed rows whose status column says 'pending'
            insert_raw(conn, job_id, us(BASE) + 1, **MALFORMED[job_id][0])
        conn.commit()
        conn.close()

        pending = queue.list_jobs(status="pending")

        # Met here and set aside as failed: they no longer match the filter.
        assert [(job.metadata.id, job.status) for job in pending] == [("good", "pending")]
        failed = queue.list_jobs(status="failed")
        assert {job.metadata.id for job in failed} == CLAIMABLE
        assert queue.get_stats()["failed"] == len(CLAIMABLE)


# -- files that are not jobworker databases ------------------------------------------------


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_database(path: pathlib.Path, jobs: int = 200) -> None:
    """A real jobworker database, checkpointed into one file and closed."""
    with jw.SQLiteQueue(path) as queue:
        for i in range(jobs):
            queue.create_job(jw.new_job("t", {"i": i, "pad": "x" * 200}, id=f"job-{i}"))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def random_bytes(path: pathlib.Path) -> None:
    path.write_bytes(os.urandom(16384))


def text_file(path: pathlib.Path) -> None:
    path.write_text("job,status\n" * 500)


def truncated(path: pathlib.Path) -> None:
    make_database(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def header_only(path: pathlib.Path) -> None:
    make_database(path)
    with open(path, "r+b") as f:
        f.truncate(100)


def garbage_first_page(path: pathlib.Path) -> None:
    make_database(path)
    with open(path, "r+b") as f:
        f.seek(100)  # keep the 100-byte header; overwrite the schema page
        f.write(os.urandom(3000))


@pytest.mark.parametrize(
    "make", [random_bytes, text_file, truncated, header_only, garbage_first_page]
)
def test_a_file_that_is_not_a_sound_database_is_refused_and_left_untouched(
    tmp_path: pathlib.Path, make: Any
) -> None:
    path = tmp_path / "jobs.sqlite"
    make(path)
    before = sha256(path)
    listing = sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(jw.BackendError) as info:
        jw.SQLiteQueue(path)

    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert not isinstance(info.value, sqlite3.Error)
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_a_schema_from_a_newer_release_is_refused_and_left_untouched(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "future.sqlite"
    make_database(path, jobs=3)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE jobworker_meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    before = sha256(path)

    with pytest.raises(jw.BackendError, match="999"):
        jw.SQLiteQueue(path)

    assert sha256(path) == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT value FROM jobworker_meta").fetchall() == [("999",)]
        assert conn.execute("SELECT count(*) FROM jobworker_jobs").fetchone() == (3,)
    finally:
        conn.close()


# -- a lock held by another connection ------------------------------------------------------


class ObservedQueue(jw.SQLiteQueue):
    """Counts claims and updates that failed with BackendError, so a test can wait for them."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.failed = {"claim": 0, "update": 0}  # guarded by observed
        self.observed = threading.Condition()

    def _count(self, what: str) -> None:
        with self.observed:
            self.failed[what] += 1
            self.observed.notify_all()

    def wait_for_failures(self, what: str, count: int) -> bool:
        with self.observed:
            return self.observed.wait_for(lambda: self.failed[what] >= count, timeout=10)

    def poll_next_pending_job(self, **kw: Any) -> jw.RunningJob[Any, Any] | None:
        try:
            return super().poll_next_pending_job(**kw)
        except jw.BackendError:
            self._count("claim")
            raise

    def update_job(self, job: jw.AnyJob, old_status: str | None = None, **kw: Any) -> jw.AnyJob:
        try:
            return super().update_job(job, old_status, **kw)
        except jw.BackendError:
            self._count("update")
            raise


def test_a_worker_survives_database_is_locked_and_finishes_once_released(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "locked.sqlite"
    queue = ObservedQueue(db, busy_timeout=0.2)
    ids = [f"job-{i}" for i in range(5)]
    for i, job_id in enumerate(ids):
        queue.create_job(jw.new_job("t", {"n": i}, id=job_id))
    worker = DoublingWorker(queue, poll_interval=0.1, error_backoff=0.05)
    lock = sqlite3.connect(db, isolation_level=None)
    thread: threading.Thread | None = None
    try:
        lock.execute("BEGIN IMMEDIATE")  # the write lock, held past busy_timeout

        began = time.monotonic()
        with pytest.raises(jw.BackendError) as info:
            queue.create_job(jw.new_job("t", {"n": 9}, id="under-lock"))
        waited = time.monotonic() - began
        assert not isinstance(info.value, sqlite3.Error)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert "locked" in str(info.value)
        assert waited >= 0.15  # it waited for busy_timeout first

        thread = worker.start_in_thread()
        # Two failed claims: the first was counted as a loop error before the second.
        assert queue.wait_for_failures("claim", 2)
        metrics = worker.get_metrics()
        assert metrics.loop_errors >= 1
        assert metrics.last_error is not None and "locked" in metrics.last_error
        assert metrics.processed == 0
        assert thread.is_alive()
        # Nothing was claimed or created under the lock.
        rows = lock.execute("SELECT id, status, retry_count FROM jobworker_jobs").fetchall()
        assert sorted(rows) == [(job_id, "pending", 0) for job_id in ids]

        lock.execute("ROLLBACK")
        queue.create_job(jw.new_job("t", {"n": 9}, id="after-lock"))
        for i, job_id in enumerate([*ids, "after-lock"]):
            done = queue.wait_for_job(job_id, timeout=10)
            assert jw.is_complete_job(done), done
            assert done.result == 2 * (9 if job_id == "after-lock" else i)
            assert done.metadata.retry_count == 0
        assert queue.get_job("under-lock") is None
        assert worker.stop(timeout=10)
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
        worker.stop(timeout=10)
        if thread is not None:
            thread.join(timeout=10)
        queue.close()


class BlockingWorker(jw.JobWorker):
    """Runs each job until the test lets it finish; counts executions."""

    def __init__(self, queue: jw.JobQueue, **kw: Any) -> None:
        super().__init__(queue, **kw)
        self.started = threading.Event()
        self.finish = threading.Event()
        self.runs = 0  # written by the worker thread only

    def get_worker_name(self) -> str:
        return "blocking"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        self.runs += 1
        self.started.set()
        assert self.finish.wait(30), "the test never let the job finish"
        return "done"


def test_a_lock_when_a_job_finishes_does_not_lose_its_result(tmp_path: pathlib.Path) -> None:
    # The job succeeded; the write of its result met "database is locked" for
    # longer than busy_timeout. The worker still holds the claim, so once the
    # lock is gone the result must be stored: not thrown away, with the job
    # then recovered as "WorkerLost" (failed here, max_retries=0) or run again.
    db = tmp_path / "locked-result.sqlite"
    queue = ObservedQueue(db, busy_timeout=0.2, lease_duration=1.0)
    worker = BlockingWorker(queue, poll_interval=0.1, error_backoff=0.05)
    lock = sqlite3.connect(db, isolation_level=None)
    thread = worker.start_in_thread()
    try:
        queue.create_job(jw.new_job("t", {}, id="finishing", max_retries=0))
        assert worker.started.wait(10)
        lock.execute("BEGIN IMMEDIATE")
        worker.finish.set()
        assert queue.wait_for_failures("update", 1)  # the result's write met the lock
        lock.execute("ROLLBACK")

        done = queue.wait_for_job("finishing", timeout=10)

        assert jw.is_complete_job(done), done
        assert done.result == "done"
        assert worker.runs == 1
        assert worker.stop(timeout=10)
    finally:
        worker.finish.set()
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
        worker.stop(timeout=10)
        thread.join(timeout=10)
        queue.close()


# -- a full disk ------------------------------------------------------------------------


def test_a_full_disk_stores_nothing_partial_and_recovers(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "full.sqlite"
    with jw.SQLiteQueue(db) as queue:
        queue.create_job(jw.new_job("t", {"small": True}, id="small"))
        # Each thread has its own connection; max_page_count is per connection,
        # so set it on the one this thread's calls use.
        conn = queue._conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        assert conn.execute(f"PRAGMA max_page_count = {pages}").fetchone() == (pages,)
        stats = queue.get_stats()
        big = {"text": "x" * 200_000, "items": list(range(2000))}

        with pytest.raises(jw.BackendError) as info:
            queue.create_job(jw.new_job("t", big, id="big"))

        assert not isinstance(info.value, sqlite3.Error)
        assert "full" in str(info.value)
        assert queue.get_job("big") is None
        assert queue.get_stats() == stats
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

        conn.execute("PRAGMA max_page_count = 1000000")
        stored = queue.create_job(jw.new_job("t", big, id="big"))
        assert stored.params == big
        again = queue.get_job("big")
        assert again is not None and again.params == big
        assert queue.get_stats()["pending"] == stats["pending"] + 1
