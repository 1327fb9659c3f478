"""PostgresQueue shared by real worker processes, some of them killed with SIGKILL.

The worker processes run ``worker_process.py --postgres`` beside this file,
each with an ``application_name`` of its own, so the test can tell when the
server has ended a killed process's connections (and with them any claim it
was committing). ``crash_harness`` spawns, kills and watches them.
"""

from __future__ import annotations

import functools
from typing import Any

import psycopg

import jobworker as jw

from .crash_harness import LEASE, THREADS, WorkerProcesses, check_kill_run, kill_workers, watch

# A connection for each worker thread and each heartbeat, with room to spare.
POOL_SIZE = 4 * THREADS


def count_connections(conn: psycopg.Connection[Any], app_like: str) -> int:
    """How many server connections have an application_name LIKE *app_like*."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s", (app_like,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def connections_ended(conn: psycopg.Connection[Any], name: str) -> None:
    # Once the server has ended the dead process's connections, a claim it
    # was committing has either landed or not: what it held is final.
    assert watch(lambda: count_connections(conn, name) == 0, timeout=10), (
        f"the server kept {name}'s connections"
    )


def test_killed_worker_processes_lose_no_job(
    postgres_schema: tuple[str, str], postgres_processes: WorkerProcesses
) -> None:
    """3 processes x 2 worker threads, 2,000 jobs, 6 SIGKILLs at random intervals.

    See :func:`crash_harness.check_kill_run` for what must hold, and the bound
    on duplicate executions.
    """
    dsn, schema = postgres_schema
    processes = postgres_processes
    table = f'"{schema}"."jobworker_jobs"'
    with jw.PostgresQueue(
        dsn, schema=schema, migrate=True, lease_duration=LEASE, pool_size=2
    ) as queue:
        run = kill_workers(
            processes,
            queue,
            functools.partial(psycopg.connect, dsn, autocommit=True),
            table,
            options=[f"--pool-size={POOL_SIZE}"],
            after_kill=connections_ended,
        )
    check_kill_run(run)

    # No connection of the worker processes is left open: the server ends a
    # process's connections soon after the process exits.
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert watch(lambda: count_connections(conn, f"{processes.base}%") == 0, timeout=10)
