"""Close a queue while other threads use it; run as a script, in a process of its own.

``python close_scenario.py BACKEND DIRECTORY`` builds queues of BACKEND (a
key of ``conftest.BACKENDS``) and, in each round, closes one while threads
are blocked in ``poll_next_pending_job`` and ``wait_for_job`` (with a
timeout and without) and others are busy calling it. Every thread must end
with ``QueueClosedError``. Exits 0 when every round passes, 1 with a report
otherwise.

It runs in a child process because a backend that frees what a running
call still uses can crash the interpreter; then one contract test fails
with the signal, instead of the whole test run dying.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import BACKENDS, ReportingClock

import jobworker as jw

ROUNDS = 20
JOIN = 10.0


def busy(queue: jw.JobQueue, n: int) -> Callable[[], Any]:
    """A loop of short calls that ends only when one raises."""
    ids = itertools.count()

    def run() -> None:
        while True:
            queue.get_stats()
            queue.create_job(jw.new_job("busy", {}, id=f"busy-{n}-{next(ids)}"))
            queue.poll_next_pending_job(timeout=0, types=["busy"])
            queue.list_jobs(limit=5)
            queue.get_job("waited")

    return run


def one_round(backend: str, directory: Path) -> list[str]:
    clock = ReportingClock()
    queue = BACKENDS[backend](directory, {"clock": clock})
    queue.create_job(jw.new_job("waited", {}, id="waited"))
    calls: dict[str, Callable[[], Any]] = {
        "poll": lambda: queue.poll_next_pending_job(types=["none"], timeout=3 * JOIN),
        "poll-forever": lambda: queue.poll_next_pending_job(types=["none"], timeout=None),
        "wait_for_job": lambda: queue.wait_for_job("waited", timeout=3 * JOIN),
        "wait_for_job-forever": lambda: queue.wait_for_job("waited", timeout=None),
        **{f"busy-{n}": busy(queue, n) for n in range(3)},
    }
    outcomes: dict[str, BaseException | None] = {}

    def call(name: str) -> None:
        try:
            calls[name]()
        except BaseException as exc:  # reported below, whatever it is
            outcomes[name] = exc
        else:
            outcomes[name] = None

    threads = [threading.Thread(target=call, args=(name,), daemon=True) for name in calls]
    for thread in threads:
        thread.start()
    if not clock.read_elsewhere.wait(JOIN):
        return ["no thread ever read the clock"]
    queue.close()
    problems = []
    for name, thread in zip(calls, threads, strict=True):
        thread.join(JOIN)
        if thread.is_alive():
            problems.append(f"{name}: still running {JOIN} s after close()")
        elif not isinstance(outcomes.get(name), jw.QueueClosedError):
            error = outcomes.get(name)
            problems.append(f"{name}: ended with {type(error).__name__}: {error}")
    return problems


def main(backend: str, directory: str) -> int:
    for number in range(ROUNDS):
        round_dir = Path(directory) / f"round-{number}"
        round_dir.mkdir()
        problems = one_round(backend, round_dir)
        if problems:
            print(f"round {number}:", *problems, sep="\n  ")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
