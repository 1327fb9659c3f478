"""``flask jobworker worker`` as a real process, stopped by signals; and an app
process that exits with its worker threads still running."""

from __future__ import annotations

import json
import os
import queue as queue_module
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import jobworker as jw

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.flask.sample_app:create_app"


class Process:
    """A child process whose stderr lines are read by a thread, to wait on with a deadline."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue_module.Queue[str | None] = queue_module.Queue()
        assert self.popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Return the match of the next output line matching *pattern*; fail after *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue_module.Empty:
                pytest.fail(f"no line matched {pattern!r} in time; output:\n{self.output}")
            if line is None:
                pytest.fail(f"the process ended before a line matched {pattern!r}:\n{self.output}")
            match = re.search(pattern, line)
            if match:
                return match

    def wait(self, timeout: float = 30.0) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"the process did not exit in time; output:\n{self.output}")
        self._close(timeout)
        return code

    def _close(self, timeout: float) -> None:
        self._reader.join(timeout)
        assert self.popen.stdout is not None
        self.popen.stdout.close()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._close(10)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def flask_env(**config: object) -> dict[str, str]:
    """The environment of a child process, with *config* as FLASK_* variables (JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in config.items():
        env[f"FLASK_{key}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def start_worker(processes: list[Process], env: dict[str, str]) -> Process:
    args = [sys.executable, "-m", "flask", "--app", APP, "jobworker", "worker"]
    process = Process(args, env)
    processes.append(process)
    return process


def test_sigterm_lets_the_job_in_flight_finish_and_loses_none(
    processes: list[Process], sqlite_url: str
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with jw.SQLiteQueue(path) as queue:
        first = queue.create_job(jw.new_job("slow", {"n": 1}))
        second = queue.create_job(jw.new_job("slow", {"n": 1}))
        process = start_worker(
            processes,
            flask_env(
                JOBWORKER_QUEUE=sqlite_url,
                JOBWORKER_WORKERS=["tests.flask.sample_app:SlowWorker"],
            ),
        )
        process.expect(rf"job {first.metadata.id} started")
        process.popen.send_signal(signal.SIGTERM)
        assert process.wait() == 0, process.output

        done = queue.get_job(first.metadata.id)
        assert done is not None and jw.is_complete_job(done), process.output
        # It finished in the process's app context, after the stop was asked for.
        assert done.result == {"stopped_gracefully": True, "app": "tests.flask.sample_app"}
        # The job behind it was not claimed: it waits for the next worker.
        assert queue.get_job(second.metadata.id) == second
    assert "received SIGTERM" in process.output


def test_a_second_signal_stops_now_and_the_job_is_recovered(
    processes: list[Process], sqlite_url: str
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with jw.SQLiteQueue(path, retry_policy=jw.RetryPolicy.immediate()) as queue:
        job = queue.create_job(jw.new_job("stuck", {"n": 1}))
        process = start_worker(
            processes,
            flask_env(
                JOBWORKER_QUEUE=sqlite_url,
                JOBWORKER_QUEUE_OPTIONS={"lease_duration": 1.0},
                JOBWORKER_WORKERS=["tests.flask.sample_app:StuckWorker"],
            ),
        )
        process.expect(rf"job {job.metadata.id} started")
        process.popen.send_signal(signal.SIGTERM)
        process.expect(r"received SIGTERM")
        process.popen.send_signal(signal.SIGTERM)
        assert process.wait() == 128 + signal.SIGTERM, process.output

        # The lease runs out and the job is handed to the next worker: not lost.
        recovered = queue.poll_next_pending_job(types=["stuck"], worker="test", timeout=30)
        assert recovered is not None, process.output
        assert recovered.metadata.id == job.metadata.id
        assert recovered.metadata.retry_count == 1
    assert "stopping now" in process.output


EXITING_APP = """
import sys

from tests.flask.sample_app import SlowWorker, create_app, jobs

app = create_app({
    "JOBWORKER_QUEUE": sys.argv[1],
    "JOBWORKER_WORKERS": [SlowWorker],
    "JOBWORKER_START_WORKERS": True,
})
app.test_client().get("/jobs/none")  # the first request starts the workers
job = jobs.enqueue("slow", {}, app=app)
[worker] = jobs.get_workers(app)
assert worker.started.wait(30)
print("running", job.metadata.id, flush=True)
# The main thread ends here, with the worker thread in the middle of the job.
"""


def test_an_app_process_stops_its_worker_threads_when_it_exits(
    processes: list[Process], sqlite_url: str
) -> None:
    process = Process([sys.executable, "-c", EXITING_APP, sqlite_url], flask_env())
    processes.append(process)
    job_id = process.expect(r"running (\w+)").group(1)
    assert process.wait() == 0, process.output

    with jw.SQLiteQueue(sqlite_url.removeprefix("sqlite:///")) as queue:
        done = queue.get_job(job_id)
    assert done is not None and jw.is_complete_job(done), process.output
    assert done.result == {"stopped_gracefully": True, "app": "tests.flask.sample_app"}


HUNG_APP = """
import sys
import threading

import jobworker as jw
from tests.flask.sample_app import create_app, jobs

started = threading.Event()


class HungWorker(jw.JobWorker):
    def get_worker_name(self):
        return "hung"

    def can_process_job(self, job):
        return job.metadata.type == "slow"

    def execute_job(self, job):
        started.set()
        threading.Event().wait()  # forever: blocked in C, no interrupt lands


app = create_app({
    "JOBWORKER_QUEUE": sys.argv[1],
    "JOBWORKER_WORKERS": [HungWorker],
    "JOBWORKER_WORKER_OPTIONS": {"time_limit": float(sys.argv[2]), "time_limit_grace": 0.5},
    "JOBWORKER_STOP_TIMEOUT": 1.0,
    "JOBWORKER_START_WORKERS": True,
})
app.test_client().get("/jobs/none")  # the first request starts the workers
job = jobs.enqueue("slow", {}, app=app)
assert started.wait(30)
print("running", job.metadata.id, flush=True)
# The main thread ends here, with the worker thread stuck in its job for good.
"""

# Python 3.13 joins non-daemon threads at exit in C, with no way to leave one out.
_NO_DETACH = pytest.mark.xfail(
    sys.version_info >= (3, 13), reason="Python 3.13 waits for every non-daemon thread", strict=True
)


@_NO_DETACH
@pytest.mark.parametrize("limit", [0.3, 60.0], ids=["limit-reached", "limit-far"])
def test_a_hung_job_does_not_keep_the_app_process_from_exiting(
    processes: list[Process], sqlite_url: str, limit: float
) -> None:
    # Stop timeout 1 s, grace 0.5 s, a limit of 0.3 s or 60 s. With the limit
    # reached first the thread is abandoned; with it far off, stop() gives up
    # on the thread at its timeout. Either way the interpreter exits soon after.
    process = Process([sys.executable, "-c", HUNG_APP, sqlite_url, str(limit)], flask_env())
    processes.append(process)
    job_id = process.expect(r"running (\w+)").group(1)
    began = time.monotonic()
    assert process.wait(timeout=20) == 0, process.output
    took = time.monotonic() - began
    assert took <= 1.0 + 0.5 + 1.0, (took, process.output)  # stop timeout + grace + slack
    with jw.SQLiteQueue(sqlite_url.removeprefix("sqlite:///")) as queue:
        job = queue.get_job(job_id)
    assert job is not None
    if limit < 1:
        assert isinstance(job, jw.FailedJob) or job.status == "pending", job
        assert job.attempts[-1].error is not None
        assert job.attempts[-1].error.type_name == "JobTimeoutError"
    else:
        assert job.status == "running"  # left to its lease, which no one renews now
