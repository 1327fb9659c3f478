"""Helpers for testing code that uses jobworker.

- :func:`run_pending` runs the jobs a worker takes in the calling thread and
  re-raises the first failure, so a test sees the real traceback.
- :func:`wait_for_job` blocks until a job ends (for tests with worker threads).
- :class:`FakeClock` drives backoff, leases and ``run_after`` without sleeping.
"""

from __future__ import annotations

import datetime as _dt
import threading

from .errors import JobCancelledError
from .model import AnyJob, JobId
from .queues.base import JobQueue
from .worker import JobOutcome, JobWorker

__all__ = ["FakeClock", "run_pending", "wait_for_job"]


def run_pending(
    worker: JobWorker, *, fail_fast: bool = True, max_jobs: int | None = None
) -> list[JobOutcome]:
    """Run every job *worker* takes that is due now, in the calling thread.

    Stops when no due job is left (or after *max_jobs*) and returns the
    outcomes in order. With *fail_fast*, the first exception a job raised is
    re-raised once its attempt is recorded (a cancellation is not a failure).
    Jobs retried with a delay wait for their ``run_after``: advance a
    :class:`FakeClock` and call again.

    Do not call it while the worker's own loop runs.
    """
    if max_jobs is not None and max_jobs < 0:
        raise ValueError(f"max_jobs must be >= 0 or None, got {max_jobs!r}")
    outcomes: list[JobOutcome] = []
    while max_jobs is None or len(outcomes) < max_jobs:
        outcome = worker.run_once(timeout=0)
        if outcome is None:
            break
        outcomes.append(outcome)
        error = outcome.error
        if fail_fast and isinstance(error, Exception) and not isinstance(error, JobCancelledError):
            raise error
    return outcomes


def wait_for_job(queue: JobQueue, job_id: JobId | str, timeout: float = 10.0) -> AnyJob:
    """Block until the job is complete, failed or cancelled, and return it.

    :raises WaitTimeoutError: it did not end within *timeout* seconds.
    :raises JobNotFoundError: there is no such job.
    """
    return queue.wait_for_job(job_id, timeout=timeout)


class FakeClock:
    """A clock that moves only when told to. Thread-safe.

    >>> clock = FakeClock(_dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc))
    >>> clock.advance(90)
    >>> clock.now().isoformat()
    '2026-01-01T00:01:30+00:00'
    """

    def __init__(self, start: _dt.datetime | None = None) -> None:
        if start is None:
            start = _dt.datetime.now(_dt.timezone.utc)
        if start.utcoffset() is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._lock = threading.Lock()
        self._now = start  # guarded by _lock

    def now(self) -> _dt.datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by *seconds* (which must be >= 0)."""
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward, got {seconds!r}")
        with self._lock:
            self._now += _dt.timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()!r})"
