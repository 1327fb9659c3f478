"""What the time-limit machinery costs a memory drain: a same-run ratio.

One process drains N no-op jobs from a MemoryQueue with one worker thread,
in alternating rounds of three kinds:

- ``none``: no limit anywhere (the path every job took before time limits);
- ``per-job``: every job carries ``time_limit`` (so every attempt is watched);
- ``worker``: the worker has a default ``time_limit`` and ``soft_time_limit``.

It prints, for each kind, the median throughput by the wall clock and by
the process's CPU time (jobs per CPU second: the machine's other load
changes it far less), and the ratio of each limited kind to ``none``. The
target (issue 11): a limit on every job (``per-job``) costs at most 5% of
the drain's throughput, that is a CPU ratio of at least 0.95; ``worker`` is
shown beside it. Compare ratios within one
run only::

    .venv/bin/python bench/time_limits.py            # 20,000 jobs, 7 rounds
    .venv/bin/python bench/time_limits.py --jobs 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from typing import Any

import jobworker as jw


class _Worker(jw.JobWorker):
    def __init__(self, queue: jw.JobQueue, n: int, **options: Any) -> None:
        super().__init__(queue, **options)
        self._left = n
        self.done = threading.Event()

    def get_worker_name(self) -> str:
        return "bench"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> None:
        return None

    def on_job_complete(self, job: jw.AnyJob) -> None:
        self._left -= 1  # one worker thread: no lock needed
        if not self._left:
            self.done.set()


def drain(kind: str, n: int) -> tuple[float, float]:
    """Return the jobs per wall second and per CPU second of one drain of *n* jobs of *kind*."""
    queue = jw.MemoryQueue()
    limit = 60.0 if kind == "per-job" else None
    for k in range(n):
        queue.create_job(jw.new_job("noop", None, id=f"j{k}", time_limit=limit))
    options: dict[str, Any] = {}
    if kind == "worker":
        options = {"time_limit": 60.0, "soft_time_limit": 30.0}
    worker = _Worker(queue, n, **options)
    began, cpu = time.perf_counter(), time.process_time()
    worker.start_in_thread()
    if not worker.done.wait(600):
        raise RuntimeError(f"the {kind} drain did not finish")
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    worker.stop(60)
    queue.close()
    return n / seconds, n / cpu_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    kinds = ("none", "per-job", "worker")
    wall: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    drain("none", min(args.jobs, 2_000))  # warm-up, not counted
    for r in range(args.rounds):
        # Rotate the order, so a busy spell on the machine hits every kind alike.
        for kind in kinds[r % 3 :] + kinds[: r % 3]:
            by_wall, by_cpu = drain(kind, args.jobs)
            wall[kind].append(by_wall)
            cpu[kind].append(by_cpu)
    print(f"memory drain, 1 worker thread, {args.jobs:,} jobs, {args.rounds} rounds (median)")
    ratios: dict[str, float] = {}
    for label, rates in (("wall", wall), ("cpu", cpu)):
        base = statistics.median(rates["none"])
        for kind in kinds:
            median = statistics.median(rates[kind])
            ratio = median / base
            if label == "cpu":
                ratios[kind] = ratio
            low, high = min(rates[kind]), max(rates[kind])
            print(
                f"  {label:4} {kind:8} {median:9,.0f} jobs/s [{low:,.0f}-{high:,.0f}]"
                f"  ratio {ratio:.3f}"
            )
    met = ratios["per-job"] >= 0.95
    verdict = "met" if met else "NOT met"
    print(
        f"target: per-job/none by CPU time >= 0.95: {verdict} ({ratios['per-job']:.3f}; "
        f"worker default {ratios['worker']:.3f})"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
