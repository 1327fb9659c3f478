"""Time limits of thread workers, on every backend, with real threads and sockets.

A job that sleeps forever, one that computes forever in pure Python, and one
that blocks on a socket that never sends: each attempt is recorded failed
with JobTimeoutError within its limit plus half a second, retried or failed
as the policy says, while the worker goes on with its other jobs; whatever
the job's thread returns later is refused.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jobworker as jw
from jobworker.clock import SystemClock

from .conftest import MakeQueue

LIMIT = 0.5
SLACK = 0.5
TIMEOUT = 20.0


class HangingWorker(jw.JobWorker):
    """Runs jobs by kind: ``sleep`` forever, ``busy`` forever, ``socket`` read forever, ``ok``."""

    def __init__(self, queue: jw.JobQueue, **options: Any) -> None:
        super().__init__(queue, retry_policy=jw.RetryPolicy.immediate(), **options)
        self.release = threading.Event()
        self.returned: dict[str, threading.Event] = {}
        self.interrupted: dict[str, BaseException] = {}
        self.sockets: tuple[socket.socket, socket.socket] | None = None

    def get_worker_name(self) -> str:
        return "limited"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        kind = job.params["kind"]
        done = self.returned.setdefault(
            f"{job.metadata.id}/{job.metadata.retry_count}", threading.Event()
        )
        try:
            if kind == "sleep":
                self.release.wait()  # no timeout: a C-level wait no interrupt ends
            elif kind == "busy":
                count = 0
                while not self.release.is_set():
                    count += 1
            elif kind == "socket":
                assert self.sockets is not None
                self.sockets[1].recv(1)  # blocks in C: the peer never sends until released
            return {"late": kind}
        except jw.JobTimeoutError as exc:
            self.interrupted[job.metadata.id] = exc
            raise
        finally:
            done.set()

    def close(self) -> None:
        self.release.set()
        if self.sockets is not None:
            for sock in self.sockets:
                sock.close()


@pytest.fixture
def limited(
    make_queue: MakeQueue, start_worker: Callable[[jw.JobWorker], threading.Thread]
) -> Iterator[tuple[jw.JobQueue, HangingWorker]]:
    queue = make_queue(clock=SystemClock())
    worker = HangingWorker(queue, time_limit_grace=0.3)
    # A real connected pair: the "server" end never sends until the test says so.
    worker.sockets = loopback_pair()
    try:
        start_worker(worker)
        yield queue, worker
    finally:
        worker.close()


def loopback_pair() -> tuple[socket.socket, socket.socket]:
    """Return a connected TCP pair on the loopback interface: (server end, client end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=TIMEOUT)
        client.settimeout(None)  # the job's read has no timeout
        server, _ = listener.accept()
    return server, client


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        event.wait(0.01)


@pytest.mark.parametrize("kind", ["sleep", "busy", "socket"])
def test_a_hung_attempt_is_recorded_failed_at_its_limit(
    limited: tuple[jw.JobQueue, HangingWorker], kind: str
) -> None:
    queue, worker = limited
    queue.create_job(jw.new_job("hang", {"kind": kind}, id="h", max_retries=1, time_limit=LIMIT))
    # The first attempt times out and is retried; the retry times out and fails.
    started = time.monotonic()
    wait_until(lambda: (j := queue.get_job(jw.job_id("h"))) is not None and j.status == "running")
    first = time.monotonic()
    wait_until(
        lambda: (
            (j := queue.get_job(jw.job_id("h"))) is not None
            and (j.status != "running" or j.metadata.retry_count == 1)
        )
    )
    assert time.monotonic() - first <= LIMIT + SLACK + 0.3  # 0.3: this poll's own lag
    failed = queue.wait_for_job(jw.job_id("h"), timeout=TIMEOUT)
    assert isinstance(failed, jw.FailedJob)
    assert failed.error.startswith("JobTimeoutError: job 'h' ran past its time limit of 0.5s")
    assert [a.error.type_name for a in failed.attempts if a.error] == [
        "JobTimeoutError",
        "JobTimeoutError",
    ]
    # Two attempts, each at most its limit plus the slack, plus the grace of
    # the first when its thread had to be abandoned before the retry ran.
    assert time.monotonic() - started <= 2 * (LIMIT + SLACK) + 0.3 + 1.0
    if kind == "busy":
        # Pure Python: the interrupt stopped the job's code, which (before
        # Python 3.13, see the guide) saw it in its own handler.
        if sys.version_info < (3, 13):
            assert "h" in worker.interrupted
        assert worker.get_metrics().abandoned == 0
    else:
        # Blocked in C: the interrupt cannot arrive; the threads were abandoned.
        wait_until(lambda: worker.get_metrics().abandoned == 2)
        assert "h" not in worker.interrupted
        worker.release.set()
        assert worker.sockets is not None
        worker.sockets[0].send(b"xx")
        for attempt in ("h/0", "h/1"):
            assert worker.returned[attempt].wait(TIMEOUT)
    # Whatever the threads returned late was refused.
    wait_until(lambda: worker.get_metrics().current_job is None)
    after = queue.get_job(jw.job_id("h"))
    assert isinstance(after, jw.FailedJob) and after.attempts == failed.attempts


def test_the_worker_runs_other_jobs_while_a_thread_hangs(
    limited: tuple[jw.JobQueue, HangingWorker],
) -> None:
    queue, worker = limited
    queue.create_job(jw.new_job("hang", {"kind": "sleep"}, id="h", max_retries=0, time_limit=LIMIT))
    for n in range(5):
        queue.create_job(jw.new_job("ok", {"kind": "ok"}, id=f"ok-{n}"))
    for n in range(5):
        done = queue.wait_for_job(jw.job_id(f"ok-{n}"), timeout=TIMEOUT)
        assert isinstance(done, jw.CompleteJob) and done.result == {"late": "ok"}
    hung = queue.get_job(jw.job_id("h"))
    assert isinstance(hung, jw.FailedJob) and hung.error.startswith("JobTimeoutError")
    metrics = worker.get_metrics()
    assert metrics.abandoned == 1 and metrics.processed == 5 and metrics.failed == 1
    # The hung thread returns late: its result is refused, the job stays failed.
    worker.release.set()
    assert worker.returned["h/0"].wait(TIMEOUT)
    wait_until(lambda: worker.get_metrics().busy_seconds >= LIMIT)
    assert queue.get_job(jw.job_id("h")) == hung


def test_a_job_without_a_limit_is_not_interrupted(
    limited: tuple[jw.JobQueue, HangingWorker],
) -> None:
    queue, worker = limited
    queue.create_job(jw.new_job("slow", {"kind": "busy"}, id="s"))
    wait_until(lambda: worker.get_metrics().current_job == "s")
    later = threading.Event()
    later.wait(LIMIT + SLACK)  # a span, not a wait for a thread: nothing may happen in it
    running = queue.get_job(jw.job_id("s"))
    assert running is not None and running.status == "running"
    worker.release.set()
    done = queue.wait_for_job(jw.job_id("s"), timeout=TIMEOUT)
    assert isinstance(done, jw.CompleteJob)


def test_limits_resolve_job_then_type_then_worker(make_queue: MakeQueue) -> None:
    registry = jw.JobTypeRegistry()
    registry.register("typed", time_limit=7.0, soft_time_limit=3.0)
    queue = make_queue(registry=registry)
    worker = HangingWorker(queue, time_limit=60.0, soft_time_limit=30.0)
    try:
        own = jw.new_job("typed", {}, time_limit=1.5).metadata
        typed = jw.new_job("typed", {}).metadata
        plain = jw.new_job("plain", {}).metadata
        assert worker.get_time_limit(jw.PendingJob(own, {})) == 1.5
        assert worker.get_time_limit(jw.PendingJob(typed, {})) == 7.0
        assert worker.get_time_limit(jw.PendingJob(plain, {})) == 60.0
        assert worker.get_soft_time_limit(jw.PendingJob(typed, {})) == 3.0
        assert worker.get_soft_time_limit(jw.PendingJob(plain, {})) == 30.0
        assert HangingWorker(queue).get_time_limit(jw.PendingJob(plain, {})) is None
    finally:
        worker.close()


def test_the_time_limit_is_stored_with_the_job(queue: jw.JobQueue) -> None:
    queue.create_job(jw.new_job("t", {}, id="a", time_limit=2.5))
    queue.create_job(jw.new_job("t", {}, id="b"))
    a, b = queue.get_job(jw.job_id("a")), queue.get_job(jw.job_id("b"))
    assert a is not None and a.metadata.time_limit == 2.5
    assert b is not None and b.metadata.time_limit is None
    claimed = queue.poll_next_pending_job(worker="w")
    assert claimed is not None and claimed.metadata.time_limit == 2.5


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "1"])
def test_a_bad_time_limit_is_refused_where_it_is_given(queue: jw.JobQueue, bad: Any) -> None:
    with pytest.raises(jw.InvalidJobError, match=r"metadata\.time_limit"):
        jw.new_job("t", {}, id="bad", time_limit=bad)
    with pytest.raises(ValueError, match="time_limit"):
        HangingWorker(queue, time_limit=bad)
    with pytest.raises(ValueError, match="time_limit"):
        jw.JobTypeRegistry().register("t", time_limit=bad)
    assert queue.get_job(jw.job_id("bad")) is None


def test_the_soft_limit_raises_the_flag_and_calls_the_hook(
    make_queue: MakeQueue, start_worker: Callable[[jw.JobWorker], threading.Thread]
) -> None:
    seen: list[bool] = []
    hooked = threading.Event()

    class Polite(HangingWorker):
        def on_soft_time_limit(self, job: jw.RunningJob[Any, Any]) -> None:
            hooked.set()

        def execute_job(self, job: jw.AnyJob) -> Any:
            assert jw.is_running_job(job)
            seen.append(self.soft_limit_reached(job))
            while not self.soft_limit_reached(job):
                self.release.wait(0.01)
            return "wrapped up"

    queue = make_queue(clock=SystemClock())
    worker = Polite(queue, soft_time_limit=0.2, time_limit=5.0)
    try:
        start_worker(worker)
        queue.create_job(jw.new_job("t", {}, id="p"))
        done = queue.wait_for_job(jw.job_id("p"), timeout=TIMEOUT)
        assert isinstance(done, jw.CompleteJob) and done.result == "wrapped up"
        assert seen == [False] and hooked.is_set()
    finally:
        worker.close()


def test_a_job_that_swallows_the_interrupt_has_its_result_refused(
    make_queue: MakeQueue,
    start_worker: Callable[[jw.JobWorker], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Stubborn(HangingWorker):
        def execute_job(self, job: jw.AnyJob) -> Any:
            assert jw.is_running_job(job)
            try:
                while not self.release.is_set():
                    pass
            except jw.JobTimeoutError:
                # Swallowed: it tries to report progress and return a result anyway.
                self.report_progress(job, {"late": True}, force=True)
                return "too late"
            return "released"

    queue = make_queue(clock=SystemClock())
    worker = Stubborn(queue, time_limit=LIMIT, time_limit_grace=5.0)
    try:
        start_worker(worker)
        queue.create_job(jw.new_job("t", {}, id="s", max_retries=0))
        failed = queue.wait_for_job(jw.job_id("s"), timeout=TIMEOUT)
        assert isinstance(failed, jw.FailedJob) and failed.error.startswith("JobTimeoutError")
        # The thread left within the grace period: not abandoned, and the
        # worker goes on in the same thread.
        queue.create_job(jw.new_job("t", {}, id="next"))
        worker.release.set()
        done = queue.wait_for_job(jw.job_id("next"), timeout=TIMEOUT)
        assert isinstance(done, jw.CompleteJob) and done.result == "released"
        assert queue.get_job(jw.job_id("s")) == failed
        assert worker.get_metrics().abandoned == 0
        if sys.version_info < (3, 13):  # 3.13 may pass over the job's handler (see the guide)
            assert "returned after its time limit; its result is refused" in caplog.text
    finally:
        worker.close()


def test_a_bad_grace_period_is_refused(queue: jw.JobQueue) -> None:
    for bad in (-1.0, float("inf"), float("nan"), "5"):
        with pytest.raises(ValueError, match="time_limit_grace"):
            HangingWorker(queue, time_limit_grace=bad)
