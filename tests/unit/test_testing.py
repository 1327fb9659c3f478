"""Tests for jobworker.testing: run_pending, wait_for_job, FakeClock."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest

import jobworker as jw
from jobworker.testing import FakeClock, run_pending, wait_for_job

TIMEOUT = 5.0  # upper bound on any wait for another thread


class ScriptedWorker(jw.JobWorker):
    """Looks up what to do by job id: raise the exception given, else return a result."""

    def __init__(self, queue: jw.JobQueue, script: dict[str, BaseException], **options: Any):
        self.script = script
        self.ran: list[str] = []
        super().__init__(queue, **options)

    def get_worker_name(self) -> str:
        return "ScriptedWorker"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        self.ran.append(job.metadata.id)
        error = self.script.get(job.metadata.id)
        if error is not None:
            raise error
        return {"id": job.metadata.id}


def add_job(queue: jw.JobQueue, id: str, **metadata: Any) -> None:
    queue.create_job(jw.new_job("test", {}, id=id, created=queue.clock.now(), **metadata))


# -- run_pending ---------------------------------------------------------------------------


def test_run_pending_reraises_the_first_failure_after_recording_it(
    queue: jw.MemoryQueue,
) -> None:
    first = ValueError("first")
    worker = ScriptedWorker(queue, {"f1": first, "f2": ValueError("second")})
    add_job(queue, "ok")
    add_job(queue, "f1", max_retries=3)
    add_job(queue, "f2")

    with pytest.raises(ValueError) as info:
        run_pending(worker)

    assert info.value is first  # the original exception object, with its traceback
    assert info.value.__traceback__ is not None
    f1 = queue.get_job("f1")
    assert f1 is not None and f1.status == "pending" and f1.metadata.retry_count == 1
    assert worker.ran == ["ok", "f1"]  # stopped at the first failure
    f2 = queue.get_job("f2")
    assert f2 is not None and f2.status == "pending" and f2.metadata.retry_count == 0


def test_run_pending_reraises_a_permanent_failure_once_stored(queue: jw.MemoryQueue) -> None:
    error = jw.PermanentJobError("bad")
    worker = ScriptedWorker(queue, {"p": error})
    add_job(queue, "p")

    with pytest.raises(jw.PermanentJobError) as info:
        run_pending(worker)

    assert info.value is error
    job = queue.get_job("p")
    assert isinstance(job, jw.FailedJob)
    assert job.error == "PermanentJobError: bad"


def test_run_pending_without_fail_fast_returns_every_outcome(queue: jw.MemoryQueue) -> None:
    error = ValueError("retry me")
    worker = ScriptedWorker(
        queue,
        {
            "retry": error,
            "fail": jw.PermanentJobError("no"),
            "cancel": jw.JobCancelledError("stop"),
        },
    )
    for job_id in ("ok", "retry", "fail", "cancel"):
        add_job(queue, job_id)

    outcomes = run_pending(worker, fail_fast=False)

    assert [(o.job.metadata.id, o.status) for o in outcomes] == [
        ("ok", "complete"),
        ("retry", "retry"),
        ("fail", "failed"),
        ("cancel", "cancelled"),
    ]
    assert outcomes[0].error is None
    assert outcomes[0].job.result == {"id": "ok"}
    assert outcomes[1].error is error
    assert outcomes[1].job.status == "pending"
    assert isinstance(outcomes[2].error, jw.PermanentJobError)


def test_run_pending_does_not_raise_for_a_cancellation(queue: jw.MemoryQueue) -> None:
    worker = ScriptedWorker(queue, {"c": jw.JobCancelledError("stop")})
    add_job(queue, "c")
    add_job(queue, "after")

    outcomes = run_pending(worker)

    assert [o.status for o in outcomes] == ["cancelled", "complete"]


def test_run_pending_runs_immediate_retries_to_the_end(queue: jw.MemoryQueue) -> None:
    worker = ScriptedWorker(
        queue, {"doomed": ValueError("x")}, retry_policy=jw.RetryPolicy.immediate()
    )
    add_job(queue, "doomed", max_retries=3)

    outcomes = run_pending(worker, fail_fast=False)

    assert [o.status for o in outcomes] == ["retry", "retry", "retry", "failed"]
    assert worker.ran == ["doomed"] * 4


def test_run_pending_waits_for_run_after(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    worker = ScriptedWorker(queue, {})
    add_job(queue, "later", run_after=clock.now() + dt.timedelta(seconds=60))

    assert run_pending(worker) == []
    clock.advance(59)
    assert run_pending(worker) == []
    clock.advance(1)
    assert [o.status for o in run_pending(worker)] == ["complete"]


def test_run_pending_honours_max_jobs(queue: jw.MemoryQueue) -> None:
    worker = ScriptedWorker(queue, {})
    for job_id in ("a", "b", "c"):
        add_job(queue, job_id)

    assert run_pending(worker, max_jobs=0) == []
    assert worker.ran == []
    outcomes = run_pending(worker, max_jobs=2)
    assert [o.job.metadata.id for o in outcomes] == ["a", "b"]
    c = queue.get_job("c")
    assert c is not None and c.status == "pending"
    assert [o.job.metadata.id for o in run_pending(worker, max_jobs=5)] == ["c"]


def test_run_pending_rejects_negative_max_jobs(queue: jw.MemoryQueue) -> None:
    worker = ScriptedWorker(queue, {})
    add_job(queue, "a")

    with pytest.raises(ValueError):
        run_pending(worker, max_jobs=-1)
    assert worker.ran == []


def test_run_pending_on_an_empty_queue_returns_nothing(queue: jw.MemoryQueue) -> None:
    assert run_pending(ScriptedWorker(queue, {})) == []


# -- wait_for_job --------------------------------------------------------------------------


def test_wait_for_job_blocks_until_a_worker_thread_ends_it(queue: jw.MemoryQueue) -> None:
    release = threading.Event()

    class Gated(ScriptedWorker):
        def execute_job(self, job: jw.AnyJob) -> Any:
            release.wait(TIMEOUT)
            return super().execute_job(job)

    worker = Gated(queue, {})
    thread = worker.start_in_thread()
    try:
        add_job(queue, "w")
        with pytest.raises(jw.WaitTimeoutError):
            wait_for_job(queue, "w", timeout=0.05)
        release.set()
        job = wait_for_job(queue, jw.job_id("w"), timeout=TIMEOUT)
        assert isinstance(job, jw.CompleteJob)
        assert job.result == {"id": "w"}
    finally:
        release.set()
        assert worker.stop(timeout=TIMEOUT)
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_wait_for_job_returns_failed_and_cancelled_jobs(queue: jw.MemoryQueue) -> None:
    worker = ScriptedWorker(queue, {"f": jw.PermanentJobError("no")})
    add_job(queue, "f")
    add_job(queue, "c")
    queue.cancel_job("c")
    run_pending(worker, fail_fast=False)

    assert wait_for_job(queue, "f", timeout=0).status == "failed"
    assert wait_for_job(queue, "c", timeout=0).status == "cancelled"


def test_wait_for_job_timeout_and_unknown_id(queue: jw.MemoryQueue) -> None:
    add_job(queue, "pending")

    with pytest.raises(jw.WaitTimeoutError) as info:
        wait_for_job(queue, "pending", timeout=0.05)
    assert info.value.job_id == "pending"
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(jw.JobNotFoundError):
        wait_for_job(queue, "missing", timeout=0.05)


# -- FakeClock -----------------------------------------------------------------------------


def test_fake_clock_moves_only_when_advanced() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    clock = FakeClock(start)

    assert clock.now() == start
    assert clock.now() == start
    clock.advance(90)
    assert clock.now() == start + dt.timedelta(seconds=90)
    clock.advance(0)
    assert clock.now() == start + dt.timedelta(seconds=90)
    clock.advance(0.25)
    assert clock.now() == start + dt.timedelta(seconds=90.25)
    assert "2026-01-01T00:01:30.250000+00:00" in repr(clock)


def test_fake_clock_defaults_to_an_aware_now() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    clock = FakeClock()
    after = dt.datetime.now(dt.timezone.utc)

    assert clock.now().utcoffset() is not None
    assert before <= clock.now() <= after


def test_fake_clock_keeps_a_non_utc_offset() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    clock = FakeClock(dt.datetime(2026, 1, 1, 12, tzinfo=tz))

    assert clock.now() == dt.datetime(2026, 1, 1, 10, tzinfo=dt.timezone.utc)


def test_fake_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError):
        FakeClock(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize("seconds", [-1, -0.001, float("nan")])
def test_fake_clock_refuses_to_go_back(seconds: float) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    clock = FakeClock(start)

    with pytest.raises(ValueError):
        clock.advance(seconds)
    assert clock.now() == start


def test_fake_clock_drives_the_queue(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    add_job(queue, "j")
    clock.advance(5)
    worker = ScriptedWorker(queue, {})

    (outcome,) = run_pending(worker)

    assert isinstance(outcome.job, jw.CompleteJob)
    assert outcome.job.started_at == clock.now()
    assert outcome.job.completed_at == clock.now()
