"""MemoryQueue beyond the backend contract.

Everything the JobQueue contract asks of a backend (refusals, compare-and-set
updates, claim order, leases, waiting, closing) is tested once for every
backend, MemoryQueue included, in ``tests/contract``. This file holds only
what is particular to MemoryQueue.
"""

from __future__ import annotations

import threading

import jobworker as jw
from jobworker.errors import QueueClosedError
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
