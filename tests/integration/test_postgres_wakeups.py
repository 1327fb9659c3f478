"""PostgreSQL wake-ups: one idle worker per new job, counted in the server's transactions.

Each measurement runs in a database of its own, so that the server's
``pg_stat_database.xact_commit`` counts this test's transactions only. A
backend reports its counts when its connection closes, so the count is read
after every connection of the run has closed, and a run of no jobs measures
what starting and stopping cost.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import jobworker as jw
from tests.conftest import require_postgres

from .crash_harness import watch

THREADS = 8
JOBS = 150
LOOK = 30.0


@pytest.fixture
def database() -> Iterator[str]:
    """The conninfo of a fresh database on the test server, dropped afterwards."""
    dsn = require_postgres()
    name = f"jwxact_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def committed(conninfo: str) -> int:
    """Return the database's committed transactions, once no other backend is connected."""
    name = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
    with psycopg.connect(make_conninfo(conninfo, dbname="postgres"), autocommit=True) as conn:

        def alone() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            return row is not None and row[0] == 0

        assert watch(alone, timeout=LOOK)
        # A new transaction reads a fresh snapshot of the statistics.
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


class Tick(jw.JobWorker):
    def __init__(self, queue: jw.JobQueue, done: threading.Semaphore) -> None:
        super().__init__(queue, poll_interval=60.0, job_types=["tick"])
        self.done = done

    def get_worker_name(self) -> str:
        return "tick"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> None:
        self.done.release()


def idle_polls(queue: jw.PostgresQueue) -> int:
    with queue._lock:
        return len(queue._idle._waiters)


def run(conninfo: str, jobs: int) -> tuple[int, float]:
    """Run *jobs* jobs one after another through THREADS idle workers.

    Returns the transactions the run committed, and its seconds.
    """
    jw.PostgresQueue(conninfo, migrate=True).close()
    before = committed(conninfo)
    queue = jw.PostgresQueue(conninfo)
    done = threading.Semaphore(0)
    workers = [Tick(queue, done) for _ in range(THREADS)]
    began = time.monotonic()
    try:
        for worker in workers:
            worker.start_in_thread()
        with psycopg.connect(conninfo) as producer:
            for _ in range(jobs):
                # Every worker idle again: each job meets THREADS idle polls.
                assert watch(lambda: idle_polls(queue) == THREADS, timeout=LOOK)
                with producer.transaction():
                    queue.create_job(jw.new_job("tick", {}), connection=producer)
                assert done.acquire(timeout=LOOK)
            assert watch(lambda: idle_polls(queue) == THREADS, timeout=LOOK)
    finally:
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            assert worker.stop(timeout=LOOK)
        queue.close()
    return committed(conninfo) - before, time.monotonic() - began


def test_a_job_costs_a_few_transactions_with_eight_idle_threads(database: str) -> None:
    fixed, _ = run(database, 0)
    total, _ = run(database, JOBS)
    per_job = (total - fixed) / JOBS
    print(f"{THREADS} threads: {per_job:.2f} transactions per job ({total} - {fixed} fixed)")
    # The job's own three (its insert, its claim, its outcome), the worker's
    # look for more work and its read of the next wake-up time once it is
    # done, and a share of the periodic reads (expired leases, the clock).
    # Waking every idle thread for every job cost about 34 here.
    assert per_job <= 7
