"""What metrics and tracing cost a worker: a memory drain with each on and off, in one process.

Each round enqueues N jobs on a :class:`~jobworker.MemoryQueue` and drains
them with ``run_once`` in this thread, once per variant, in a rotating order:

- ``off``: a worker without observers (the extras may be installed; nothing
  of them is imported or called);
- ``prometheus``: the same worker watched by a
  :class:`~jobworker.metrics.prometheus.PrometheusMetrics`;
- ``tracing``: the worker with tracing instrumented and OpenTelemetry's API
  alone (no SDK configured: the no-op tracer, the usual "not configured" case);
- ``tracing-sdk``: with an SDK tracer provider that samples every span and
  drops it (no exporter), the cost of recording.

Prints each round, then ``variant rate / off rate`` of the best round of each
and of the medians (1.0: as fast). On a busy machine the best rounds are the
steadier figure: noise only ever slows a round down::

    python bench/metrics.py --jobs 5000 --rounds 9

``--against DIR`` instead compares the ``off`` drain of this tree with that
of another checkout (``git worktree add /tmp/base main``, say), each round in
a fresh process per tree, alternating: a worker with no observers must drain
as fast as one of a release without them (ratio 1.0)::

    python bench/metrics.py --against /tmp/base --rounds 9
"""

from __future__ import annotations

import argparse
import gc
import os
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider

import jobworker as jw
from jobworker.metrics import tracing
from jobworker.metrics.prometheus import PrometheusMetrics

JOB_TYPE = "noop"


class NoopWorker(jw.JobWorker):
    def get_worker_name(self) -> str:
        return "NoopWorker"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == JOB_TYPE

    def execute_job(self, job: jw.AnyJob) -> None:
        return None


def drain(n: int, setup: Callable[[jw.JobQueue, jw.JobWorker], None]) -> float:
    """Return jobs per CPU second of enqueueing and draining *n* jobs."""
    queue = jw.MemoryQueue()
    worker = NoopWorker(queue, job_types=[JOB_TYPE])
    setup(queue, worker)
    began = time.process_time()
    for i in range(n):
        queue.create_job(jw.new_job(JOB_TYPE, {"a": i}))
    while worker.run_once() is not None:
        pass
    seconds = time.process_time() - began
    assert queue.get_stats()["complete"] == n
    queue.close()
    return n / seconds


def _off(queue: jw.JobQueue, worker: jw.JobWorker) -> None:
    assert worker.observers == []


def _prometheus(queue: jw.JobQueue, worker: jw.JobWorker) -> None:
    PrometheusMetrics(queue).watch(worker)


_sdk = TracerProvider()


def _tracing(queue: jw.JobQueue, worker: jw.JobWorker) -> None:
    worker.observers.append(tracing.TracingObserver())


def _tracing_sdk(queue: jw.JobQueue, worker: jw.JobWorker) -> None:
    worker.observers.append(tracing.TracingObserver(_sdk))


VARIANTS: dict[str, Callable[[jw.JobQueue, jw.JobWorker], None]] = {
    "off": _off,
    "prometheus": _prometheus,
    "tracing": _tracing,
    "tracing-sdk": _tracing_sdk,
}


# Runs in a fresh process on the jobworker of PYTHONPATH: the off drain of any release.
_OFF_DRAIN = """
import os, sys, time, jobworker as jw
class W(jw.JobWorker):
    def get_worker_name(self): return "W"
    def can_process_job(self, job): return True
    def execute_job(self, job): return None
def drain(n):
    queue = jw.MemoryQueue()
    worker = W(queue, job_types=["noop"])
    began = time.process_time()
    for i in range(n):
        queue.create_job(jw.new_job("noop", {"a": i}))
    while worker.run_once() is not None:
        pass
    return n / (time.process_time() - began)
drain(1000)
assert jw.__file__.startswith(os.getcwd()), jw.__file__
print(max(drain(int(sys.argv[1])) for _ in range(3)))
"""


def _off_in(tree: pathlib.Path, jobs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _OFF_DRAIN, str(jobs)],
        cwd=tree,  # "-c" puts the working directory first on the import path
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def compare(against: pathlib.Path, jobs: int, rounds: int) -> None:
    """Print the off drain's rate here and in *against*, alternating, and their ratio."""
    here = pathlib.Path(__file__).resolve().parents[1]
    mine: list[float] = []
    base: list[float] = []
    for round_ in range(rounds):
        pair = [(mine, here), (base, against)]
        for rates, tree in pair if round_ % 2 == 0 else pair[::-1]:
            rates.append(_off_in(tree, jobs))
        print(f"round {round_ + 1}: here {mine[-1]:,.0f} jobs/s, base {base[-1]:,.0f} jobs/s")
    best = max(mine) / max(base)
    median = statistics.median(mine) / statistics.median(base)
    print(f"here/base (off), best rounds: {best:.3f}; medians: {median:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--against", type=pathlib.Path, metavar="DIR")
    args = parser.parse_args(argv)
    if args.against is not None:
        compare(args.against, args.jobs, args.rounds)
        return 0
    names = list(VARIANTS)
    for name in names:  # warm up every path
        drain(1000, VARIANTS[name])
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            gc.collect()
            rates[name].append(drain(args.jobs, VARIANTS[name]))
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{name} {rates[name][-1]:,.0f} jobs/s" for name in names)
        )
    for name in names[1:]:
        best = max(rates[name]) / max(rates["off"])
        median = statistics.median(rates[name]) / statistics.median(rates["off"])
        print(f"{name}/off, best rounds: {best:.3f}; medians: {median:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
