"""Every attempt is kept on the job, on every backend: its worker, times and whole error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import jobworker as jw
import jobworker.model
from jobworker.testing import FakeClock

from .conftest import MakeQueue


class ScriptedWorker(jw.JobWorker):
    """Runs each job with *execute*; named *name*."""

    def __init__(
        self,
        queue: jw.JobQueue,
        execute: Callable[[jw.RunningJob[Any, Any]], Any],
        name: str = "scripted",
        **options: Any,
    ) -> None:
        self.name = name
        self.execute = execute
        super().__init__(queue, **options)

    def get_worker_name(self) -> str:
        return self.name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        return self.execute(job)


def create(queue: jw.JobQueue, job_id: str, *, max_retries: int = 0) -> None:
    queue.create_job(
        jw.new_job("work", {"n": 1}, id=job_id, max_retries=max_retries, created=queue.clock.now())
    )


def test_system_exit_fails_the_attempt_and_the_worker_goes_on(
    queue: jw.JobQueue, start_worker: Callable[[jw.JobWorker], threading.Thread]
) -> None:
    # Issue 9, 3.1: SystemExit from job code is an error of that job, not the
    # worker's end; the job is never handed back unrun to run again forever.
    def execute(job: jw.RunningJob[Any, Any]) -> Any:
        if job.metadata.id == "exits":
            raise SystemExit(3)
        return "done"

    worker = ScriptedWorker(queue, execute)
    thread = start_worker(worker)
    create(queue, "exits")
    failed = queue.wait_for_job("exits", timeout=10.0)
    create(queue, "next")
    complete = queue.wait_for_job("next", timeout=10.0)

    assert isinstance(failed, jw.FailedJob)
    assert failed.error == "SystemExit: 3"
    assert failed.attempts[-1].error == jw.AttemptError(
        "builtins.SystemExit", "3", failed.attempts[-1].error.traceback
    )
    assert "raise SystemExit(3)" in failed.attempts[-1].error.traceback
    assert complete.status == "complete" and complete.result == "done"
    assert thread.is_alive() and not worker.is_stopping()
    assert worker.get_metrics().errors == 1


def test_system_exit_is_retried_like_any_error(queue: jw.JobQueue, clock: FakeClock) -> None:
    calls: list[int] = []

    def execute(job: jw.RunningJob[Any, Any]) -> Any:
        calls.append(job.metadata.retry_count)
        if len(calls) == 1:
            raise SystemExit("leaving")
        return "second time"

    worker = ScriptedWorker(queue, execute, retry_policy=jw.RetryPolicy.immediate())
    create(queue, "job-1", max_retries=1)
    first = worker.run_once()
    second = worker.run_once()

    assert first is not None and first.status == "retry"
    assert second is not None and second.status == "complete"
    assert calls == [0, 1]
    done = queue.get_job("job-1")
    assert isinstance(done, jw.CompleteJob) and done.worker == "scripted"
    assert [a.error.class_path for a in done.attempts if a.error] == ["builtins.SystemExit"]


def test_a_message_with_blank_lines_survives_intact(queue: jw.JobQueue) -> None:
    # Issue 9, 3.2: message and traceback are stored apart.
    message = "first paragraph\n\nsecond paragraph\n\n\n  indented: third"

    def execute(job: jw.RunningJob[Any, Any]) -> Any:
        raise ValueError(message)

    create(queue, "job-1")
    ScriptedWorker(queue, execute).run_once()
    job = queue.get_job("job-1")

    assert isinstance(job, jw.FailedJob)
    (attempt,) = job.attempts
    assert attempt.error is not None
    assert attempt.error.class_path == "builtins.ValueError"
    assert attempt.error.message == message
    assert attempt.error.traceback.startswith("Traceback (most recent call last):\n")
    assert attempt.error.traceback.endswith(f"ValueError: {message}\n")
    assert job.error == f"ValueError: {message}"


def test_every_attempt_is_kept_and_a_retrying_job_shows_its_last_error(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    # Issue 9, 3.9: every attempt's error, for every backend; a pending job
    # waiting to retry shows its last error.
    def execute(job: jw.RunningJob[Any, Any]) -> Any:
        raise RuntimeError(f"boom {job.metadata.retry_count + 1}")

    create(queue, "job-1", max_retries=2)
    workers = [ScriptedWorker(queue, execute, name=f"w{n}") for n in (1, 2, 3)]
    starts = []
    for number, worker in enumerate(workers, 1):
        starts.append(clock.now())
        outcome = worker.run_once()
        assert outcome is not None
        clock.advance(3600)  # past any backoff
        job = queue.get_job("job-1")
        assert job is not None
        assert [a.number for a in job.attempts] == list(range(1, number + 1))
        last = job.attempts[-1]
        assert last.error is not None and last.error.message == f"boom {number}"
        if number < 3:
            assert job.status == "pending"
            assert [j.attempts for j in queue.list_jobs(status="pending")] == [job.attempts]

    assert isinstance(job, jw.FailedJob)
    assert [a.worker for a in job.attempts] == ["w1", "w2", "w3"]
    assert [a.started_at for a in job.attempts] == starts
    assert all(a.ended_at >= a.started_at for a in job.attempts)
    assert [a.error.class_path for a in job.attempts if a.error] == ["builtins.RuntimeError"] * 3
    assert job.started_at == starts[-1]


def test_a_completed_job_keeps_its_attempts(queue: jw.JobQueue, clock: FakeClock) -> None:
    fail_first = [True]

    def execute(job: jw.RunningJob[Any, Any]) -> Any:
        if fail_first.pop() if fail_first else False:
            raise KeyError("missing")
        return {"ok": True}

    create(queue, "job-1", max_retries=1)
    ScriptedWorker(queue, execute, name="a").run_once()
    clock.advance(3600)
    ScriptedWorker(queue, execute, name="b").run_once()
    job = queue.get_job("job-1")

    assert isinstance(job, jw.CompleteJob)
    # The attempt that completed is the job's own fields; the failed one before it is kept.
    (first,) = job.attempts
    assert (first.number, first.worker, job.worker) == (1, "a", "b")
    assert first.error is not None and first.error.message == "'missing'"
    assert first.ended_at <= job.started_at


def test_a_lost_attempt_is_kept(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue(lease_duration=30.0, retry_policy=jw.RetryPolicy.immediate())
    create(queue, "job-1", max_retries=1)
    held = queue.poll_next_pending_job(worker="vanished")
    assert held is not None
    clock.advance(31)

    job = queue.get_job("job-1")
    assert job is not None and job.status == "pending"
    (lost,) = job.attempts
    assert (lost.number, lost.worker, lost.started_at) == (1, "vanished", held.started_at)
    assert lost.error is not None and lost.error.type_name == "WorkerLost"
    assert lost.error.traceback == ""


def test_attempts_survive_a_requeue_and_a_cancel(queue: jw.JobQueue) -> None:
    def execute(job: jw.RunningJob[Any, Any]) -> Any:
        raise OSError("disk")

    create(queue, "job-1")
    ScriptedWorker(queue, execute).run_once()
    failed = queue.get_job("job-1")
    assert isinstance(failed, jw.FailedJob)
    requeued = queue.update_job(jw.model.requeue(failed), "failed")
    assert requeued.attempts == failed.attempts
    running = queue.poll_next_pending_job(worker="second")
    assert running is not None and running.attempts == failed.attempts
    assert queue.cancel_job("job-1")
    cancelled = queue.get_job("job-1")

    assert cancelled is not None
    assert [(a.number, a.worker) for a in cancelled.attempts] == [(1, "scripted"), (2, "second")]
