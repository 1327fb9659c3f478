"""A lease is computed from a clock read after every wait that precedes its write.

A claim reads the queue's clock, then may wait: for SQLite's write lock, for a
PostgreSQL table lock, for a slow round trip. These tests hold such a lock in
another connection for longer than the lease, between the claimer's clock
read and its claim, and check what the claim wrote: a lease of the full
duration from the write, and a start no earlier than the job's creation.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
import threading
from typing import Any

import psycopg

import jobworker as jw
from jobworker.clock import Clock, to_us

LEASE = 1.0
# How long the other connection holds its lock: longer than the lease.
HOLD = 1.5
TIMEOUT = 30.0


class ReadSignal:
    """A clock that tells when it is read once armed (the claimer's first read)."""

    def __init__(self, inner: Clock) -> None:
        self.inner = inner
        self.read = threading.Event()
        self.armed = False

    def now(self) -> dt.datetime:
        value = self.inner.now()
        if self.armed:
            self.read.set()
        return value


def claim_in_thread(queue: jw.JobQueue) -> tuple[threading.Thread, list[Any]]:
    claimed: list[Any] = []

    def claim() -> None:
        claimed.append(queue.poll_next_pending_job(worker="claimer", timeout=TIMEOUT))

    thread = threading.Thread(target=claim)
    thread.start()
    return thread, claimed


def lease_until_us(rows: list[Any]) -> int:
    assert len(rows) == 1
    return int(rows[0][0])


def test_sqlite_claim_behind_a_writers_lock_gets_a_full_lease(tmp_path: pathlib.Path) -> None:
    """An enqueue in another connection's transaction holds the write lock past the lease."""
    path = tmp_path / "jobs.db"
    signal = ReadSignal(jw.SystemClock())
    with jw.SQLiteQueue(path, clock=signal, lease_duration=LEASE, busy_timeout=10.0) as queue:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        signal.armed = True
        thread, claimed = claim_in_thread(queue)
        try:
            assert signal.read.wait(TIMEOUT)  # the claimer read its clock...
            # ...and then an enqueue, in a transaction that holds the lock.
            created = queue.create_job(jw.new_job("t", {}, id="late"), connection=other)
            threading.Event().wait(HOLD)  # the lock is held this long
            released = to_us(jw.SystemClock().now())
            other.execute("COMMIT")
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
        thread.join(TIMEOUT)
        job = claimed[0]
        assert isinstance(job, jw.RunningJob) and job.metadata.id == "late"
        until = lease_until_us(
            other.execute("SELECT lease_until_us FROM jobworker_jobs WHERE id = 'late'").fetchall()
        )
        other.close()
    # No stored time precedes an earlier event of the job (issue 9, 3.3).
    assert job.started_at >= created.metadata.created
    assert to_us(job.started_at) >= released
    assert until >= released + round(LEASE * 1_000_000)


def test_postgres_claim_behind_a_table_lock_gets_a_full_lease(
    postgres_schema: tuple[str, str],
) -> None:
    dsn, schema = postgres_schema
    with jw.PostgresQueue(
        # A bound above the lock's hold: the claim waits for it, not fails.
        dsn,
        schema=schema,
        migrate=True,
        notify=False,
        lease_duration=LEASE,
        timeout=HOLD * 4,
    ) as queue:
        queue.create_job(jw.new_job("t", {}, id="waiting"))
        signal = ReadSignal(queue.clock)
        queue.clock = signal  # the database clock, read through the signal
        table = f'"{schema}"."jobworker_jobs"'
        with psycopg.connect(dsn) as other:
            # SHARE lets the claimer read, and makes its UPDATE wait.
            other.execute(f"LOCK TABLE {table} IN SHARE MODE")
            signal.armed = True
            thread, claimed = claim_in_thread(queue)
            assert signal.read.wait(TIMEOUT)
            threading.Event().wait(HOLD)
            row = other.execute(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
            ).fetchone()
            assert row is not None
            released = int(row[0])
            other.commit()
            thread.join(TIMEOUT)
            job = claimed[0]
            assert isinstance(job, jw.RunningJob) and job.metadata.id == "waiting"
            until = lease_until_us(
                other.execute(f"SELECT lease_until_us FROM {table} WHERE id = 'waiting'").fetchall()
            )
    assert to_us(job.started_at) >= released
    assert until >= released + round(LEASE * 1_000_000)
