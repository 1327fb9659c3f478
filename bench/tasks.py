"""Function tasks against worker classes, on the memory backend, in one process.

Each round enqueues N jobs and drains them, once through the class-based
path (``queue.create_job(new_job(...))`` and a :class:`~jobworker.JobWorker`
subclass) and once through tasks (``task.enqueue_on(...)`` and a
:class:`~jobworker.TaskWorker`), alternating which goes first. Both drain with
``run_once`` in this thread, so the figure is the per-job cost of each path,
not thread scheduling. Prints each round, then the ratio
``task rate / class rate`` of the best round of each and of the medians
(1.0: as fast; the target is at least 0.9). On a busy machine the best
rounds are the steadier figure: noise only ever slows a round down::

    python bench/tasks.py --jobs 5000 --rounds 15
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any

import jobworker as jw

JOB_TYPE = "noop"


class NoopWorker(jw.JobWorker):
    """The class-based path: take ``noop`` jobs through the type index, do nothing."""

    def get_worker_name(self) -> str:
        return "NoopWorker"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == JOB_TYPE

    def execute_job(self, job: jw.AnyJob) -> None:
        return None


registry: jw.TaskRegistry[jw.Task[Any, Any]] = jw.TaskRegistry()


@jw.task(name="noop", registry=registry)
def noop(a: int, b: str) -> None:
    """The task path: the same two parameters, nothing done."""


def run_class(n: int) -> float:
    queue = jw.MemoryQueue()
    worker = NoopWorker(queue, job_types=[JOB_TYPE])
    began = time.process_time()
    for i in range(n):
        queue.create_job(jw.new_job(JOB_TYPE, {"a": i, "b": "x"}))
    while worker.run_once() is not None:
        pass
    seconds = time.process_time() - began
    assert queue.get_stats()["complete"] == n
    return n / seconds


def run_tasks(n: int) -> float:
    queue = jw.MemoryQueue()
    worker = jw.TaskWorker(queue, [noop], registry=registry)
    began = time.process_time()
    for i in range(n):
        noop.enqueue_on(queue, i, "x")
    while worker.run_once() is not None:
        pass
    seconds = time.process_time() - began
    assert queue.get_stats()["complete"] == n
    return n / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    run_class(1000)  # warm up both paths
    run_tasks(1000)
    ratios = []
    class_rates = []
    task_rates = []
    for round_ in range(args.rounds):
        gc.collect()
        if round_ % 2:
            tasks = run_tasks(args.jobs)
            classes = run_class(args.jobs)
        else:
            classes = run_class(args.jobs)
            tasks = run_tasks(args.jobs)
        ratios.append(tasks / classes)
        class_rates.append(classes)
        task_rates.append(tasks)
        print(
            f"round {round_ + 1}: class {classes:,.0f} jobs/s, task {tasks:,.0f} jobs/s, "
            f"ratio {tasks / classes:.3f}"
        )
    best = max(task_rates) / max(class_rates)
    median = statistics.median(task_rates) / statistics.median(class_rates)
    print(f"task/class, best rounds: {best:.3f}; medians: {median:.3f} (target >= 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
