"""A database written by schema version 1 is upgraded in place, its jobs intact.

Version 2 added the ``attempts`` column (every attempt's worker, times and
error). SQLite upgrades when the file is opened; PostgreSQL with
``migrate()`` (``jobworker migrate``), and refuses to run before it.
"""

from __future__ import annotations

import pathlib
import sqlite3
import subprocess
import sys
from typing import Any

import psycopg
import pytest

import jobworker as jw
from jobworker.queues import _postgres_schema, _sqlite_schema

# One job of each kind that version 1 stored: a failed one (its error in one
# line, no history) and a pending one.
V1_COLUMNS = (
    "id, type, user_id, status, priority, created_us, retry_count, max_retries, "
    "run_after_us, params, error, started_us, completed_us"
)
V1_ROWS = [
    ("old-failed", "t", "", "failed", 0, 1_000, 1, 1, None, '{"a": 1}', "ValueError: bad",
     2_000, 3_000),
    ("old-pending", "t", "", "pending", 0, 1_000, 0, 1, None, '{"b": 2}', None, None, None),
]  # fmt: skip


def run_twice(queue: jw.JobQueue) -> jw.AnyJob:
    """Run a new job that fails once, then completes; return it."""

    class Flaky(jw.JobWorker):
        def get_worker_name(self) -> str:
            return "flaky"

        def can_process_job(self, job: jw.AnyJob) -> bool:
            return job.metadata.type == "new"

        def execute_job(self, job: jw.AnyJob) -> Any:
            if job.metadata.retry_count == 0:
                raise ValueError("first\n\nattempt")
            return "ok"

    queue.create_job(jw.new_job("new", {}, id="new", max_retries=1))
    worker = Flaky(queue, retry_policy=jw.RetryPolicy.immediate())
    worker.run_once()
    worker.run_once()
    job = queue.get_job("new")
    assert job is not None
    return job


def check_upgraded(queue: jw.JobQueue) -> None:
    failed = queue.get_job("old-failed")
    assert isinstance(failed, jw.FailedJob)
    assert (failed.error, failed.attempts, failed.params) == ("ValueError: bad", (), {"a": 1})
    pending = queue.get_job("old-pending")
    assert pending is not None and pending.status == "pending" and pending.attempts == ()
    job = run_twice(queue)
    assert isinstance(job, jw.CompleteJob) and job.worker == "flaky"
    (first,) = job.attempts
    assert first.error is not None and first.error.message == "first\n\nattempt"


def test_sqlite_upgrades_a_version_1_file_when_opened(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE jobworker_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in _sqlite_schema._MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("INSERT INTO jobworker_meta VALUES ('schema_version', '1')")
        marks = ", ".join("?" * len(V1_ROWS[0]))
        conn.executemany(f"INSERT INTO jobworker_jobs ({V1_COLUMNS}) VALUES ({marks})", V1_ROWS)
    conn.close()

    with jw.SQLiteQueue(path) as queue:
        check_upgraded(queue)
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT value FROM jobworker_meta").fetchall()
        columns = [row[1] for row in conn.execute("PRAGMA table_info(jobworker_jobs)")]
    finally:
        conn.close()
    assert version == [(str(_sqlite_schema.SCHEMA_VERSION),)] == [("6",)]
    assert "attempts" in columns


def test_postgres_upgrades_a_version_1_schema_with_migrate(
    postgres_schema: tuple[str, str],
) -> None:
    dsn, schema = postgres_schema
    names = _postgres_schema.Names(schema=schema, prefix="jobworker_")
    with psycopg.connect(dsn) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f"CREATE TABLE {names.meta} (key text PRIMARY KEY, value text NOT NULL)")
        for statement in _postgres_schema._migrations(names)[1]:
            conn.execute(statement)
        conn.execute(f"INSERT INTO {names.meta} VALUES ('schema_version', '1')")
        marks = ", ".join(["%s"] * len(V1_ROWS[0]))
        for row in V1_ROWS:
            conn.execute(f"INSERT INTO {names.jobs} ({V1_COLUMNS}) VALUES ({marks})", row)

    with pytest.raises(jw.BackendError, match="jobworker migrate"):
        jw.PostgresQueue(dsn, schema=schema, notify=False)
    proc = subprocess.run(
        [sys.executable, "-m", "jobworker", "migrate", dsn, "--schema", schema],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    upgraded = f"upgraded the tables from schema version 1 to {_postgres_schema.SCHEMA_VERSION}"
    assert upgraded in proc.stdout
    with jw.PostgresQueue(dsn, schema=schema, notify=False) as queue:
        assert queue.migrate() == _postgres_schema.SCHEMA_VERSION == 6
        check_upgraded(queue)
