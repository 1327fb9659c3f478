"""What a worker tells its operator and its job: log records, cancellation, its repr.

Pinned because mutation testing showed nothing held them: the job id and
traceback in "progress not recorded", the worker's name and traceback in
loop errors (first at ERROR, the rest at DEBUG), the message of
``raise_if_cancelled``, a queue that reports a missing job by raising, and the
time a cancellation is stored at.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import jobworker as jw
from jobworker.testing import FakeClock

from .test_worker import TIMEOUT, FnWorker, add_job, stored


def claim(queue: jw.JobQueue, worker: jw.JobWorker) -> jw.RunningJob[Any, Any]:
    job = queue.poll_next_pending_job(timeout=0, worker=worker.get_worker_name())
    assert job is not None
    return job


def test_a_progress_write_that_fails_is_logged_with_the_job_id_and_its_traceback(
    queue: jw.MemoryQueue, caplog: pytest.LogCaptureFixture
) -> None:
    add_job(queue, "p1")
    worker = FnWorker(queue, progress_interval=0)
    job = claim(queue, worker)
    caplog.set_level(logging.DEBUG, logger="jobworker.worker")

    # A value JSON cannot hold: the queue refuses the write for real.
    bad = object()
    returned = worker.report_progress(job, {"bad": bad}, force=True)

    # The job comes back with the new progress all the same (it is advisory).
    assert returned.progress is not None and returned.progress["bad"] is bad
    records = [r for r in caplog.records if r.name == "jobworker.worker"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "job p1: progress not recorded")
    ]
    assert records[0].exc_info is not None and records[0].exc_info[0] is not None
    # The job goes on: still running, claim intact, no progress stored.
    current = stored(queue, "p1")
    assert isinstance(current, jw.RunningJob) and current.progress is None
    assert not worker.is_cancelled(job)


def test_a_stored_progress_comes_back_as_stored(queue: jw.MemoryQueue) -> None:
    add_job(queue, "p2")
    worker = FnWorker(queue, progress_interval=0)
    job = claim(queue, worker)

    returned = worker.report_progress(job, {"done": 3}, force=True)

    assert returned == stored(queue, "p2")
    assert returned.progress == {"done": 3}


def test_loop_errors_log_the_worker_name_first_at_error_then_at_debug(
    queue: jw.MemoryQueue, caplog: pytest.LogCaptureFixture
) -> None:
    failures = threading.Condition()
    seen = [0]

    def refuse(job: jw.AnyJob) -> bool:
        with failures:
            seen[0] += 1
            failures.notify_all()
        raise RuntimeError("the predicate broke")

    add_job(queue, "l1")
    worker = FnWorker(queue, name="looping", accept=refuse, poll_interval=0.05, error_backoff=0.01)
    caplog.set_level(logging.DEBUG, logger="jobworker.worker")
    thread = worker.start_in_thread()
    try:
        with failures:
            assert failures.wait_for(lambda: seen[0] >= 3, TIMEOUT)
    finally:
        assert worker.stop(timeout=TIMEOUT)
        thread.join(TIMEOUT)

    loop = [r for r in caplog.records if "in the loop" in r.getMessage()]
    assert len(loop) >= 2
    first, again = loop[0], loop[1]
    assert (first.levelno, first.getMessage()) == (
        logging.ERROR,
        "worker looping: error in the loop; backing off",
    )
    assert (again.levelno, again.getMessage()) == (
        logging.DEBUG,
        "worker looping: error in the loop again; backing off",
    )
    for record in (first, again):
        assert record.exc_info is not None
        assert record.exc_info[0] is RuntimeError
    assert all(r.levelno == logging.DEBUG for r in loop[1:])
    assert worker.get_metrics().loop_errors >= 2


def test_raise_if_cancelled_names_the_job(queue: jw.MemoryQueue) -> None:
    add_job(queue, "c1")
    worker = FnWorker(queue)
    job = claim(queue, worker)
    worker.raise_if_cancelled(job)  # not cancelled: returns
    assert queue.cancel_job("c1")

    with pytest.raises(jw.JobCancelledError) as info:
        worker.raise_if_cancelled(job)

    assert str(info.value) == "job 'c1' was cancelled"


class RaisingLookupQueue(jw.SQLiteQueue):
    """A queue that reports a missing job by raising JobNotFoundError."""

    def get_job(self, job_id: Any, *, connection: Any = None) -> jw.AnyJob | None:
        job = super().get_job(job_id, connection=connection)
        if job is None:
            raise jw.JobNotFoundError(str(job_id))
        return job


def test_a_job_its_queue_says_is_gone_counts_as_cancelled(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    queue = RaisingLookupQueue(db)
    try:
        add_job(queue, "g1")
        worker = FnWorker(queue)
        job = claim(queue, worker)
        assert not worker.is_cancelled(job)
        conn = sqlite3.connect(db)
        try:
            with conn:
                conn.execute("DELETE FROM jobworker_jobs WHERE id = 'g1'")
        finally:
            conn.close()

        assert worker.is_cancelled(job)
    finally:
        queue.close()


def test_a_cancellation_is_stored_at_the_queues_clock(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    def cancelled_by_itself(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        clock.advance(7)
        raise jw.JobCancelledError("stop here")

    add_job(queue, "t1")
    worker = FnWorker(queue, cancelled_by_itself)

    outcome = worker.run_once()

    assert outcome is not None and outcome.status == "cancelled"
    ended = stored(queue, "t1")
    assert isinstance(ended, jw.CancelledJob)
    assert ended.completed_at == clock.now()


def test_the_repr_names_the_class_the_worker_and_its_state(queue: jw.MemoryQueue) -> None:
    worker = FnWorker(queue, name="shown")
    assert repr(worker) == "<FnWorker 'shown' new>"
    thread = worker.start_in_thread()
    try:
        assert repr(worker) == "<FnWorker 'shown' running>"
    finally:
        assert worker.stop(timeout=TIMEOUT)
        thread.join(TIMEOUT)


def test_an_outcome_refused_because_the_job_was_cancelled_is_logged_at_info(
    queue: jw.MemoryQueue, caplog: pytest.LogCaptureFixture
) -> None:
    def cancelled_meanwhile(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        assert queue.cancel_job(job.metadata.id)
        return "too late"

    add_job(queue, "o1")
    worker = FnWorker(queue, cancelled_meanwhile)
    caplog.set_level(logging.INFO, logger="jobworker.worker")

    outcome = worker.run_once()

    assert outcome is not None and outcome.status == "cancelled"
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "jobworker.worker"]
    assert (logging.INFO, "job o1 was cancelled while it ran") in messages


@pytest.mark.parametrize("ending", ["returns", "cancels itself"])
def test_an_outcome_refused_because_the_claim_was_lost_is_logged_with_the_reason(
    queue: jw.MemoryQueue, clock: FakeClock, caplog: pytest.LogCaptureFixture, ending: str
) -> None:
    def lost_meanwhile(worker: FnWorker, job: jw.RunningJob[Any, Any]) -> Any:
        clock.advance(queue.lease_duration + 1)  # the lease runs out...
        queue.poll_next_pending_job(timeout=0, worker="other")  # ...and is recovered
        if ending == "cancels itself":
            raise jw.JobCancelledError("stopping")
        return "too late"

    add_job(queue, "o2", max_retries=3)
    worker = FnWorker(queue, lost_meanwhile)
    caplog.set_level(logging.INFO, logger="jobworker.worker")

    outcome = worker.run_once()

    assert outcome is not None and outcome.status == "lost"
    assert outcome.error is None or isinstance(outcome.error, jw.JobCancelledError)
    recovered = stored(queue, "o2")
    assert isinstance(recovered, jw.PendingJob)
    assert [a.error.class_path for a in recovered.attempts if a.error] == ["WorkerLost"]
    warnings = [
        r for r in caplog.records if r.name == "jobworker.worker" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    reason = warnings[0].args[1]  # type: ignore[index]
    assert isinstance(reason, jw.JobworkerError)
    assert warnings[0].getMessage() == (f"job o2: outcome discarded, the claim was lost ({reason})")
    assert str(reason)
