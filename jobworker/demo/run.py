"""Run the demo: create the planned jobs, run the workers, watch, cancel, summarize.

Besides the workers, the run has two threads of its own: the operator, which
cancels planned jobs as they start, like a user would, and the watcher, which
wakes the run the moment the last job ends.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Final, TextIO

import jobworker as jw

from .display import _Display, _LastWarning
from .jobs import DemoWorker, DetectionWorker, GenerationWorker, _plan, build_registry
from .summary import DemoSummary, _summarize, format_summary

__all__ = ["run_demo"]

#: Seconds the workers get to finish their current jobs once the run is over.
_STOP_TIMEOUT: Final = 30.0


# -- the threads around the workers ---------------------------------------------------------


class _Operator:
    """Cancel the planned jobs as they start, from a thread of its own, like a user would."""

    def __init__(self, queue: jw.JobQueue, targets: Collection[str]) -> None:
        self._queue = queue
        self._targets = frozenset(targets)
        self._cond = threading.Condition()
        self._due: deque[str] = deque()  # guarded by _cond
        self._closed = False  # guarded by _cond
        self._thread = threading.Thread(target=self._run, name="jobworker-demo-operator")

    def start(self) -> None:
        self._thread.start()

    def job_started(self, job_id: jw.JobId) -> None:
        """Queue a cancel if the plan says so; called from worker threads."""
        if job_id in self._targets:
            with self._cond:
                self._due.append(job_id)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job_id = self._due.popleft()
            # Not under _cond: cancel_job takes the queue's lock.
            try:
                self._queue.cancel_job(job_id)
            except jw.QueueClosedError:
                return


class _Watcher:
    """Set ``done`` once every job has ended and ``get_stats`` shows none left."""

    def __init__(self, queue: jw.JobQueue, job_ids: Sequence[str]) -> None:
        self._queue = queue
        self._job_ids = job_ids
        self.done = threading.Event()
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="jobworker-demo-watcher")

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            for job_id in self._job_ids:
                # Blocks on the queue's Condition until the job ends: no polling.
                self._queue.wait_for_job(job_id)
            stats = self._queue.get_stats()
        except jw.QueueClosedError:
            return  # the demo was cut short and closed the queue
        if stats["pending"] + stats["running"] == 0:
            self.finished_at = time.monotonic()
            self.done.set()


def _ended(queue: jw.JobQueue) -> int:
    stats = queue.get_stats()
    return sum(stats.values()) - stats["pending"] - stats["running"]


# -- the run ----------------------------------------------------------------------------------


def run_demo(
    *,
    jobs: int = 300,
    workers: int = 4,
    seed: int | None = None,
    out: TextIO | None = None,
    quiet: bool = False,
    as_json: bool = False,
    live: bool | None = None,
    timeout: float = 300.0,
) -> DemoSummary:
    """Run the demo and return its summary, printing progress and the summary to *out*.

    :param jobs: how many jobs to create (at least 1).
    :param workers: how many workers, split between the two job types (at least 2).
    :param seed: decides which jobs fail and which are cancelled; random if ``None``.
    :param out: where to print; ``sys.stdout`` by default.
    :param quiet: print the summary only, no live progress.
    :param as_json: print the summary as one JSON line instead of the table.
    :param live: redraw in place with ANSI codes; by default, when *out* is a terminal.
    :param timeout: seconds to wait for every job to end before giving up.

    Blocks until the jobs end or *timeout* passes. Every worker is stopped and
    the queue closed before it returns, also when it raises
    (``KeyboardInterrupt`` included).

    :raises ValueError: *jobs*, *workers* or *timeout* is out of range.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs!r}")
    if workers < 2:
        raise ValueError(f"workers must be >= 2 (one per job type), got {workers!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout!r}")
    out = sys.stdout if out is None else out
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    plan = _plan(jobs, random.Random(seed))
    queue = jw.MemoryQueue(registry=build_registry())
    operator = _Operator(queue, [p.job.metadata.id for p in plan if p.scenario == "cancel_running"])
    hangup = threading.Event()
    team: list[DemoWorker] = [
        (GenerationWorker if number % 2 else DetectionWorker)(
            queue, (number + 1) // 2, on_start=operator.job_started, hangup=hangup
        )
        for number in range(1, workers + 1)
    ]
    runner = jw.Runner(team, stop_timeout=_STOP_TIMEOUT)
    watcher = _Watcher(queue, [p.job.metadata.id for p in plan])
    last_warning = _LastWarning()
    library_log = logging.getLogger("jobworker")
    # Failed attempts are logged as warnings: show them in the display rather
    # than let logging's last-resort handler print them over it.
    library_log.addHandler(last_warning)
    display: _Display | None = None
    try:
        for planned in plan:
            queue.create_job(planned.job)
        # Cancelled before any worker starts, so these never run, whatever the timing.
        for planned in plan:
            if planned.scenario == "cancel_pending":
                queue.cancel_job(planned.job.metadata.id)
        settled = _ended(queue)
        if not quiet:
            live = out.isatty() if live is None else live
            display = _Display(out, queue, team, last_warning, live=live)
            kinds = sum(p.job.metadata.type == "generation" for p in plan)
            print(
                f"jobworker demo: {jobs} jobs ({kinds} generation, {jobs - kinds} detection), "
                f"{workers} workers, seed {seed}",
                file=out,
                flush=True,
            )
        operator.start()
        started = time.monotonic()
        runner.start()
        watcher.start()
        deadline = started + timeout
        interval = display.interval if display is not None else timeout
        # Wakes at once when the last job ends, else once per frame.
        while not watcher.done.wait(max(0.0, min(interval, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            if display is not None:
                display.show(time.monotonic() - started)
        finished = watcher.finished_at if watcher.finished_at is not None else time.monotonic()
        if display is not None:
            display.show(finished - started)
        # Counted before the workers stop: what ends while they stop is not in the rate.
        ended_in_run = _ended(queue) - settled
        problems = [] if watcher.done.is_set() else [f"timed out after {timeout:g} s"]
        hangup.set()
        if not runner.stop():
            problems.append(f"some workers did not stop within {_STOP_TIMEOUT:g} s")
        summary = _summarize(
            plan,
            queue,
            team,
            seed=seed,
            elapsed=finished - started,
            ended_in_run=ended_in_run,
            extra_problems=problems,
        )
    finally:
        hangup.set()
        runner.stop()
        operator.close()
        queue.close()  # releases the watcher if the run was cut short
        watcher.join()
        operator.join()
        library_log.removeHandler(last_warning)
        if display is not None:
            display.close()
    if as_json:
        print(json.dumps(summary.to_dict(), separators=(",", ":")), file=out, flush=True)
    else:
        if not quiet:
            print(file=out)
        print(format_summary(summary), file=out, flush=True)
    return summary
