"""``jobworker worker --schedules`` and ``jobworker schedules``, as processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import jobworker as jw
from jobworker.cli import ExitCode
from jobworker.clock import from_us, to_us

from .cli_workers import SCHEDULES
from .test_cli_worker import SLEEP, TIMEOUT, WorkerProcess

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = "tests.integration.cli_workers:SCHEDULES"


def next_second(now: dt.datetime) -> dt.datetime:
    return from_us((to_us(now) // 1_000_000 + 1) * 1_000_000)


def wait_created_and_done(queue: jw.JobQueue, job_id: str) -> jw.AnyJob:
    """Wait for another process to create the job *job_id*, then for it to end."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return queue.wait_for_job(job_id, timeout=max(0.0, deadline - time.monotonic()))
        except jw.JobNotFoundError:
            # Not created yet: the other process's scheduler creates it at its slot.
            assert time.monotonic() < deadline, f"{job_id} was never created"
            threading.Event().wait(0.05)


def test_a_worker_runs_its_schedules_and_the_command_lists_them(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    worker = WorkerProcess([SLEEP, "--schedules", SPEC, "--queue", url], tmp_path / "ledger")
    try:
        worker.wait_for_line(lambda line: "running schedules every-second" in line)
        with jw.open_queue(url) as queue:
            # Two slots a second apart, each run once by the worker's own scheduler.
            slot = next_second(queue.clock.now()) + dt.timedelta(seconds=1)
            for n in range(2):
                job_id = SCHEDULES[0].job_id(slot + dt.timedelta(seconds=n))
                done = wait_created_and_done(queue, job_id)
                assert done.status == "complete"
    finally:
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(TIMEOUT)
        worker.close()
    assert code == ExitCode.OK
    listing = subprocess.run(
        [sys.executable, "-m", "jobworker", "schedules", "--schedules", SPEC, "--queue", url,
         "--json", "--count", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={k: v for k, v in os.environ.items() if k != "JOBWORKER_QUEUE"},
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)
    assert (row["name"], row["job_type"], row["catch_up"]) == ("every-second", "sleep", "skip")
    assert len(row["next"]) == 2
    assert row["last_job"].startswith("schedule:every-second:")
    assert row["last_status"] == "complete"
