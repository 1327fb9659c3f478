"""Unique keys and schedules across real processes on SQLite and PostgreSQL.

- 4 processes race 1,000 ``create_or_get_job`` calls of one unique key (a
  fifth, racing too, is SIGKILLed mid-run): exactly one job exists, and every
  call that returned got that job.
- 4 scheduler processes (one SIGKILLed mid-run) run an every-minute schedule
  for 3 minutes of an accelerated clock (30 times real time, shared by the
  processes): exactly 3 jobs, one per slot.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import jobworker as jw
from jobworker.clock import to_us

CHILD = str(pathlib.Path(__file__).with_name("sched_unique_child.py"))
T_START = "2026-06-01T11:59:30+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> Iterator[tuple[list[str], jw.JobQueue]]:
    """``(queue args for a child, a queue in this process)``."""
    if request.param == "sqlite":
        path = str(tmp_path / "jobs.sqlite3")
        queue: jw.JobQueue = jw.SQLiteQueue(path)
        args = ["sqlite", path]
    else:
        from jobworker.queues.postgres import PostgresQueue

        dsn, schema = request.getfixturevalue("postgres_schema")
        queue = PostgresQueue(dsn, schema=schema, migrate=True, notify=False)
        args = ["postgres", dsn, schema]
    with queue:
        yield args, queue


def spawn(args: list[str], cwd: pathlib.Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    return subprocess.Popen(
        [sys.executable, CHILD, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
    )  # fmt: skip


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")


def test_processes_racing_one_unique_key_make_exactly_one_job(
    store: tuple[list[str], jw.JobQueue], tmp_path: pathlib.Path
) -> None:
    args, queue = store
    racers = [spawn(["race", *args, "250"], tmp_path) for _ in range(4)]
    victim = spawn(["race", *args, "100000"], tmp_path)
    for proc in [*racers, victim]:
        wait_ready(proc)
    for proc in [*racers, victim]:  # the start line, given to each as close together as can be
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    # SIGKILL the fifth once it is well into its run.
    assert victim.stdout is not None
    for _ in range(50):
        assert victim.stdout.readline()
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    ids: set[str] = set()
    created = 0
    for proc in racers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert len(lines) == 250  # one per call ("ready" was read)
        for line in lines:
            outcome, job_id = line.split()
            ids.add(job_id)
            created += outcome == "created"
    jobs = queue.list_jobs(limit=1000)
    assert len(jobs) == 1
    assert ids == {jobs[0].metadata.id}
    assert created <= 1  # the victim may have been the one that created it
    assert jobs[0].metadata.unique_key == "account:7"


def test_four_scheduler_processes_make_one_job_per_slot(
    store: tuple[list[str], jw.JobQueue], tmp_path: pathlib.Path
) -> None:
    args, queue = store
    start = dt.datetime.fromisoformat(T_START)
    end_us = to_us(start) + 180 * 1_000_000  # 3 virtual minutes: slots 12:00, 12:01, 12:02
    factor = 30.0
    procs = [
        spawn(["schedule", *args, str(to_us(start)), repr(factor), str(end_us)], tmp_path)
        for _ in range(4)
    ]
    for proc in procs:
        wait_ready(proc)
    # Virtual time starts once every child is up: the same instant for all.
    wall0 = time.time() + 0.2
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{wall0!r}\n")
        proc.stdin.flush()
    # Kill one scheduler about a minute and a half of virtual time in (3 s real).
    # Timing the kill, not waiting for a thread: the schedulers keep running meanwhile.
    time.sleep(max(0.0, wall0 + 90 / factor - time.time()))
    procs[0].send_signal(signal.SIGKILL)
    for proc in procs[1:]:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    procs[0].communicate(timeout=30)
    assert procs[0].returncode == -signal.SIGKILL
    ids = sorted(job.metadata.id for job in queue.list_jobs())
    assert ids == [f"schedule:tick:2026-06-01T12:0{n}:00+00:00" for n in range(3)]
