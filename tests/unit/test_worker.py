"""Tests for jobworker.worker: the loop, retries, cancellation, progress, hooks, metrics, stop.

Most tests drive the worker one step at a time (``run_pending`` / ``run_once``)
on the fake clock; the ones about threads (waking, stopping, heartbeats) start
real worker threads and wait on Events, ``wait_for_job`` or joins with a
timeout, never on ``time.sleep``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

import jobworker as jw
from jobworker.model import WORKER_LOST
from jobworker.testing import FakeClock, run_pending

# Upper bound on any wait for another thread; a passing test never waits this long.
TIMEOUT = 5.0

Execute = Callable[["FnWorker", jw.RunningJob[Any, Any]], Any]


def _succeed(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
    return {"ok": True}


class FnWorker(jw.JobWorker):
    """A worker whose ``execute_job`` is a function, recording every job it runs."""

    def __init__(
        self,
        queue: jw.JobQueue,
        execute: Execute = _succeed,
        *,
        name: str = "FnWorker",
        accept: Callable[[jw.AnyJob], bool] | None = None,
        **options: Any,
    ) -> None:
        self.name = name
        self.execute = execute
        self.accept = accept
        self.calls: list[jw.RunningJob[Any, Any]] = []
        self.judged: list[jw.AnyJob] = []
        super().__init__(queue, **options)

    def get_worker_name(self) -> str:
        return self.name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        self.judged.append(job)
        return True if self.accept is None else self.accept(job)

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        self.calls.append(job)
        return self.execute(self, job)


def add_job(
    queue: jw.JobQueue,
    id: str,
    *,
    type: str = "test",
    params: Any = None,
    **metadata: Any,
) -> jw.PendingJob[Any]:
    """Create a job created "now" on the queue's clock (so FIFO follows arrival)."""
    return queue.create_job(
        jw.new_job(
            type,
            {} if params is None else params,
            id=id,
            user_id="user@example.com",
            created=queue.clock.now(),
            **metadata,
        )
    )


def raising(exc: BaseException) -> Execute:
    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        raise exc

    return execute


def stored(queue: jw.JobQueue, id: str) -> jw.AnyJob:
    job = queue.get_job(id)
    assert job is not None
    return job


@pytest.fixture
def start(queue: jw.MemoryQueue) -> Iterator[Callable[[jw.JobWorker], threading.Thread]]:
    """Start workers in threads; stop and join them at teardown, before the queue closes."""
    running: list[tuple[jw.JobWorker, threading.Thread]] = []

    def start_worker(worker: jw.JobWorker) -> threading.Thread:
        thread = worker.start_in_thread()
        running.append((worker, thread))
        return thread

    yield start_worker
    for worker, thread in running:
        worker.stop(timeout=TIMEOUT)
        thread.join(TIMEOUT)
        assert not thread.is_alive()


@contextlib.contextmanager
def started(worker: jw.JobWorker) -> Iterator[threading.Thread]:
    """Run *worker* in a thread of its own; then stop and join it, and close its queue.

    After the block the worker must stop within TIMEOUT (it may have stopped
    already) and its thread end; after a failure it is only cleaned up.
    """
    thread = worker.start_in_thread()
    try:
        yield thread
    except BaseException:
        worker.stop(timeout=TIMEOUT)
        raise
    else:
        assert worker.stop(timeout=TIMEOUT)
    finally:
        thread.join(TIMEOUT)
        worker.queue.close()
    assert not thread.is_alive()


class IdleSpyQueue(jw.MemoryQueue):
    """A MemoryQueue that reports when a poll is about to sleep.

    ``_next_wake`` runs with the queue lock held just before a poll waits on
    its Condition, and the wait releases that lock. So once ``idle`` is set,
    anything that takes the lock (``create_job``) runs only after the poller
    is asleep: the tests below cannot pass by the job arriving early.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.idle = threading.Event()

    def _next_wake(self, now: float) -> float | None:
        self.idle.set()
        return super()._next_wake(now)


# -- the worked example of DESIGN.md section 1 ---------------------------------------------


def test_design_worked_example() -> None:
    class GenerationWorker(jw.JobWorker):
        def get_worker_name(self) -> str:
            return "GenerationWorker"

        def can_process_job(self, job: jw.AnyJob) -> bool:
            return job.metadata.type == "generation"

        def execute_job(self, job: jw.AnyJob) -> dict[str, str]:
            assert jw.is_running_job(job)
            return {"resource_name": job.params["title"]}

    queue = jw.MemoryQueue()
    worker = GenerationWorker(queue, poll_interval=1.0, error_backoff=5.0)
    thread = worker.start_in_thread()  # a started, named, non-daemon threading.Thread
    try:
        assert isinstance(thread, threading.Thread)
        assert thread.is_alive()
        assert re.fullmatch(r"jobworker-GenerationWorker-\d+", thread.name)
        assert thread.daemon is False
        queue.create_job(
            jw.PendingJob(
                metadata=jw.JobMetadata(
                    id=jw.job_id("job-123"),
                    type="generation",
                    user_id=jw.user_id("user@example.com"),
                    created=datetime.now(timezone.utc),
                    retry_count=0,
                    max_retries=3,
                ),
                params={"title": "Test Article", "prompt": "Test prompt"},
            )
        )
        # ... later
        queue.wait_for_job(jw.job_id("job-123"), timeout=TIMEOUT)
        job = queue.get_job(jw.job_id("job-123"))
        assert job is not None
        assert job.status == "complete" and job.result == {"resource_name": "Test Article"}
        assert worker.stop(timeout=60.0)  # True: stopped within the timeout
        assert not thread.is_alive()
    finally:
        worker.stop(timeout=TIMEOUT)
        queue.close()


# -- retries -------------------------------------------------------------------------------


def test_always_failing_job_runs_one_plus_max_retries_times(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        raise ValueError(f"boom at {job.metadata.retry_count}")

    worker = FnWorker(queue, execute)
    add_job(queue, "doomed", max_retries=3)

    # The default RetryPolicy: 1, 2, 4 seconds before retries 1, 2, 3.
    for attempt, delay in enumerate([1.0, 2.0, 4.0]):
        outcomes = run_pending(worker, fail_fast=False)
        assert [o.status for o in outcomes] == ["retry"]
        job = stored(queue, "doomed")
        assert job.status == "pending"
        assert job.metadata.retry_count == attempt + 1
        assert job.metadata.run_after == clock.now() + dt.timedelta(seconds=delay)
        # Not due yet: nothing runs until the clock reaches run_after.
        assert run_pending(worker) == []
        clock.advance(delay / 2)
        assert run_pending(worker) == []
        clock.advance(delay / 2)

    last_start = clock.now()
    outcomes = run_pending(worker, fail_fast=False)
    assert [o.status for o in outcomes] == ["failed"]
    job = stored(queue, "doomed")
    assert isinstance(job, jw.FailedJob)
    assert job.error == "ValueError: boom at 3"
    assert job.started_at == last_start
    assert job.metadata.retry_count == 3
    assert [c.metadata.retry_count for c in worker.calls] == [0, 1, 2, 3]

    clock.advance(3600)
    assert run_pending(worker) == []
    assert len(worker.calls) == 4


def _unserializable(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
    return {"value": object()}


def _oversized(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
    return "x" * 1000


# (execute, max_retries, queue options, the outcome's error, the stored error in full)
FAILS_FOR_GOOD = {
    "max-retries-zero": (raising(ValueError("once")), 0, {}, ValueError, "ValueError: once"),
    "permanent-error-with-retries-left": (
        raising(jw.PermanentJobError("bad input")),
        3,
        {},
        jw.PermanentJobError,
        "PermanentJobError: bad input",
    ),
    "retry-job-error-without-retries-left": (
        raising(jw.RetryJobError("again", delay=30)),
        0,
        {},
        jw.RetryJobError,
        "RetryJobError: again",
    ),
    "unserializable-result": (
        _unserializable,
        3,
        {},
        jw.SerializationError,
        "SerializationError: .*",
    ),
    "oversized-result": (
        _oversized,
        3,
        {"max_payload": 100},
        jw.PayloadTooLargeError,
        "PayloadTooLargeError: .*",
    ),
}


@pytest.mark.parametrize("case", list(FAILS_FOR_GOOD))
def test_a_job_that_fails_for_good_runs_once(clock: FakeClock, case: str) -> None:
    execute, max_retries, options, error_type, error = FAILS_FOR_GOOD[case]
    with jw.MemoryQueue(clock=clock, **options) as queue:
        worker = FnWorker(queue, execute)
        add_job(queue, "j", max_retries=max_retries)

        outcomes = run_pending(worker, fail_fast=False)

        assert [o.status for o in outcomes] == ["failed"]
        assert isinstance(outcomes[0].error, error_type)
        job = stored(queue, "j")
        assert isinstance(job, jw.FailedJob)
        assert re.fullmatch(error, job.error), job.error
        assert job.started_at == clock.now()
        assert job.metadata.retry_count == 0
        clock.advance(3600)
        assert run_pending(worker) == []
        assert len(worker.calls) == 1


def test_retry_delay_follows_the_workers_retry_policy(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    policy = jw.RetryPolicy(base=10.0, factor=3.0)
    worker = FnWorker(queue, raising(ValueError("x")), retry_policy=policy)
    add_job(queue, "j", max_retries=3)

    run_pending(worker, fail_fast=False)
    assert stored(queue, "j").metadata.run_after == clock.now() + dt.timedelta(seconds=10)
    clock.advance(10)
    run_pending(worker, fail_fast=False)
    assert stored(queue, "j").metadata.run_after == clock.now() + dt.timedelta(seconds=30)
    clock.advance(29)
    assert run_pending(worker) == []
    assert len(worker.calls) == 2


def test_get_retry_delay_override_is_used(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    class SevenSeconds(FnWorker):
        def get_retry_delay(self, job: jw.RunningJob[Any, Any], error: Exception) -> float:
            return 7.0

    worker = SevenSeconds(queue, raising(ValueError("x")))
    add_job(queue, "j")

    run_pending(worker, fail_fast=False)

    assert stored(queue, "j").metadata.run_after == clock.now() + dt.timedelta(seconds=7)


def test_retry_job_error_retries_after_its_delay(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        if job.metadata.retry_count == 0:
            raise jw.RetryJobError("rate limited", delay=30)
        return {"ok": True}

    worker = FnWorker(queue, execute)
    add_job(queue, "r", max_retries=3)

    outcomes = run_pending(worker, fail_fast=False)
    assert [o.status for o in outcomes] == ["retry"]
    job = stored(queue, "r")
    assert job.status == "pending"
    assert job.metadata.retry_count == 1  # it counts as an attempt
    assert job.metadata.run_after == clock.now() + dt.timedelta(seconds=30)

    clock.advance(1)  # the policy's default delay would be 1 s: not used here
    assert run_pending(worker) == []
    clock.advance(28.5)
    assert run_pending(worker) == []
    clock.advance(0.5)
    assert [o.status for o in run_pending(worker)] == ["complete"]
    assert stored(queue, "r").status == "complete"
    assert len(worker.calls) == 2


# -- cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["returns", "raises"])
def test_job_cancelled_while_running_ends_cancelled(
    queue: jw.MemoryQueue, start: Callable[[jw.JobWorker], threading.Thread], ending: str
) -> None:
    running = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        seen["before"] = worker.is_cancelled(job)
        running.set()
        release.wait(TIMEOUT)
        seen["after"] = worker.is_cancelled(job)
        try:
            worker.raise_if_cancelled(job)
        except jw.JobCancelledError as exc:
            seen["raised"] = exc
            if ending == "raises":
                raise
        return {"late": "result"}

    worker = FnWorker(queue, execute)
    start(worker)
    add_job(queue, "c")
    assert running.wait(TIMEOUT)

    assert queue.cancel_job("c") is True
    release.set()
    assert worker.stop(timeout=TIMEOUT)  # the current job is over once this returns

    assert seen["before"] is False
    assert seen["after"] is True
    assert isinstance(seen["raised"], jw.JobCancelledError)
    job = stored(queue, "c")
    assert job.status == "cancelled"
    assert isinstance(job, jw.CancelledJob)
    assert not hasattr(job, "result")
    assert job.started_at is not None
    metrics = worker.get_metrics()
    assert (metrics.cancelled, metrics.processed, metrics.errors) == (1, 0, 0)


def test_job_raising_job_cancelled_error_on_its_own_ends_cancelled(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    worker = FnWorker(queue, raising(jw.JobCancelledError("giving up")))
    add_job(queue, "self-cancel", max_retries=3)

    outcomes = run_pending(worker)  # a cancellation is not a failure: no raise

    assert [o.status for o in outcomes] == ["cancelled"]
    job = stored(queue, "self-cancel")
    assert isinstance(job, jw.CancelledJob)
    assert job.started_at == clock.now()
    assert job.metadata.retry_count == 0
    metrics = worker.get_metrics()
    assert (metrics.cancelled, metrics.errors, metrics.retried) == (1, 0, 0)


def test_cancelled_pending_job_is_never_run(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue)
    add_job(queue, "gone")
    assert queue.cancel_job("gone") is True

    assert run_pending(worker) == []
    assert worker.calls == []


# -- progress ------------------------------------------------------------------------------


def test_report_progress_is_throttled(queue: jw.MemoryQueue) -> None:
    seen: dict[str, Any] = {}

    def progress(job_id: str) -> Any:
        job = stored(queue, job_id)
        assert isinstance(job, jw.RunningJob)
        return job.progress

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        first = worker.report_progress(job, {"pct": 10})
        seen["first"] = first
        seen["stored_after_first"] = progress(job.metadata.id)
        second = worker.report_progress(first, {"pct": 20})
        seen["second"] = second
        seen["stored_after_second"] = progress(job.metadata.id)
        third = worker.report_progress(second, {"pct": 30}, force=True)
        seen["third"] = third
        seen["stored_after_third"] = progress(job.metadata.id)
        return {"ok": True}

    worker = FnWorker(queue, execute, progress_interval=3600)
    add_job(queue, "p")

    assert [o.status for o in run_pending(worker)] == ["complete"]

    assert seen["first"].progress == {"pct": 10}
    assert seen["first"].claim == worker.calls[0].claim
    assert seen["stored_after_first"] == {"pct": 10}
    # Within progress_interval: not written, but the evolved job is returned.
    assert seen["second"].status == "running"
    assert seen["second"].progress == {"pct": 20}
    assert seen["stored_after_second"] == {"pct": 10}
    # force=True writes anyway.
    assert seen["third"].progress == {"pct": 30}
    assert seen["stored_after_third"] == {"pct": 30}


def test_report_progress_with_zero_interval_writes_every_time(queue: jw.MemoryQueue) -> None:
    written: list[Any] = []

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        for pct in (10, 20, 30):
            job = worker.report_progress(job, {"pct": pct})
            current = stored(queue, job.metadata.id)
            assert isinstance(current, jw.RunningJob)
            written.append(current.progress)
        return None

    worker = FnWorker(queue, execute, progress_interval=0)
    add_job(queue, "p")

    run_pending(worker)

    assert written == [{"pct": 10}, {"pct": 20}, {"pct": 30}]


def test_report_progress_on_a_cancelled_job_does_not_raise(queue: jw.MemoryQueue) -> None:
    seen: dict[str, Any] = {}

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        assert queue.cancel_job(job.metadata.id)  # cancelled meanwhile
        seen["returned"] = worker.report_progress(job, {"pct": 50}, force=True)
        seen["is_cancelled"] = worker.is_cancelled(job)
        with pytest.raises(jw.JobCancelledError):
            worker.raise_if_cancelled(job)
        return {"late": True}

    worker = FnWorker(queue, execute)
    add_job(queue, "p")

    outcomes = run_pending(worker)

    assert seen["returned"].progress == {"pct": 50}
    assert seen["is_cancelled"] is True
    assert [o.status for o in outcomes] == ["cancelled"]
    assert stored(queue, "p").status == "cancelled"


def test_report_progress_with_a_lost_claim_marks_the_job_cancelled(
    clock: FakeClock,
) -> None:
    # run_once has no heartbeat: once the fake clock passes the lease, the job is recovered.
    queue = jw.MemoryQueue(clock=clock, lease_duration=10)
    seen: dict[str, Any] = {}

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        clock.advance(11)
        worker.report_progress(job, {"pct": 1}, force=True)  # refused: recovered
        seen["is_cancelled"] = worker.is_cancelled(job)
        return {"late": True}

    worker = FnWorker(queue, execute)
    add_job(queue, "l", max_retries=3)

    outcomes = run_pending(worker)

    assert seen["is_cancelled"] is True
    assert [o.status for o in outcomes] == ["lost"]
    job = stored(queue, "l")
    assert job.status == "pending"
    assert job.metadata.retry_count == 1
    assert worker.get_metrics().lost == 1
    queue.close()


# -- hooks ---------------------------------------------------------------------------------


class HookWorker(FnWorker):
    def __init__(self, *args: Any, broken: str | None = None, **kwargs: Any) -> None:
        self.events: list[tuple[str, jw.AnyJob, BaseException | None]] = []
        self.broken = broken
        super().__init__(*args, **kwargs)

    def _record(self, name: str, job: jw.AnyJob, error: BaseException | None = None) -> None:
        self.events.append((name, job, error))
        if self.broken == name:
            raise RuntimeError(f"hook {name} broke")

    def on_job_start(self, job: jw.RunningJob[Any, Any]) -> None:
        self._record("start", job)

    def on_job_complete(self, job: jw.AnyJob) -> None:
        self._record("complete", job)

    def on_job_fail(self, job: jw.AnyJob, error: BaseException) -> None:
        self._record("fail", job, error)


def test_hooks_get_the_right_jobs(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    error = ValueError("nope")

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        if job.metadata.id == "bad":
            raise error
        return {"ok": True}

    worker = HookWorker(queue, execute)
    add_job(queue, "good")
    add_job(queue, "bad", max_retries=1)

    run_pending(worker, fail_fast=False)
    clock.advance(1)
    run_pending(worker, fail_fast=False)

    names = [(name, job.metadata.id, job.status) for name, job, _ in worker.events]
    assert names == [
        ("start", "good", "running"),
        ("complete", "good", "complete"),
        ("start", "bad", "running"),
        ("fail", "bad", "pending"),  # will be retried
        ("start", "bad", "running"),
        ("fail", "bad", "failed"),  # no retry left
    ]
    assert worker.events[0][1] == worker.calls[0]
    assert worker.events[1][1] == stored(queue, "good")
    assert worker.events[3][1].metadata.retry_count == 1
    assert worker.events[5][1] == stored(queue, "bad")
    assert worker.events[3][2] is error and worker.events[5][2] is error


@pytest.mark.parametrize(
    ("broken", "fails", "expected"),
    [
        ("start", False, "complete"),
        ("complete", False, "complete"),
        ("fail", True, "pending"),
    ],
)
def test_a_failing_hook_is_logged_and_changes_nothing(
    queue: jw.MemoryQueue,
    caplog: pytest.LogCaptureFixture,
    broken: str,
    fails: bool,
    expected: str,
) -> None:
    caplog.set_level(logging.ERROR, logger="jobworker.worker")
    execute = raising(ValueError("job failed")) if fails else _succeed
    worker = HookWorker(queue, execute, broken=broken)
    add_job(queue, "h", max_retries=3)

    outcomes = run_pending(worker, fail_fast=False)

    job = stored(queue, "h")
    assert job.status == expected
    assert [o.status for o in outcomes] == ["retry" if fails else "complete"]
    if not fails:
        assert job.result == {"ok": True}
    hook_records = [
        r for r in caplog.records if r.name == "jobworker.worker" and "hook" in r.getMessage()
    ]
    assert len(hook_records) == 1
    assert f"on_job_{broken}" in hook_records[0].getMessage()
    assert hook_records[0].levelno == logging.ERROR
    assert hook_records[0].exc_info is not None
    assert hook_records[0].exc_info[0] is RuntimeError


# -- metrics -------------------------------------------------------------------------------


def test_metrics_start_at_zero(queue: jw.MemoryQueue) -> None:
    metrics = FnWorker(queue).get_metrics()

    assert (metrics.processed, metrics.errors, metrics.retried) == (0, 0, 0)
    assert (metrics.failed, metrics.cancelled, metrics.lost, metrics.loop_errors) == (0, 0, 0, 0)
    assert metrics.error_rate == 0.0
    assert metrics.current_job is None
    assert metrics.last_error is None
    assert metrics.busy_seconds == 0.0


def test_metrics_count_a_known_mix_of_jobs(queue: jw.MemoryQueue) -> None:
    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        kind = job.metadata.id.rstrip("0123456789")
        if kind == "flaky" and job.metadata.retry_count == 0:
            raise ValueError("flaky")
        if kind == "doomed":
            raise ValueError("doomed")
        if kind == "cancel":
            raise jw.JobCancelledError("stop")
        return {"ok": True}

    worker = FnWorker(queue, execute, retry_policy=jw.RetryPolicy.immediate())
    add_job(queue, "ok1")
    add_job(queue, "ok2")
    add_job(queue, "flaky1", max_retries=3)  # fails once, then completes
    add_job(queue, "doomed1", max_retries=1)  # fails twice: retried once, then failed
    add_job(queue, "cancel1")

    outcomes = run_pending(worker, fail_fast=False)

    assert len(outcomes) == 7
    metrics = worker.get_metrics()
    assert metrics.processed == 3
    assert metrics.errors == 3
    assert metrics.retried == 2
    assert metrics.failed == 1
    assert metrics.cancelled == 1
    assert metrics.lost == 0
    assert metrics.loop_errors == 0
    assert metrics.error_rate == pytest.approx(3 / 6)
    assert metrics.last_error == "ValueError: doomed"
    assert metrics.current_job is None
    assert metrics.busy_seconds >= 0.0


def test_error_rate_is_errors_over_processed_plus_errors() -> None:
    metrics = jw.WorkerMetrics(
        processed=3,
        errors=1,
        retried=0,
        failed=0,
        cancelled=5,
        lost=0,
        loop_errors=2,
        busy_seconds=0.0,
        current_job=None,
        last_error=None,
    )

    assert metrics.error_rate == pytest.approx(0.25)


# -- waking and stopping -------------------------------------------------------------------


def test_idle_worker_wakes_when_a_job_arrives(clock: FakeClock) -> None:
    queue = IdleSpyQueue(clock=clock)
    worker = FnWorker(queue, poll_interval=30)
    with started(worker):
        assert queue.idle.wait(TIMEOUT)  # the worker is asleep in its poll
        began = time.monotonic()
        add_job(queue, "late")
        job = queue.wait_for_job("late", timeout=TIMEOUT)  # would time out after 30 s polls
        assert job.status == "complete"
        assert time.monotonic() - began < 2.0


def test_idle_worker_wakes_for_a_scheduled_job() -> None:
    # Real clock: nothing notifies when run_after passes; the poll must time its own wait.
    queue = jw.MemoryQueue()
    worker = FnWorker(queue, poll_interval=30)
    with started(worker):
        run_after = queue.clock.now() + dt.timedelta(seconds=0.2)
        add_job(queue, "scheduled", run_after=run_after)
        job = queue.wait_for_job("scheduled", timeout=TIMEOUT)
        assert isinstance(job, jw.CompleteJob)
        assert job.started_at >= run_after


def assert_stops_at_once(worker: jw.JobWorker, thread: threading.Thread) -> None:
    """Assert that stop() ends the waiting *worker* well within its 30 s wait."""
    began = time.monotonic()
    assert worker.stop(timeout=5) is True
    assert time.monotonic() - began < 2.0
    assert not thread.is_alive()


def test_stop_of_an_idle_worker_returns_at_once(clock: FakeClock) -> None:
    queue = IdleSpyQueue(clock=clock)
    worker = FnWorker(queue, poll_interval=30)
    with started(worker) as thread:
        assert queue.idle.wait(TIMEOUT)
        assert_stops_at_once(worker, thread)
        assert worker.is_stopping()


def test_stop_during_a_long_job_reports_late_and_the_job_finishes(
    queue: jw.MemoryQueue, start: Callable[[jw.JobWorker], threading.Thread]
) -> None:
    running = threading.Event()
    release = threading.Event()

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        running.set()
        assert release.wait(TIMEOUT)
        return {"done": True}

    worker = FnWorker(queue, execute, accept=lambda job: job.metadata.id == "long")
    thread = start(worker)
    add_job(queue, "long")
    assert running.wait(TIMEOUT)
    assert worker.get_metrics().current_job == "long"
    add_job(queue, "next")  # must not be taken once a stop is asked for

    assert worker.stop(timeout=0.2) is False
    assert thread.is_alive()
    assert worker.is_stopping()

    release.set()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    job = stored(queue, "long")
    assert job.status == "complete"
    assert job.result == {"done": True}
    assert stored(queue, "next").status == "pending"
    assert worker.stop(timeout=0) is True
    assert worker.get_metrics().current_job is None
    assert worker.get_metrics().processed == 1


def test_stop_from_inside_execute_job_does_not_block(
    queue: jw.MemoryQueue, start: Callable[[jw.JobWorker], threading.Thread]
) -> None:
    seen: dict[str, Any] = {}

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        seen["stop"] = worker.stop(timeout=TIMEOUT)
        return {"ok": True}

    worker = FnWorker(queue, execute)
    thread = start(worker)
    add_job(queue, "s")

    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert seen["stop"] is False  # not stopped yet: the current job was still running
    assert stored(queue, "s").status == "complete"


def test_request_stop_returns_at_once_and_the_current_job_finishes(
    queue: jw.MemoryQueue, start: Callable[[jw.JobWorker], threading.Thread]
) -> None:
    running = threading.Event()
    release = threading.Event()

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        running.set()
        assert release.wait(TIMEOUT)
        return {"done": True}

    worker = FnWorker(queue, execute)
    thread = start(worker)
    add_job(queue, "long")
    assert running.wait(TIMEOUT)
    add_job(queue, "next")

    worker.request_stop()  # returns while the job still runs
    assert worker.is_stopping()
    assert thread.is_alive()

    release.set()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert stored(queue, "long").status == "complete"
    assert stored(queue, "next").status == "pending"
    assert worker.stop(timeout=0) is True


class LifecycleWorker(FnWorker):
    """Records the thread and the order of on_worker_start / on_worker_stop."""

    def __init__(self, queue: jw.JobQueue, *, fail: bool = False, **options: Any) -> None:
        super().__init__(queue, **options)
        self.fail = fail
        self.events: list[tuple[str, int]] = []

    def on_worker_start(self) -> None:
        self.events.append(("start", threading.get_ident()))
        if self.fail:
            raise RuntimeError("start hook broke")

    def on_worker_stop(self) -> None:
        self.events.append(("stop", threading.get_ident()))
        if self.fail:
            raise RuntimeError("stop hook broke")


def test_worker_hooks_run_in_the_worker_thread_before_stop_returns(
    queue: jw.MemoryQueue,
) -> None:
    worker = LifecycleWorker(queue)
    thread = worker.start_in_thread()
    add_job(queue, "a")
    assert queue.wait_for_job("a", timeout=TIMEOUT).status == "complete"
    assert worker.stop(timeout=TIMEOUT) is True
    # Both ran in the worker's own thread, and the stop hook before stop() returned.
    assert worker.events == [("start", thread.ident), ("stop", thread.ident)]
    thread.join(TIMEOUT)


def test_failing_worker_hooks_are_logged_and_the_worker_runs_on(
    queue: jw.MemoryQueue, caplog: pytest.LogCaptureFixture
) -> None:
    worker = LifecycleWorker(queue, fail=True)
    with caplog.at_level(logging.ERROR, logger="jobworker.worker"):
        thread = worker.start_in_thread()
        add_job(queue, "a")
        assert queue.wait_for_job("a", timeout=TIMEOUT).status == "complete"
        assert worker.stop(timeout=TIMEOUT) is True
    thread.join(TIMEOUT)
    assert [name for name, _ in worker.events] == ["start", "stop"]
    failed = [r.getMessage() for r in caplog.records if "hook" in r.getMessage()]
    assert any("on_worker_start" in m for m in failed), failed
    assert any("on_worker_stop" in m for m in failed), failed


# -- the loop survives its own errors ------------------------------------------------------


class FlakyPollQueue(jw.MemoryQueue):
    """A MemoryQueue whose first poll raises; records when each poll came."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[float] = []
        self.polled_again = threading.Event()

    def poll_next_pending_job(self, **kwargs: Any) -> jw.RunningJob[Any, Any] | None:
        self.calls.append(time.monotonic())
        if len(self.calls) == 1:
            raise RuntimeError("poll broke")
        self.polled_again.set()
        return super().poll_next_pending_job(**kwargs)


def test_loop_survives_a_failing_poll_and_backs_off(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="jobworker.worker")
    queue = FlakyPollQueue(clock=clock)
    worker = FnWorker(queue, error_backoff=0.2)
    with started(worker):
        assert queue.polled_again.wait(TIMEOUT)
        assert queue.calls[1] - queue.calls[0] >= 0.15  # it waited error_backoff
        metrics = worker.get_metrics()
        assert metrics.loop_errors == 1
        assert metrics.last_error == "RuntimeError: poll broke"
        assert any("error in the loop" in r.getMessage() for r in caplog.records)

        add_job(queue, "after")
        assert queue.wait_for_job("after", timeout=TIMEOUT).status == "complete"
        assert worker.get_metrics().loop_errors == 1


def test_stop_interrupts_the_error_backoff(clock: FakeClock) -> None:
    class BrokenQueue(jw.MemoryQueue):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.failed = threading.Event()

        def poll_next_pending_job(self, **kwargs: Any) -> jw.RunningJob[Any, Any] | None:
            self.failed.set()
            raise RuntimeError("always broken")

    queue = BrokenQueue(clock=clock)
    worker = FnWorker(queue, error_backoff=30)
    with started(worker) as thread:
        assert queue.failed.wait(TIMEOUT)
        assert_stops_at_once(worker, thread)  # not after the 30 s backoff


# -- BaseException -------------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [3, 0])
def test_keyboard_interrupt_propagates_and_releases_the_job(
    queue: jw.MemoryQueue, max_retries: int
) -> None:
    worker = FnWorker(queue, raising(KeyboardInterrupt()))
    add_job(queue, "k", max_retries=max_retries)

    with pytest.raises(KeyboardInterrupt):
        worker.run_once(timeout=0)

    job = stored(queue, "k")
    assert job.status == "pending"
    assert job.metadata.retry_count == 0


def test_keyboard_interrupt_propagates_and_the_job_is_not_left_running(
    queue: jw.MemoryQueue,
) -> None:
    worker = FnWorker(queue, raising(KeyboardInterrupt()))
    add_job(queue, "k", max_retries=3)

    with pytest.raises(KeyboardInterrupt):
        worker.run_once(timeout=0)

    assert stored(queue, "k").status == "pending"
    assert worker.get_metrics().current_job is None


# -- lifecycle -----------------------------------------------------------------------------


def test_start_twice_raises(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue)
    with started(worker):
        with pytest.raises(jw.WorkerStateError):
            worker.start_in_thread()
        with pytest.raises(jw.WorkerStateError):
            worker.start()


def test_stop_before_start_then_start_raises(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue)

    assert worker.stop() is True
    assert worker.stop(timeout=0) is True  # again: still True
    with pytest.raises(jw.WorkerStateError):
        worker.start_in_thread()
    with pytest.raises(jw.WorkerStateError):
        worker.start()


def test_a_stopped_worker_cannot_restart(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue)
    thread = worker.start_in_thread()
    assert worker.stop(timeout=TIMEOUT)
    thread.join(TIMEOUT)
    assert not thread.is_alive()

    with pytest.raises(jw.WorkerStateError):
        worker.start_in_thread()


def test_start_blocks_the_calling_thread_until_stop(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue)
    caller = threading.Thread(target=worker.start, name="caller")
    caller.start()
    try:
        add_job(queue, "b")
        assert queue.wait_for_job("b", timeout=TIMEOUT).status == "complete"
        assert worker.calls[0].claim.worker == "FnWorker"
        assert caller.is_alive()  # start() is still looping
    finally:
        assert worker.stop(timeout=TIMEOUT) is True
        caller.join(TIMEOUT)
    assert not caller.is_alive()


def test_run_once_after_stop_takes_nothing(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue)
    add_job(queue, "j")
    worker.stop()

    assert worker.run_once(timeout=0) is None
    assert stored(queue, "j").status == "pending"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"poll_interval": 0}, ValueError),
        ({"poll_interval": -1}, ValueError),
        ({"poll_interval": float("nan")}, ValueError),
        ({"error_backoff": -0.1}, ValueError),
        ({"progress_interval": -1}, ValueError),
        ({"heartbeat_interval": 30.0}, ValueError),  # == the queue's lease_duration
        ({"heartbeat_interval": 31.0}, ValueError),
        ({"heartbeat_interval": 0}, ValueError),
        ({"job_types": "generation"}, TypeError),
    ],
)
def test_constructor_validates(
    queue: jw.MemoryQueue, options: dict[str, Any], error: type[Exception]
) -> None:
    assert queue.lease_duration == 30.0
    with pytest.raises(error):
        FnWorker(queue, **options)


def test_constructor_defaults(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue, job_types=["a", "b", "a"], error_backoff=0)

    assert worker.poll_interval == 1.0
    assert worker.error_backoff == 0.0
    assert worker.job_types == frozenset({"a", "b"})
    assert worker.retry_policy == jw.RetryPolicy()
    assert "FnWorker" in repr(worker)


# -- job_types and can_process_job ---------------------------------------------------------


def test_job_types_limit_what_is_claimed(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue, accept=lambda job: True, job_types={"a"})
    add_job(queue, "b1", type="b")
    add_job(queue, "a1", type="a")
    add_job(queue, "b2", type="b")

    outcomes = run_pending(worker)

    assert [o.job.metadata.id for o in outcomes] == ["a1"]
    assert stored(queue, "b1").status == "pending"
    assert stored(queue, "b2").status == "pending"
    assert all(job.metadata.type == "a" for job in worker.judged)


def test_can_process_job_has_the_last_word(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue, accept=lambda job: job.params.get("take", True), job_types={"a", "b"})
    add_job(queue, "a1", type="a", params={"take": False})
    add_job(queue, "a2", type="a")
    add_job(queue, "b1", type="b", params={"take": False})

    outcomes = run_pending(worker)

    assert [o.job.metadata.id for o in outcomes] == ["a2"]
    assert stored(queue, "a1").status == "pending"
    assert stored(queue, "b1").status == "pending"
    assert all(job.status == "pending" for job in worker.judged)


def test_jobs_run_oldest_first(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    worker = FnWorker(queue)
    for name in ("zeta", "alpha", "mid"):
        add_job(queue, name)
        clock.advance(1)

    outcomes = run_pending(worker)

    assert [o.job.metadata.id for o in outcomes] == ["zeta", "alpha", "mid"]


# -- heartbeats and leases (real clock) ----------------------------------------------------


def test_heartbeat_keeps_a_long_job_leased() -> None:
    queue = jw.MemoryQueue(lease_duration=0.3)
    running = threading.Event()

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        running.set()
        threading.Event().wait(1.0)  # the job's own work: about three leases long
        return {"done": True}

    worker = FnWorker(queue, execute, job_types={"slow"}, heartbeat_interval=0.05)
    with started(worker):
        add_job(queue, "slow", type="slow")
        assert running.wait(TIMEOUT)
        # Another poller wakes at every lease deadline and would recover an expired lease.
        assert queue.poll_next_pending_job(types={"other"}, timeout=0.6) is None
        job = stored(queue, "slow")
        assert job.status == "running"
        assert job.metadata.retry_count == 0

        done = queue.wait_for_job("slow", timeout=TIMEOUT)
        assert isinstance(done, jw.CompleteJob)
        assert done.result == {"done": True}
        assert done.metadata.retry_count == 0
        assert worker.get_metrics().lost == 0


@contextlib.contextmanager
def stopped_late(
    queue: jw.MemoryQueue, max_retries: int
) -> Iterator[tuple[FnWorker, threading.Thread, threading.Event]]:
    """A worker asked to stop while it runs job "slow", which outlasts the stop's timeout.

    Yields the worker, its thread, and the Event that lets the job return. The
    stop has ended the heartbeat, so the job's lease runs out. At the end the
    job is released, and the worker stopped and its queue closed (:func:`started`).
    """
    running = threading.Event()
    release = threading.Event()

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        running.set()
        release.wait(TIMEOUT)
        return {"late": True}

    worker = FnWorker(queue, execute, job_types={"slow"}, heartbeat_interval=0.05)
    with started(worker) as thread:
        try:
            add_job(queue, "slow", type="slow", max_retries=max_retries)
            assert running.wait(TIMEOUT)
            assert worker.stop(timeout=0.05) is False
            yield worker, thread, release
        finally:
            release.set()  # before the worker is stopped and joined


def test_after_a_late_stop_the_lease_expires_and_the_job_is_retried() -> None:
    queue = jw.MemoryQueue(lease_duration=0.3, retry_policy=jw.RetryPolicy.immediate())
    with stopped_late(queue, max_retries=3) as (worker, thread, release):
        # The heartbeat stopped: the lease runs out and the next poll recovers the job.
        second = queue.poll_next_pending_job(types={"slow"}, worker="second", timeout=TIMEOUT)
        assert second is not None
        assert second.metadata.id == "slow"
        assert second.metadata.retry_count == 1

        release.set()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        # The first holder's result was refused: the second attempt still holds the job.
        job = stored(queue, "slow")
        assert isinstance(job, jw.RunningJob)
        assert job.claim == second.claim
        assert worker.get_metrics().lost == 1
        assert worker.get_metrics().processed == 0


def test_after_a_late_stop_a_job_without_retries_fails_as_worker_lost() -> None:
    queue = jw.MemoryQueue(lease_duration=0.3)
    with stopped_late(queue, max_retries=0) as (worker, thread, release):
        # This poll wakes at the lease deadline, recovers the job, finds nothing to take.
        assert queue.poll_next_pending_job(types={"slow"}, timeout=0.8) is None
        job = stored(queue, "slow")
        assert isinstance(job, jw.FailedJob)
        assert job.error == WORKER_LOST

        release.set()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        job = stored(queue, "slow")
        assert isinstance(job, jw.FailedJob)  # the late result did not resurrect it
        assert worker.get_metrics().lost == 1


class _Unprintable(Exception):
    """An exception whose message cannot be made: its ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def test_an_exception_whose_str_raises_still_fails_its_job() -> None:
    def explode(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        raise _Unprintable()

    queue = jw.MemoryQueue()
    add_job(queue, "unprintable", max_retries=0)
    [outcome] = run_pending(FnWorker(queue, explode), fail_fast=False)
    assert outcome.status == "failed"
    stored = queue.get_job(jw.job_id("unprintable"))
    assert isinstance(stored, jw.FailedJob)
    assert stored.error == "_Unprintable: <str() raised RuntimeError>"
    [attempt] = stored.attempts
    assert attempt.error is not None and attempt.error.message == "<str() raised RuntimeError>"
