"""MemoryQueue beyond the backend contract.

Everything the JobQueue contract asks of a backend (refusals, compare-and-set
updates, claim order, leases, waiting, closing) is tested once for every
backend, MemoryQueue included, in ``tests/contract``. This file holds only
what is particular to MemoryQueue.
"""

from __future__ import annotations

import threading

import pytest

import jobworker as jw
from jobworker.errors import QueueClosedError
from jobworker.testing import FakeClock
from tests.contract.conftest import ReportingClock

JOIN = 10.0  # seconds a test waits for one of its own threads before failing


def test_close_wakes_a_poll_of_any_type_blocked_forever() -> None:
    # MemoryQueue reads the clock under its lock just before a poll sleeps, so
    # once another thread has read it, close() (which takes the lock) finds the
    # poll asleep: close must notify a waiter that named no types and no timeout.
    clock = ReportingClock()
    queue = jw.MemoryQueue(clock=clock)
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            queue.poll_next_pending_job(timeout=None)
        except BaseException as exc:  # handed to the test, which asserts on it
            errors.append(exc)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    assert clock.read_elsewhere.wait(JOIN)
    queue.close()
    poller.join(JOIN)
    assert not poller.is_alive(), "the poll did not return after close()"
    assert len(errors) == 1
    assert isinstance(errors[0], QueueClosedError)


def test_after_a_refusal_a_predicate_poll_still_weighs_the_head_of_every_type(
    clock: FakeClock,
) -> None:
    # The head of type a is refused, so a is scanned further; the heads of b
    # and c are both still weighed, and c's priority wins over b's.
    queue = jw.MemoryQueue(clock=clock)
    try:
        for job_id, job_type, priority in [
            ("a-1", "a", 9),
            ("a-2", "a", 0),
            ("b-1", "b", 1),
            ("c-1", "c", 5),
        ]:
            queue.create_job(
                jw.new_job(job_type, {}, id=job_id, priority=priority, created=clock.now())
            )
        judged: list[str] = []

        def refuse_a1(job: jw.AnyJob) -> bool:
            judged.append(job.metadata.id)
            return job.metadata.id != "a-1"

        claimed = queue.poll_next_pending_job(timeout=0, predicate=refuse_a1, worker="w")

        assert claimed is not None and claimed.metadata.id == "c-1"
        assert judged[0] == "a-1"
        stored = queue.get_job("a-1")
        assert stored is not None and stored.status == "pending"
    finally:
        queue.close()


def test_a_wait_that_runs_out_names_the_job_and_the_timeout(clock: FakeClock) -> None:
    queue = jw.MemoryQueue(clock=clock)
    try:
        queue.create_job(jw.new_job("t", {}, id="slow"))
        with pytest.raises(jw.WaitTimeoutError) as info:
            queue.wait_for_job("slow", timeout=0.05)
        assert info.value.job_id == "slow"
        assert str(info.value) == "job 'slow' did not end within 0.05 seconds"
        stored = queue.get_job("slow")
        assert stored is not None and stored.status == "pending"  # unchanged
    finally:
        queue.close()
