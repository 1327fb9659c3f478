"""PostgreSQL wake-ups: one idle worker per new job, counted in the server's transactions.

Each measurement runs in a database of its own, so that the server's
``pg_stat_database.xact_commit`` counts this test's transactions only. A
backend reports its counts when its connection closes, so the count is read
after every connection of the run has closed, and a run of no jobs measures
what starting and stopping cost.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
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
        return len(queue._idle)


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


# -- an idle worker in another process, woken by a notification sent after the commit --------

_WORKER_PROCESS = """
import sys, threading
import jobworker as jw

class Echo(jw.JobWorker):
    def get_worker_name(self): return "echo"
    def can_process_job(self, job): return True
    def execute_job(self, job): return job.params

queue = jw.PostgresQueue(sys.argv[1], schema=sys.argv[2])
# A poll interval far above the bounds asserted: only a notification can be in time.
workers = [Echo(queue, poll_interval=60.0) for _ in range(4)]
for worker in workers:
    worker.start_in_thread()
look = threading.Event()

def idle():
    with queue._lock:
        return len(queue._idle) == len(workers) and queue._generation > 0

# Each line asks: answer once every worker sleeps, and has since the
# listener's first LISTEN woke them all (the one bump of the generation).
for line in sys.stdin:
    while not idle():
        look.wait(0.005)
    print("idle", flush=True)
for worker in workers:
    worker.request_stop()
for worker in workers:
    worker.stop(timeout=30)
queue.close()
"""

LATENCY_JOBS = 30


class WorkerProcess:
    """A process of four workers on *schema*, asked when they all sleep."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_PROCESS, dsn, schema],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_idle(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("idle?\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "idle\n"

    def stop(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        assert self.proc.wait(LOOK) == 0
        self.proc.stdout.close()


@contextlib.contextmanager
def worker_process(dsn: str, schema: str) -> Iterator[WorkerProcess]:
    """A WorkerProcess, stopped on leaving."""
    proc = WorkerProcess(dsn, schema)
    try:
        yield proc
    finally:
        proc.stop()


def test_an_idle_worker_in_another_process_starts_an_announced_job_at_once(
    postgres_schema: tuple[str, str],
) -> None:
    dsn, schema = postgres_schema
    waits = []
    with (
        jw.PostgresQueue(dsn, schema=schema, migrate=True) as queue,
        worker_process(dsn, schema) as workers,
        psycopg.connect(dsn, autocommit=True) as web,
    ):
        for n in range(LATENCY_JOBS):
            workers.wait_idle()
            with web.transaction():
                job = queue.create_job(jw.new_job("echo", n), connection=web, announce=False)
            queue.announce("echo", connection=web)
            done = queue.wait_for_job(job.metadata.id, timeout=LOOK)
            assert isinstance(done, jw.CompleteJob) and done.result == n
            # Both times from the server's clock: enqueue to start.
            waits.append((done.started_at - job.metadata.created).total_seconds())
    waits.sort()
    p50, worst = waits[len(waits) // 2], waits[-1]
    print(f"enqueue -> start: p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    # Far below the worker's poll interval (60 s): each job was announced.
    assert worst < 1.0
    assert p50 < 0.1


def test_a_job_not_announced_waits_for_the_poll(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    with (
        jw.PostgresQueue(dsn, schema=schema, migrate=True) as queue,
        worker_process(dsn, schema) as workers,
        psycopg.connect(dsn, autocommit=True) as web,
    ):
        workers.wait_idle()
        with web.transaction():
            job = queue.create_job(jw.new_job("echo", 1), connection=web, announce=False)
        # Nothing announced it: the idle workers sleep on (their poll is 60 s).
        with pytest.raises(jw.WaitTimeoutError):
            queue.wait_for_job(job.metadata.id, timeout=1.0)
        queue.announce("echo", connection=web)
        assert queue.wait_for_job(job.metadata.id, timeout=LOOK).status == "complete"
