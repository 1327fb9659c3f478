"""A worker logs a streak of failures once, and its end once, not every try."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import jobworker as jw
from jobworker.testing import FakeClock

from .test_worker import TIMEOUT, FnWorker, add_job, started

FAILURES = 5


class DownQueue(jw.MemoryQueue):
    """A MemoryQueue whose first polls fail as an unreachable database does."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.polls = 0
        self.back = threading.Event()

    def poll_next_pending_job(self, **kwargs: Any) -> jw.RunningJob[Any, Any] | None:
        self.polls += 1
        if self.polls <= FAILURES:
            raise jw.BackendError("the database is out of reach")
        self.back.set()
        return super().poll_next_pending_job(**kwargs)


def test_a_streak_of_loop_errors_is_logged_once_and_its_end_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobworker.worker")
    queue = DownQueue(clock=clock)
    worker = FnWorker(queue, error_backoff=0.0)
    with started(worker):
        assert queue.back.wait(TIMEOUT)
        add_job(queue, "after")
        assert queue.wait_for_job("after", timeout=TIMEOUT).status == "complete"
        assert worker.get_metrics().loop_errors == FAILURES
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in loud] == [
        f"worker {worker.get_worker_name()}: the queue failed (the database is out of reach); "
        "backing off"
    ]
    ended = [r for r in caplog.records if "works again" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in ended] == [
        (logging.INFO, f"worker {worker.get_worker_name()}: the loop works again after 5 errors")
    ]
