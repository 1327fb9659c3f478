"""Edges of the contract, on every backend: storable text, blocking-poll timing, boundaries.

The timing tests run on the real clock, since what they pin is how long a
blocking call sleeps; their bounds are loose (seconds, not milliseconds), and
each fails by hanging until its thread's join times out or by sleeping for
its whole timeout instead of until the job falls due.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from typing import Any

import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.clock import SystemClock
from jobworker.testing import FakeClock

from .conftest import EPOCH, MakeQueue
from .test_contract import JOIN, Background, claim, finish, make_job, stored

# A wait the tests below expect to end well before this many seconds.
PROMPT = 2.0


# -- storable text --------------------------------------------------------------------------


class Failing(jw.JobWorker):
    """Raises *error* from every job."""

    def __init__(self, queue: jw.JobQueue, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
        super().__init__(queue)

    def get_worker_name(self) -> str:
        return self.name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        raise self.error


def test_error_text_and_worker_names_are_cleaned_before_they_are_stored(
    queue: jw.JobQueue,
) -> None:
    # NUL and a lone surrogate: no SQL store takes them as text.
    queue.create_job(make_job("a", max_retries=0))
    worker = Failing(queue, "worker\x00-\ud800", ValueError("bad\x00byte \udc80 here"))
    outcome = worker.run_once()
    assert outcome is not None and outcome.status == "failed"
    failed = stored(queue, "a")
    assert isinstance(failed, m.FailedJob)
    assert failed.error == "ValueError: bad\ufffdbyte ? here"

    queue.create_job(make_job("b"))
    running = claim(queue, worker="worker\x00-\ud800")
    assert running.claim.worker == "worker\ufffd-?"
    held = stored(queue, "b")
    assert isinstance(held, m.RunningJob) and held.claim.worker == "worker\ufffd-?"
    assert finish(queue, running).status == "complete"


# -- blocking-poll timing (real clock) ------------------------------------------------------


def timed(call: Any) -> tuple[Any, float]:
    began = time.monotonic()
    background = Background(call)
    background.join()
    if background.error is not None:
        raise background.error
    return background.result, time.monotonic() - began


def test_a_poll_without_timeout_wakes_for_a_scheduled_job(make_queue: MakeQueue) -> None:
    clock = SystemClock()
    queue = make_queue(clock=clock)
    queue.create_job(make_job("a", run_after=clock.now() + dt.timedelta(seconds=0.3)))
    job, elapsed = timed(lambda: queue.poll_next_pending_job(timeout=None))
    assert job is not None and job.metadata.id == "a"
    assert elapsed < PROMPT


def test_a_poll_without_timeout_wakes_when_a_lease_runs_out(make_queue: MakeQueue) -> None:
    clock = SystemClock()
    queue = make_queue(clock=clock, lease_duration=0.3, retry_policy=jw.RetryPolicy.immediate())
    queue.create_job(make_job("a", created=clock.now()))
    first = claim(queue)
    job, elapsed = timed(lambda: queue.poll_next_pending_job(timeout=None, worker="second"))
    assert job is not None and job.metadata.id == "a"
    assert job.metadata.retry_count == 1 and job.claim != first.claim
    assert elapsed < PROMPT


@pytest.mark.parametrize("what", ["run_after", "lease"])
def test_a_timed_poll_wakes_at_the_next_due_time_not_at_its_timeout(
    make_queue: MakeQueue, what: str
) -> None:
    clock = SystemClock()
    queue = make_queue(clock=clock, lease_duration=0.3, retry_policy=jw.RetryPolicy.immediate())
    if what == "run_after":
        queue.create_job(make_job("a", run_after=clock.now() + dt.timedelta(seconds=0.3)))
    else:
        queue.create_job(make_job("a", created=clock.now()))
        claim(queue)
    job, elapsed = timed(lambda: queue.poll_next_pending_job(timeout=JOIN - 2))
    assert job is not None and job.metadata.id == "a"
    assert elapsed < PROMPT


def test_a_sub_second_wait_for_job_times_out_on_time(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("a"))
    began = time.monotonic()
    with pytest.raises(jw.WaitTimeoutError):
        queue.wait_for_job("a", timeout=0.2)
    assert 0.2 <= time.monotonic() - began < PROMPT


def test_two_waiters_on_one_job_both_see_it_end(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("a"))
    running = claim(queue)
    waiters = [Background(lambda: queue.wait_for_job("a", timeout=JOIN)) for _ in range(2)]
    finish(queue, running, result={"n": 1})
    for waiter in waiters:
        waiter.join()
        assert waiter.error is None
        assert isinstance(waiter.result, m.CompleteJob) and waiter.result.result == {"n": 1}


# -- boundaries and documented attributes -----------------------------------------------------


def test_int32_edges_are_stored_and_ordered(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("low", priority=m.INT_MIN, max_retries=m.INT_MAX))
    queue.create_job(make_job("high", priority=m.INT_MAX, max_retries=0))
    low = stored(queue, "low")
    assert (low.metadata.priority, low.metadata.max_retries) == (m.INT_MIN, m.INT_MAX)
    assert stored(queue, "high").metadata.priority == m.INT_MAX
    assert claim(queue).metadata.id == "high"
    assert claim(queue).metadata.id == "low"


@pytest.mark.parametrize(
    "meta",
    [
        {"priority": m.INT_MAX + 1},
        {"priority": m.INT_MIN - 1},
        {"max_retries": m.INT_MAX + 1},
        {"max_retries": -1},
    ],
)
def test_int32_overflows_are_refused(queue: jw.JobQueue, meta: dict[str, int]) -> None:
    with pytest.raises(jw.InvalidJobError):
        queue.create_job(make_job("a", **meta))
    assert queue.get_job("a") is None


def test_refused_updates_name_the_statuses(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job("a"))
    running = claim(queue)
    done = m.complete(running, 1, now=clock.now())
    with pytest.raises(jw.StaleJobError) as stale:
        queue.update_job(done, "pending", claim=running.claim)
    assert (stale.value.job_id, stale.value.expected, stale.value.actual) == (
        "a",
        "pending",
        "running",
    )
    other = m.new_claim(running.claim.worker)
    with pytest.raises(jw.LeaseLostError) as lost:
        queue.update_job(done, "running", claim=other)
    assert (lost.value.expected, lost.value.actual) == ("running", "running")
    finish(queue, running)
    with pytest.raises(jw.InvalidTransitionError) as invalid:
        queue.update_job(m.PendingJob(running.metadata, running.params), "complete")
    assert (invalid.value.old_status, invalid.value.new_status) == ("complete", "pending")
    assert stored(queue, "a").status == "complete"


def test_cleanup_keeps_a_day_by_default(queue: jw.JobQueue, clock: FakeClock) -> None:
    for job_id in ("old", "recent"):
        queue.create_job(make_job(job_id, created=EPOCH))
        finish(queue, claim(queue))
        clock.advance(3600)
    # "old" ended 24.5 hours ago, "recent" 23.5.
    clock.advance(23.5 * 3600 - 3600)
    assert queue.cleanup_old_jobs() == 1
    assert queue.get_job("old") is None
    assert stored(queue, "recent").status == "complete"


def test_documented_defaults_of_stop_and_cleanup() -> None:
    stop = inspect.signature(jw.JobWorker.stop).parameters["timeout"]
    assert stop.default == 60.0
    cleanup = inspect.signature(jw.JobQueue.cleanup_old_jobs).parameters["retention_hours"]
    assert cleanup.default == 24
