"""SQLiteQueue shared by real worker processes, some of them killed with SIGKILL.

The worker processes run ``worker_process.py --sqlite`` beside this file;
``crash_harness`` spawns, kills and watches them.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import jobworker as jw

from .crash_harness import (
    HELPER,
    LEASE,
    WorkerProcesses,
    check_kill_run,
    kill_workers,
    wait_for_ready,
    worker_processes,
)

DB = "jobs.sqlite"  # in tmp_path


def connect(db: pathlib.Path) -> sqlite3.Connection:
    """A plain connection for the test's own reads (no recovery, no decoding)."""
    return sqlite3.connect(db, timeout=30, isolation_level=None)


@pytest.fixture
def processes(tmp_path: pathlib.Path) -> Iterator[WorkerProcesses]:
    with worker_processes(tmp_path, lambda name: ["--sqlite", str(tmp_path / DB)]) as procs:
        yield procs


def test_killed_worker_processes_lose_no_job(
    tmp_path: pathlib.Path, processes: WorkerProcesses
) -> None:
    """3 processes x 2 worker threads, 2,000 jobs, 6 SIGKILLs at random intervals.

    See :func:`crash_harness.check_kill_run` for what must hold, and the bound
    on duplicate executions.
    """
    db = tmp_path / DB
    with jw.SQLiteQueue(db, lease_duration=LEASE) as queue:
        run = kill_workers(processes, queue, lambda: connect(db), "jobworker_jobs", stop_timeout=15)
    conn = connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    check_kill_run(run)


def test_threads_in_two_processes_claim_each_job_once(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "claims.sqlite"
    n_jobs = 1000
    with jw.SQLiteQueue(db) as queue:
        for i in range(n_jobs):
            queue.create_job(jw.new_job("claim", {"i": i}, id=f"claim-{i:04d}"))

    outs = [tmp_path / f"claims-{n}.json" for n in range(2)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for out in outs:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HELPER),
                        "claim",
                        str(out),
                        f"--sqlite={db}",
                        "--threads=3",
                        "--busy-timeout=30",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        for proc in procs:
            wait_for_ready(proc)
        for proc in procs:  # start both at once: the claims contend
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode(errors="replace")

    reports = [json.loads(out.read_text()) for out in outs]
    claims: list[dict[str, Any]] = [claim for report in reports for claim in report["claims"]]
    assert [report["errors"] for report in reports] == [[], []]
    # Every job claimed exactly once, by one claim of its own.
    assert sorted(claim["id"] for claim in claims) == [f"claim-{i:04d}" for i in range(n_jobs)]
    assert len({claim["token"] for claim in claims}) == n_jobs
    # Both processes took part, and the completions were stored by the claimant.
    assert all(report["claims"] for report in reports)
    by_id = {claim["id"]: claim["worker"] for claim in claims}
    with jw.SQLiteQueue(db) as queue:
        assert queue.get_stats() == {
            "pending": 0,
            "running": 0,
            "complete": n_jobs,
            "failed": 0,
            "cancelled": 0,
        }
        for job in queue.list_jobs(limit=n_jobs):
            assert jw.is_complete_job(job)
            assert job.result == by_id[job.metadata.id]
            assert job.metadata.retry_count == 0
