"""The worker off the happy path: leases, heartbeats and outcomes under races.

Faults in the heartbeat's renewals are injected by a MemoryQueue subclass
that fails, refuses or counts real renewals; everything else is the real
queue. Threads are waited for on Conditions, Events and joins, never with
``time.sleep``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

import jobworker as jw
from jobworker.testing import FakeClock

from .test_worker import TIMEOUT, FnWorker, add_job, started, stored


class RenewalQueue(jw.MemoryQueue):
    """A MemoryQueue whose lease renewals follow a plan: ``"raise"``, ``"refuse"`` or ``"ok"``.

    After the plan runs out every renewal is real. ``renewals`` counts
    the real renewals that succeeded, per job id.
    """

    def __init__(self, plan: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.plan = list(plan)
        self.renewals: dict[str, int] = {}
        self.changed = threading.Condition()

    def renew_lease(self, job: jw.RunningJob[Any, Any]) -> bool:
        with self.changed:
            step = self.plan.pop(0) if self.plan else "ok"
        if step == "raise":
            raise jw.BackendError("the store is unreachable")
        renewed = step == "ok" and super().renew_lease(job)
        with self.changed:
            if renewed:
                job_id = job.metadata.id
                self.renewals[job_id] = self.renewals.get(job_id, 0) + 1
            self.changed.notify_all()
        return renewed

    def wait_for_renewals(self, job_id: str, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.renewals.get(job_id, 0) >= count, TIMEOUT)


# -- progress writes and leases -------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def leased_queue(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Any:
    options: dict[str, Any] = {
        "clock": clock,
        "lease_duration": 30.0,
        "retry_policy": jw.RetryPolicy.immediate(),
    }
    if request.param == "memory":
        queue: jw.JobQueue = jw.MemoryQueue(**options)
    else:
        queue = jw.SQLiteQueue(tmp_path / "jobs.sqlite3", **options)
    yield queue
    queue.close()


def test_a_job_whose_worker_wrote_progress_and_died_is_still_recovered(
    leased_queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue = leased_queue
    add_job(queue, "a")
    held = queue.poll_next_pending_job(timeout=0)
    assert held is not None
    clock.advance(20)
    progressed = queue.update_job(attrs.evolve(held, progress={"step": 1}))
    assert isinstance(progressed, jw.RunningJob)
    assert progressed.progress == {"step": 1}
    # The worker dies here: no renewal, no outcome. Its lease still runs out.
    clock.advance(31)
    again = queue.poll_next_pending_job(timeout=0)
    assert again is not None
    assert again.metadata.id == "a"
    assert again.metadata.retry_count == 1


# -- the heartbeat -------------------------------------------------------------------------


def test_a_heartbeat_that_fails_keeps_renewing_and_the_job_is_not_lost() -> None:
    queue = RenewalQueue(["raise", "raise"], lease_duration=30.0)
    seen: dict[str, bool] = {}
    release = threading.Event()

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        # Two failed renewals, then real ones: the heartbeat survived both.
        queue.wait_for_renewals(job.metadata.id, 2)
        seen["cancelled"] = worker.is_cancelled(job)
        release.wait(TIMEOUT)
        return "done"

    worker = FnWorker(queue, execute, heartbeat_interval=0.01)
    with started(worker):
        add_job(queue, "a")
        release.set()
        done = queue.wait_for_job("a", timeout=TIMEOUT)
    assert seen == {"cancelled": False}
    assert isinstance(done, jw.CompleteJob)
    assert done.result == "done"
    metrics = worker.get_metrics()
    assert (metrics.processed, metrics.lost) == (1, 0)


def test_a_refused_renewal_marks_only_that_claim_lost_and_the_heartbeat_goes_on() -> None:
    queue = RenewalQueue(["refuse"], lease_duration=30.0)
    verdicts: list[bool] = []

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        if job.metadata.id == "a":
            # The refusal comes first; then the job is told it lost its claim,
            # although the queue still shows it running under that claim.
            deadline = time.monotonic() + TIMEOUT
            while not worker.is_cancelled(job):
                assert time.monotonic() < deadline, "the refusal was never noticed"
                with queue.changed:
                    queue.changed.wait(0.05)
            verdicts.append(True)
            current = queue.get_job("a")
            assert isinstance(current, jw.RunningJob) and current.claim == job.claim
            worker.raise_if_cancelled(job)
        # The next job is renewed by the same heartbeat, and is not lost.
        queue.wait_for_renewals(job.metadata.id, 2)
        verdicts.append(worker.is_cancelled(job))
        return "done"

    worker = FnWorker(queue, execute, heartbeat_interval=0.01)
    with started(worker):
        add_job(queue, "a")
        assert queue.wait_for_job("a", timeout=TIMEOUT).status == "cancelled"
        add_job(queue, "b")
        done = queue.wait_for_job("b", timeout=TIMEOUT)
    assert isinstance(done, jw.CompleteJob)
    assert verdicts == [True, False]


# -- outcomes under races -----------------------------------------------------------------------


def test_failing_a_job_cancelled_meanwhile_ends_cancelled(queue: jw.MemoryQueue) -> None:
    error = ValueError("late failure")

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        assert queue.cancel_job(job.metadata.id)
        raise error

    worker = FnWorker(queue, execute)
    add_job(queue, "a")
    outcome = worker.run_once()
    assert outcome is not None
    assert outcome.status == "cancelled"
    assert outcome.error is error
    assert isinstance(outcome.job, jw.CancelledJob)
    assert stored(queue, "a").status == "cancelled"
    metrics = worker.get_metrics()
    assert (metrics.cancelled, metrics.lost, metrics.retried, metrics.failed) == (1, 0, 0, 0)


@pytest.mark.parametrize("how", ["fails", "completes"])
def test_an_outcome_of_a_job_lost_meanwhile_is_discarded(clock: FakeClock, how: str) -> None:
    queue = jw.MemoryQueue(
        clock=clock, lease_duration=30.0, retry_policy=jw.RetryPolicy.immediate()
    )
    error = ValueError("late failure")
    rivals: list[jw.RunningJob[Any, Any]] = []

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        clock.advance(3600)  # the lease ran out; another worker took the job
        rival = queue.poll_next_pending_job(timeout=0, worker="rival")
        assert rival is not None
        rivals.append(rival)
        if how == "fails":
            raise error
        return "late"

    worker = FnWorker(queue, execute)
    add_job(queue, "a")
    outcome = worker.run_once()
    assert outcome is not None
    assert outcome.status == "lost"
    assert outcome.error is (error if how == "fails" else None)
    # The job as now stored: running under the rival's claim.
    assert isinstance(outcome.job, jw.RunningJob)
    assert outcome.job.claim == rivals[0].claim
    assert stored(queue, "a") == outcome.job
    metrics = worker.get_metrics()
    assert (metrics.lost, metrics.processed, metrics.retried) == (1, 0, 0)


@pytest.mark.parametrize("how", ["fails", "completes", "progress"])
def test_a_job_deleted_while_it_runs_is_lost(tmp_path: Path, how: str) -> None:
    path = tmp_path / "jobs.sqlite3"
    queue = jw.SQLiteQueue(path)
    verdicts: list[bool] = []

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        # An operator deletes the row behind the queue's back.
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            deleted = db.execute("DELETE FROM jobworker_jobs WHERE id = ?", (job.metadata.id,))
            assert deleted.rowcount == 1
        if how == "progress":
            worker.report_progress(job, {"step": 1}, force=True)
            verdicts.append(worker.is_cancelled(job))
            return "done"
        if how == "fails":
            raise ValueError("boom")
        return "done"

    worker = FnWorker(queue, execute)
    try:
        add_job(queue, "a")
        outcome = worker.run_once()
    finally:
        queue.close()
    assert outcome is not None
    assert outcome.status == "lost"
    assert outcome.job.metadata.id == "a"
    assert outcome.job.status == "running"  # as last held: nothing is stored any more
    assert verdicts == ([True] if how == "progress" else [])
    metrics = worker.get_metrics()
    assert (metrics.lost, metrics.processed, metrics.loop_errors) == (1, 0, 0)


def test_get_retry_delay_receives_the_job_and_the_exception(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    error = ValueError("boom")
    asked: list[tuple[jw.RunningJob[Any, Any], Exception]] = []

    class DelayingWorker(FnWorker):
        def get_retry_delay(self, job: jw.RunningJob[Any, Any], error: Exception) -> float:
            asked.append((job, error))
            return 42.0

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        raise error

    worker = DelayingWorker(queue, execute)
    add_job(queue, "a")
    outcome = worker.run_once()
    assert outcome is not None and outcome.status == "retry" and outcome.error is error
    assert len(asked) == 1
    assert asked[0][0].metadata.id == "a" and asked[0][1] is error
    retried = stored(queue, "a")
    assert retried.metadata.run_after == clock.now() + dt.timedelta(seconds=42)


def test_busy_seconds_add_up_over_jobs(queue: jw.MemoryQueue) -> None:
    spent: list[float] = []

    def execute(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        began = time.monotonic()
        while time.monotonic() - began < 0.02:  # the job's own work, measured
            pass
        spent.append(time.monotonic() - began)
        return None

    worker = FnWorker(queue, execute)
    for job_id in "abc":
        add_job(queue, job_id)
    began = time.monotonic()
    assert [worker.run_once() is not None for _ in range(3)] == [True] * 3
    elapsed = time.monotonic() - began
    busy = worker.get_metrics().busy_seconds
    assert sum(spent) <= busy <= elapsed


class FlakyPollQueue(jw.MemoryQueue):
    """A MemoryQueue whose first poll fails, as a lost database connection would."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.failures = 1

    def poll_next_pending_job(self, **options: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise jw.BackendError("connection lost")
        return super().poll_next_pending_job(**options)


def test_an_error_of_the_loop_is_counted_and_the_loop_goes_on() -> None:
    queue = FlakyPollQueue()
    worker = FnWorker(queue, error_backoff=0.0)
    add_job(queue, "a")
    with started(worker):
        done = queue.wait_for_job("a", timeout=TIMEOUT)
    assert isinstance(done, jw.CompleteJob)
    metrics = worker.get_metrics()
    assert (metrics.loop_errors, metrics.processed, metrics.errors) == (1, 1, 0)


# -- documented defaults ----------------------------------------------------------------------


def test_documented_worker_defaults(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue)
    assert worker.error_backoff == 5.0
    assert worker.progress_interval == 1.0
    assert worker._heartbeat._interval == pytest.approx(queue.lease_duration / 3)
