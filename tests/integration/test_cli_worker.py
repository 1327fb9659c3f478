"""``jobworker worker`` as a subprocess: signals with jobs in flight, on SQLite and PostgreSQL.

The first SIGTERM lets the jobs in flight finish and exits 0; a second signal
exits at once with 128 + its number, and another worker recovers the held
jobs once their leases expire. The test follows the process through its log
lines (JSON on standard error), the ledger the test workers append to
(``cli_workers.py``) and the database, each with a deadline.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jobworker as jw
from jobworker.cli import ExitCode

from .crash_harness import watch

ROOT = pathlib.Path(__file__).resolve().parents[2]
SLEEP = "tests.integration.cli_workers:SleepWorker"
TIMEOUT = 30.0  # upper bound on any wait for the worker process


class WorkerProcess:
    """``python -m jobworker worker ...``, its log lines collected as they come."""

    def __init__(self, args: list[str], ledger: pathlib.Path) -> None:
        env = {**os.environ, "JOBWORKER_TEST_LEDGER": str(ledger)}
        env.pop("JOBWORKER_QUEUE", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobworker", "worker", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []  # guarded by self.cond
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, name="read-worker-log")
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<eof>")
            self.cond.notify_all()

    def records(self) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(line) for line in self.lines if line.startswith("{")]

    def wait_for_line(self, match: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        with self.cond:
            found: list[str] = []

            def seen() -> bool:
                found.extend(line for line in self.lines if match(line))
                return bool(found) or "<eof>" in self.lines

            self.cond.wait_for(seen, timeout)
            assert found, f"no such log line; the log so far:\n{self.log()}"
            return found[0]

    def wait_ready(self) -> None:
        self.wait_for_line(lambda line: "worker thread" in line and "running on" in line)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit; return its status."""
        code = self.proc.wait(timeout)
        self.reader.join(TIMEOUT)
        return code

    def log(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            assert stream is not None
            stream.close()


@pytest.fixture
def spawn(tmp_path: pathlib.Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes (killed at the end if still running)."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        process = WorkerProcess(list(args), tmp_path / "ledger")
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def ledger(tmp_path: pathlib.Path) -> list[tuple[str, str, int, int]]:
    """``(mark, job_id, pid, retry_count)`` for every line the workers wrote."""
    path = tmp_path / "ledger"
    if not path.exists():
        return []
    return [
        (mark, job_id, int(pid), int(retries))
        for mark, job_id, pid, retries in (line.split() for line in path.read_text().splitlines())
    ]


def marks(tmp_path: pathlib.Path, mark: str) -> list[str]:
    return [job_id for m, job_id, _, _ in ledger(tmp_path) if m == mark]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[list[str]]:
    """The ``--queue`` options of a fresh, migrated queue on each durable backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        jw.open_queue(url).close()
        yield ["--queue", url]
        return
    dsn, schema = request.getfixturevalue("postgres_schema")
    jw.PostgresQueue(dsn, schema=schema, migrate=True, notify=False).close()
    yield ["--queue", dsn, "--schema", schema]


def open_backend(options: list[str]) -> jw.JobQueue:
    url = options[1]
    if url.startswith("sqlite"):
        return jw.open_queue(url)
    return jw.PostgresQueue(url, schema=options[3], notify=False)


def add_jobs(queue: jw.JobQueue, count: int, **params: Any) -> list[str]:
    ids = [f"job-{n}" for n in range(count)]
    for job_id in ids:
        queue.create_job(jw.new_job("sleep", params, id=job_id))
    return ids


def test_sigterm_lets_the_jobs_in_flight_finish(
    backend: list[str], spawn: Callable[..., WorkerProcess], tmp_path: pathlib.Path
) -> None:
    options = ["--concurrency", "4", "--poll-interval", "0.1", "--log-format", "json"]
    worker = spawn(SLEEP, *backend, *options)
    worker.wait_ready()
    with open_backend(backend) as queue:
        ids = add_jobs(queue, 3, ms=1500)
        assert watch(lambda: sorted(marks(tmp_path, "S")) == ids, TIMEOUT), worker.log()
        worker.signal(signal.SIGTERM)
        worker.wait_for_line(lambda line: "received SIGTERM" in line)
        # The idle fourth thread leaves its loop at once; the others finish their jobs first.
        worker.wait_for_line(lambda line: '"message": "worker sleep-' in line and "stopped" in line)
        assert marks(tmp_path, "E") == []
        # Stopping: no thread takes a new job.
        queue.create_job(jw.new_job("sleep", {}, id="after-the-signal"))
        assert worker.finish() == ExitCode.OK, worker.log()
        assert sorted(marks(tmp_path, "E")) == ids  # every job in flight finished
        for job_id in ids:
            job = queue.get_job(job_id)
            assert job is not None and job.status == "complete"
        late = queue.get_job("after-the-signal")
        assert late is not None and late.status == "pending"
    messages = [record["message"] for record in worker.records()]
    assert any("every job it held ended" in message for message in messages)
    assert {record["level"] for record in worker.records()} <= {"INFO", "WARNING"}
    assert "Traceback" not in worker.log()


def test_two_signals_at_once_never_leave_the_process_waiting(
    spawn: Callable[..., WorkerProcess], tmp_path: pathlib.Path
) -> None:
    """Two SIGTERMs sent together, to an idle worker with several threads.

    Each signal must take effect whenever it lands: the handler once logged,
    and a signal that arrived while the main thread was writing a log line
    made that write fail as reentrant, before the handler asked for the stop,
    so the process waited for good. Several rounds, since the race is rare.
    """
    db = ["--queue", f"sqlite:///{tmp_path / 'jobs.db'}"]
    for _ in range(6):
        process = spawn(SLEEP, *db, "--concurrency", "4", "--poll-interval", "0.1")
        process.wait_ready()
        process.signal(signal.SIGTERM)
        process.signal(signal.SIGTERM)
        # Idle, so the first stop may end before the second signal is seen: 0 or 143.
        assert process.finish(timeout=10) in (0, 128 + signal.SIGTERM), process.log()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_stops_at_once_and_another_worker_recovers_the_jobs(
    signum: int, backend: list[str], spawn: Callable[..., WorkerProcess], tmp_path: pathlib.Path
) -> None:
    lease = ["--lease-duration", "2", "--heartbeat-interval", "0.5", "--poll-interval", "0.1"]
    first = spawn(SLEEP, *backend, *lease, "--concurrency", "2", "--log-format", "json")
    first.wait_ready()
    with open_backend(backend) as queue:
        # A minute on the first attempt: only a stop now ends the first process in time.
        ids = add_jobs(queue, 2, ms=60_000, retry_ms=0)
        assert watch(lambda: sorted(marks(tmp_path, "S")) == ids, TIMEOUT), first.log()
        first.signal(signum)
        first.wait_for_line(lambda line: "stopping workers" in line)
        first.signal(signum)
        assert first.finish(timeout=10) == 128 + signum, first.log()
        stop_now = first.wait_for_line(lambda line: "stopped now" in line)
        assert all(job_id in stop_now for job_id in ids)
        # Plain sentences: what happened, which jobs, and what becomes of them.
        assert "without waiting for the jobs in progress. Jobs left unfinished: " in stop_now
        assert "Another worker runs them again once their leases expire, within 2 s." in stop_now
        for job_id in ids:  # still held by the process that is gone
            job = queue.get_job(job_id)
            assert job is not None and job.status == "running"
        assert marks(tmp_path, "E") == []

        second = spawn(SLEEP, *backend, *lease, "--log-format", "json")
        second.wait_ready()
        for job_id in ids:
            done = queue.wait_for_job(job_id, timeout=TIMEOUT)
            assert done.status == "complete", done
            assert done.metadata.retry_count == 1  # the lost attempt counted
        second.signal(signal.SIGTERM)
        assert second.finish() == ExitCode.OK, second.log()
    # Each job started twice, once in each process, and ended once, in the second.
    lines = ledger(tmp_path)
    for job_id in ids:
        starts = [(pid, retries) for m, j, pid, retries in lines if m == "S" and j == job_id]
        ends = [(pid, retries) for m, j, pid, retries in lines if m == "E" and j == job_id]
        assert starts == [(first.proc.pid, 0), (second.proc.pid, 1)]
        assert ends == [(second.proc.pid, 1)]


def test_a_stop_timeout_that_passes_exits_1_and_leaves_the_job_to_its_lease(
    spawn: Callable[..., WorkerProcess], tmp_path: pathlib.Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    worker = spawn(SLEEP, "--queue", url, "--stop-timeout", "0.5", "--poll-interval", "0.1")
    worker.wait_ready()  # the default log format: readable text
    with jw.open_queue(url) as queue:
        (job_id,) = add_jobs(queue, 1, ms=60_000)
        assert watch(lambda: marks(tmp_path, "S") == [job_id], TIMEOUT), worker.log()
        worker.signal(signal.SIGTERM)
        assert worker.finish(timeout=15) == ExitCode.FAILURE, worker.log()
        job = queue.get_job(job_id)
        assert job is not None and job.status == "running"  # recovered once its lease expires
    assert not worker.log().startswith("{")
    assert " INFO " in worker.log() and " ERROR " in worker.log()
    assert "--stop-timeout" in worker.log() and job_id in worker.log()


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["tests.integration.cli_workers:NotAWorker"], "not a JobWorker subclass", 2),
        (["tests.integration.cli_workers:AbstractWorker"], "is abstract", 2),
        (["tests.integration.cli_workers:Missing"], "has no 'Missing'", 2),
        (["no_such_module_here:Worker"], "cannot import 'no_such_module_here'", 2),
        (["SleepWorker"], "expected module:Class", 2),
        ([SLEEP, "--concurrency", "0"], "must be from 1 to 1024", 2),
        ([SLEEP, "--poll-interval", "-1"], "must be > 0", 2),
        ([SLEEP, "--log-level", "chatty"], "invalid choice", 2),
        ([SLEEP, "--lease-duration", "3", "--heartbeat-interval", "5"], "heartbeat_interval", 2),
        ([SLEEP, "--queue", "postgresql://x:secret@127.0.0.1:1/none"], "cannot connect", 3),
    ],
)
def test_bad_worker_arguments_give_one_line(
    args: list[str], message: str, code: int, tmp_path: pathlib.Path
) -> None:
    queue = [] if "--queue" in args else ["--queue", f"sqlite:///{tmp_path / 'jobs.db'}"]
    proc = subprocess.run(
        [sys.executable, "-m", "jobworker", "worker", *args, *queue],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    assert "secret" not in proc.stderr


@pytest.mark.parametrize("mode", ["all", "errors", "off"])
def test_each_jobs_end_is_logged_with_fields_unless_turned_off(
    spawn: Callable[..., WorkerProcess], tmp_path: pathlib.Path, mode: str
) -> None:
    # Issue 9, 4.5: at INFO a completed job logs one line, its fields as JSON keys.
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with jw.open_queue(url) as queue:
        queue.create_job(jw.new_job("sleep", {}, id="fine"))
        queue.create_job(jw.new_job("fail", {}, id="broken", max_retries=0))
        worker = spawn(
            SLEEP, "tests.integration.cli_workers:FailWorker", "--queue", url,
            "--log-format", "json", "--job-log", mode,
        )  # fmt: skip
        worker.wait_ready()
        for job_id in ("fine", "broken"):
            queue.wait_for_job(job_id, timeout=TIMEOUT)
    # The worker logs a job's end before it takes the next: stop after both lines.
    worker.signal(signal.SIGTERM)
    assert worker.finish() == ExitCode.OK, worker.log()
    lines = {r["job_id"]: r for r in worker.records() if r["logger"] == "jobworker.jobs"}
    expected = {"all": {"fine", "broken"}, "errors": {"broken"}, "off": set()}[mode]
    assert set(lines) == expected, worker.log()
    if "fine" in lines:
        fine = lines["fine"]
        assert (fine["level"], fine["outcome"], fine["job_type"], fine["attempt"]) == (
            "INFO", "complete", "sleep", 1,
        )  # fmt: skip
        assert isinstance(fine["duration"], float) and fine["duration"] >= 0
        assert fine["worker"].startswith("sleep-")
    if "broken" in lines:
        broken = lines["broken"]
        assert (broken["level"], broken["outcome"], broken["attempt"]) == ("WARNING", "failed", 1)
        assert broken["error"] == "PermanentJobError: this job always fails"
