"""Tests for jobworker.runner: several workers, one deadline, opt-in signals."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import jobworker as jw

TIMEOUT = 5.0  # upper bound on any wait for another thread


class RecordingWorker(jw.JobWorker):
    """Runs ``execute`` (default: return the thread it ran in) and records each job's thread."""

    def __init__(
        self,
        queue: jw.JobQueue,
        name: str,
        execute: Callable[[jw.RunningJob[Any, Any]], Any] | None = None,
        **options: Any,
    ) -> None:
        self.name = name
        self.execute = execute
        self.threads: list[threading.Thread] = []
        self.started = threading.Event()
        self.lock = threading.Lock()
        super().__init__(queue, **options)

    def get_worker_name(self) -> str:
        return self.name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def on_job_start(self, job: jw.RunningJob[Any, Any]) -> None:
        self.started.set()

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        with self.lock:
            self.threads.append(threading.current_thread())
        if self.execute is not None:
            return self.execute(job)
        return {"thread": threading.current_thread().name}


def add_job(queue: jw.JobQueue, id: str, *, type: str = "test", **metadata: Any) -> None:
    queue.create_job(jw.new_job(type, {}, id=id, created=queue.clock.now(), **metadata))


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_runner_runs_each_worker_in_its_own_thread(queue: jw.MemoryQueue) -> None:
    alpha = RecordingWorker(queue, "alpha", job_types={"a"})
    beta = RecordingWorker(queue, "beta", job_types={"b"})
    runner = jw.Runner([alpha, beta], stop_timeout=TIMEOUT)
    runner.start()
    try:
        add_job(queue, "a1", type="a")
        add_job(queue, "b1", type="b")
        a1 = queue.wait_for_job("a1", timeout=TIMEOUT)
        b1 = queue.wait_for_job("b1", timeout=TIMEOUT)
        assert a1.status == b1.status == "complete"
        (alpha_thread,) = alpha.threads
        (beta_thread,) = beta.threads
        assert alpha_thread is not beta_thread
        assert threading.main_thread() not in (alpha_thread, beta_thread)
        assert re.fullmatch(r"jobworker-alpha-\d+", alpha_thread.name)
        assert re.fullmatch(r"jobworker-beta-\d+", beta_thread.name)
        assert not alpha_thread.daemon and not beta_thread.daemon
        assert a1.result == {"thread": alpha_thread.name}
    finally:
        assert runner.stop() is True
    join_all(alpha.threads + beta.threads)


def test_many_workers_run_every_job_exactly_once(
    queue: jw.MemoryQueue, fast_switching: None
) -> None:
    workers = [RecordingWorker(queue, f"w{n}") for n in range(4)]
    runner = jw.Runner(workers, stop_timeout=TIMEOUT)
    ids = [f"job-{n}" for n in range(40)]
    runner.start()
    try:
        for job_id in ids:
            add_job(queue, job_id)
        for job_id in ids:
            assert queue.wait_for_job(job_id, timeout=TIMEOUT).status == "complete"
    finally:
        assert runner.stop() is True
    assert sum(len(w.threads) for w in workers) == len(ids)
    assert queue.get_stats()["complete"] == len(ids)


def test_stop_shares_one_deadline(queue: jw.MemoryQueue) -> None:
    release = threading.Event()

    def block(job: jw.RunningJob[Any, Any]) -> Any:
        release.wait(TIMEOUT)
        return None

    workers = [RecordingWorker(queue, f"slow{n}", block, job_types={f"t{n}"}) for n in range(3)]
    runner = jw.Runner(workers, stop_timeout=TIMEOUT)
    runner.start()
    try:
        for n, worker in enumerate(workers):
            add_job(queue, f"j{n}", type=f"t{n}")
            assert worker.started.wait(TIMEOUT)
        began = time.monotonic()
        # Three blocked workers, one deadline of 0.5 s: not 0.5 s each.
        assert runner.stop(timeout=0.5) is False
        assert time.monotonic() - began < 1.2
    finally:
        release.set()
    assert runner.stop() is True
    join_all([t for w in workers for t in w.threads])
    assert queue.get_stats()["complete"] == 3


def test_stop_now_ends_a_stop_in_progress_and_gives_the_jobs_up(queue: jw.MemoryQueue) -> None:
    release = threading.Event()

    def block(job: jw.RunningJob[Any, Any]) -> Any:
        release.wait(TIMEOUT)
        return None

    worker = RecordingWorker(queue, "slow", block)
    runner = jw.Runner([worker], stop_timeout=60.0)
    runner.start()
    results: list[bool] = []
    stopper = threading.Thread(target=lambda: results.append(runner.stop()))
    try:
        add_job(queue, "j")
        assert worker.started.wait(TIMEOUT)
        stopper.start()
        runner.stop_now()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive(), "stop() went on waiting after stop_now()"
        assert results == [False]
        job = queue.get_job("j")
        assert job is not None and job.status == "running"  # left to its lease
    finally:
        release.set()
    join_all(worker.threads)


@pytest.fixture
def sentinel_sigterm() -> Any:
    """Install a SIGTERM handler that records calls, so a stray SIGTERM never kills pytest."""
    calls: list[int] = []
    targets: list[jw.Runner] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)
        for runner in targets:  # never leave run() blocked if the runner did not handle it
            runner.request_stop()

    previous = signal.signal(signal.SIGTERM, handler)
    yield handler, calls, targets
    signal.signal(signal.SIGTERM, previous)


def test_run_returns_on_sigterm_and_restores_handlers(
    queue: jw.MemoryQueue, sentinel_sigterm: Any
) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    sentinel, sentinel_calls, targets = sentinel_sigterm
    previous_sigint = signal.getsignal(signal.SIGINT)
    worker = RecordingWorker(queue, "signalled")
    runner = jw.Runner([worker], handle_signals=True, stop_timeout=TIMEOUT)
    targets.append(runner)
    add_job(queue, "first")
    seen: dict[str, Any] = {}
    run_returned = threading.Event()

    def send_sigterm() -> None:
        # The hook ran, so run() installed its handlers and started the workers.
        seen["started"] = worker.started.wait(TIMEOUT)
        seen["handler"] = signal.getsignal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        if not run_returned.wait(TIMEOUT):  # never leave run() blocked
            seen["fallback"] = True
            runner.request_stop()

    helper = threading.Thread(target=send_sigterm, name="send-sigterm")
    helper.start()
    try:
        assert runner.run() is True
    finally:
        run_returned.set()
        helper.join(TIMEOUT)
    assert not helper.is_alive()

    assert seen["started"] is True
    assert "fallback" not in seen
    assert sentinel_calls == []  # the runner's handler got the signal, not ours
    assert seen["handler"] is not sentinel  # the runner had installed its own
    assert signal.getsignal(signal.SIGTERM) is sentinel  # and put ours back
    assert signal.getsignal(signal.SIGINT) is previous_sigint
    assert queue.get_job("first").status == "complete"
    assert worker.is_stopping()
    join_all(worker.threads)


def test_run_returns_when_a_worker_thread_dies(
    queue: jw.MemoryQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest's excepthook records a thread's uncaught exception as a failure, so
    # stand in for it for the KeyboardInterrupt that ends the dying worker.
    died: list[str] = []
    previous_hook = threading.excepthook

    def excepthook(args: Any) -> None:
        if args.exc_type is KeyboardInterrupt:
            died.append(args.thread.name)
        else:
            previous_hook(args)

    monkeypatch.setattr(threading, "excepthook", excepthook)

    def exit_now(job: jw.RunningJob[Any, Any]) -> Any:
        # The one exception of job code that stops its worker (SystemExit fails the attempt).
        raise KeyboardInterrupt

    dying = RecordingWorker(queue, "dying", exit_now, job_types={"die"})
    idle = RecordingWorker(queue, "idle", job_types={"never"})
    runner = jw.Runner([dying, idle], stop_timeout=TIMEOUT)
    add_job(queue, "die-1", type="die")
    result: dict[str, bool] = {}
    caller = threading.Thread(target=lambda: result.setdefault("stopped", runner.run()))

    caller.start()
    try:
        caller.join(TIMEOUT)
        assert not caller.is_alive()
    finally:
        runner.request_stop()  # never leave run() blocked if it missed the death
        caller.join(TIMEOUT)

    assert result["stopped"] is True
    assert len(died) == 1 and re.fullmatch(r"jobworker-dying-\d+", died[0])
    assert idle.is_stopping()  # the others were stopped too
    assert queue.get_job("die-1").status == "pending"  # handed back, not left running
    join_all(dying.threads)


def test_request_stop_before_run_makes_run_return(queue: jw.MemoryQueue) -> None:
    worker = RecordingWorker(queue, "w")
    runner = jw.Runner([worker], stop_timeout=TIMEOUT)
    runner.request_stop()
    result: dict[str, bool] = {}
    caller = threading.Thread(target=lambda: result.setdefault("stopped", runner.run()))

    caller.start()
    caller.join(TIMEOUT)

    assert not caller.is_alive()
    assert result["stopped"] is True
    assert worker.is_stopping()


def test_handle_signals_outside_the_main_thread_raises(queue: jw.MemoryQueue) -> None:
    worker = RecordingWorker(queue, "w")
    runner = jw.Runner([worker], handle_signals=True)
    errors: list[BaseException] = []

    def call_run() -> None:
        try:
            runner.run()
        except RuntimeError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call_run)
    caller.start()
    try:
        caller.join(TIMEOUT)
        assert not caller.is_alive()
    finally:
        runner.request_stop()  # never leave run() blocked if it did not refuse
        caller.join(TIMEOUT)

    assert len(errors) == 1
    assert worker.stop(timeout=0) is True  # never started


def test_runner_starts_once(queue: jw.MemoryQueue) -> None:
    runner = jw.Runner([RecordingWorker(queue, "w")], stop_timeout=TIMEOUT)
    runner.start()
    try:
        with pytest.raises(jw.WorkerStateError):
            runner.start()
    finally:
        assert runner.stop() is True


@pytest.mark.parametrize(
    ("workers", "options"),
    [
        ([], {}),
        (None, {"stop_timeout": -1}),
    ],
)
def test_runner_validates(
    queue: jw.MemoryQueue, workers: list[jw.JobWorker] | None, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        jw.Runner([RecordingWorker(queue, "w")] if workers is None else workers, **options)
