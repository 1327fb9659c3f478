"""SQLiteQueue over a queue's life: stop, lease expiry, restart, another process, file modes."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import jobworker as jw
import jobworker.default
from jobworker.model import WORKER_LOST


class BlockingWorker(jw.JobWorker):
    """Runs one job that blocks until the test releases it; records every outcome."""

    def __init__(self, queue: jw.JobQueue, **kw: Any) -> None:
        super().__init__(queue, **kw)
        self.started = threading.Event()
        self.release = threading.Event()
        self.outcomes: list[jw.JobOutcome] = []

    def get_worker_name(self) -> str:
        return "blocking"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        self.started.set()
        assert self.release.wait(30), "the test never released the job"
        return "late"

    def run_once(self, timeout: float | None = 0.0) -> jw.JobOutcome | None:
        outcome = super().run_once(timeout)
        if outcome is not None:
            self.outcomes.append(outcome)
        return outcome


class SecondWorker(jw.JobWorker):
    """A worker of another queue instance on the same file, as another process would be."""

    def __init__(self, queue: jw.JobQueue, **kw: Any) -> None:
        super().__init__(queue, **kw)
        self.runs: list[tuple[str, int]] = []  # list.append is atomic

    def get_worker_name(self) -> str:
        return "second"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        self.runs.append((job.metadata.id, job.metadata.retry_count))
        return "second"


# The first worker's heartbeat renews well within the lease; stop(timeout=1)
# gives up after longer than one lease, so only the renewals keep the job
# from being recovered during the stop.
LEASE = 0.8
HEARTBEAT = 0.15


@pytest.mark.parametrize("max_retries", [1, 0], ids=["retried", "failed"])
def test_stop_gives_up_on_a_blocked_job_and_another_queue_recovers_it(
    tmp_path: pathlib.Path, max_retries: int
) -> None:
    db = tmp_path / "stop.sqlite"
    options: dict[str, Any] = {
        "lease_duration": LEASE,
        "retry_policy": jw.RetryPolicy.immediate(),
    }
    first = jw.SQLiteQueue(db, **options)
    second = jw.SQLiteQueue(db, **options)
    blocking = BlockingWorker(first, poll_interval=0.1, heartbeat_interval=HEARTBEAT)
    survivor = SecondWorker(second, poll_interval=0.1)
    thread = blocking.start_in_thread()
    survivor_thread: threading.Thread | None = None
    try:
        first.create_job(jw.new_job("block", {"n": 1}, id="blocked", max_retries=max_retries))
        assert blocking.started.wait(10)
        claimed = second.get_job("blocked")
        assert isinstance(claimed, jw.RunningJob)

        began = time.monotonic()
        stopped = blocking.stop(timeout=1.0)
        elapsed = time.monotonic() - began

        assert stopped is False
        assert 0.9 <= elapsed < 3.0
        assert thread.is_alive()
        # The heartbeat kept the lease alive for longer than one lease...
        still = second.get_job("blocked")
        assert isinstance(still, jw.RunningJob)
        assert still.claim == claimed.claim

        # ...and stopped renewing when stop() gave up: the lease expires and
        # the other queue's worker recovers the job as a failed attempt.
        survivor_thread = survivor.start_in_thread()
        ended = second.wait_for_job("blocked", timeout=15)
        if max_retries:
            assert jw.is_complete_job(ended)
            assert ended.result == "second"
            assert ended.metadata.retry_count == 1
            assert survivor.runs == [("blocked", 1)]
        else:
            assert jw.is_failed_job(ended)
            assert ended.error == WORKER_LOST
            assert ended.error.startswith("WorkerLost")
            assert ended.metadata.retry_count == 0
            assert survivor.runs == []

        # The first worker's late completion is refused: its outcome is lost
        # and the stored job is not overwritten.
        blocking.release.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert [outcome.status for outcome in blocking.outcomes] == ["lost"]
        metrics = blocking.get_metrics()
        assert (metrics.processed, metrics.lost) == (0, 1)
        assert second.get_job("blocked") == ended
        assert first.get_job("blocked") == ended
        assert blocking.stop(timeout=5) is True
        assert survivor.stop(timeout=5) is True
    finally:
        blocking.release.set()
        blocking.stop(timeout=10)
        thread.join(timeout=10)
        survivor.stop(timeout=10)
        if survivor_thread is not None:
            survivor_thread.join(timeout=10)
        first.close()
        second.close()


# A short script for another process: print the jobs it sees as JSON.
LIST_JOBS = """
import json, sys
import jobworker as jw
with jw.SQLiteQueue(sys.argv[1]) as queue:
    jobs = queue.list_jobs(limit=1000)
print(json.dumps([
    {
        "id": job.metadata.id, "status": job.status, "type": job.metadata.type,
        "user_id": job.metadata.user_id, "params": job.params,
        "priority": job.metadata.priority, "created": job.metadata.created.isoformat(),
        "run_after": job.metadata.run_after and job.metadata.run_after.isoformat(),
        "retry_count": job.metadata.retry_count, "max_retries": job.metadata.max_retries,
    }
    for job in jobs
]))
"""


def as_seen(job: jw.PendingJob[Any]) -> dict[str, Any]:
    meta = job.metadata
    return {
        "id": meta.id,
        "status": job.status,
        "type": meta.type,
        "user_id": meta.user_id,
        "params": job.params,
        "priority": meta.priority,
        "created": meta.created.isoformat(),
        "run_after": meta.run_after and meta.run_after.isoformat(),
        "retry_count": meta.retry_count,
        "max_retries": meta.max_retries,
    }


def test_pending_and_scheduled_jobs_survive_a_restart_and_another_process_sees_them(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "restart.sqlite"
    now = dt.datetime.now(dt.timezone.utc)
    jobs = [
        jw.new_job("report", {"n": 1, "nested": {"a": [1, 2.5, None]}}, id="due-low"),
        jw.new_job("report", ["héllo ✓", True], id="due-high", priority=5, user_id="u@x"),
        jw.new_job(
            "mail",
            {"when": "tomorrow"},
            id="later",
            priority=9,
            max_retries=7,
            run_after=now + dt.timedelta(days=1),
        ),
        jw.new_job("mail", "x", id="soon", run_after=now + dt.timedelta(hours=1)),
    ]
    with jw.SQLiteQueue(db) as queue:
        created = [queue.create_job(job) for job in jobs]

    with jw.SQLiteQueue(db) as reopened:
        for job in created:
            assert reopened.get_job(job.metadata.id) == job
        assert reopened.get_stats()["pending"] == len(jobs)

        # Another process, with the reopened queue still open here.
        proc = subprocess.run(
            [sys.executable, "-c", LIST_JOBS, str(db)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        seen = {job["id"]: job for job in json.loads(proc.stdout)}
        assert seen == {job.metadata.id: as_seen(job) for job in created}

        # Due jobs are claimed by priority; scheduled ones are not claimed early.
        first = reopened.poll_next_pending_job()
        second = reopened.poll_next_pending_job()
        assert first is not None and second is not None
        assert (first.metadata.id, second.metadata.id) == ("due-high", "due-low")
        assert reopened.poll_next_pending_job() is None
        later = reopened.get_job("later")
        assert jw.is_pending_job(later)
        assert later.metadata.run_after == created[2].metadata.run_after


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_and_shm_files_are_private(tmp_path: pathlib.Path, umask_022: None) -> None:
    control = tmp_path / "control"
    control.touch()
    assert mode(control) == 0o644  # the umask is in force
    db = tmp_path / "private.sqlite"
    with jw.SQLiteQueue(db) as queue:
        queue.create_job(jw.new_job("t", {}, id="a"))  # a write: WAL is active
        # A connection of another thread changes nothing.
        thread = threading.Thread(target=queue.create_job, args=(jw.new_job("t", {}, id="b"),))
        thread.start()
        thread.join(timeout=10)
        assert queue.get_stats()["pending"] == 2
        files = {path.name: mode(path) for path in tmp_path.iterdir() if path != control}
    assert files == {
        "private.sqlite": 0o600,
        "private.sqlite-wal": 0o600,
        "private.sqlite-shm": 0o600,
    }


def test_initialize_job_queue_with_data_dir_makes_private_files(
    tmp_path: pathlib.Path, umask_022: None, no_default_queue: None
) -> None:
    data_dir = tmp_path / "data"

    queue = jw.initialize_job_queue(data_dir=data_dir)

    assert isinstance(queue, jw.SQLiteQueue)
    assert jw.get_job_queue() is queue
    assert mode(data_dir) == 0o700
    assert pathlib.Path(queue.path).parent == data_dir
    queue.create_job(jw.new_job("t", {"kept": True}, id="durable"))
    files = {path.name: mode(path) for path in data_dir.iterdir()}
    name = pathlib.Path(queue.path).name
    assert files == {name: 0o600, f"{name}-wal": 0o600, f"{name}-shm": 0o600}

    # Initialized again on the same directory, the default queue sees the job.
    again = jw.initialize_job_queue(data_dir=str(data_dir))
    with pytest.raises(jw.QueueClosedError):
        queue.get_stats()
    kept = again.get_job("durable")
    assert kept is not None and kept.params == {"kept": True}


def test_close_from_a_thread_that_never_used_the_queue_closes_it_for_all(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "jobs.sqlite"
    queue = jw.SQLiteQueue(path)
    queue.create_job(jw.new_job("t", {}, id="j"))
    assert repr(queue) == f"<SQLiteQueue {str(path)!r}>"
    errors: list[BaseException] = []

    def close_then_call() -> None:
        try:
            queue.close()  # this thread holds no connection
            queue.get_job("j")
        except BaseException as exc:  # handed to the test, which asserts on it
            errors.append(exc)

    thread = threading.Thread(target=close_then_call)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert [type(exc) for exc in errors] == [jw.QueueClosedError]
    # The thread that opened it finds it closed too, and its connection is closed.
    with pytest.raises(jw.QueueClosedError):
        queue.get_job("j")
