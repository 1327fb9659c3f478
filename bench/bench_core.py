"""Measure jobworker's MemoryQueue and JobWorker beside a bare ``queue.Queue``.

One run measures, each figure repeated ``--repeat`` times (median and min-max):

1. throughput of no-op jobs: enqueue rate, and drain rate with one and with
   four worker threads;
2. enqueue -> start latency of an idle worker blocked in its poll;
3. bytes per pending job (tracemalloc snapshots);
4. time per claim with a small and a large backlog.

Every jobworker figure sits beside the same work done with ``queue.Queue`` and
plain threads in the same process. See ``bench/README.md`` for how to read it.

Usage::

    python bench/bench_core.py [--jobs N] [--repeat R] [--quick] [--big] [--json PATH]
    python bench/bench_core.py --profile-drain [--jobs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import queue as stdqueue
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs

import jobworker as jw

JOB_TYPE = "noop"
#: Longest wait for any thread or Event; reaching it means the run is broken.
WAIT_TIMEOUT = 300.0

Params = dict[str, Any]
Item = tuple[Any, Params]


def _params(i: int) -> Params:
    return {"a": i, "b": "x"}


# -- figures ------------------------------------------------------------------------------


@attrs.frozen
class Figure:
    """Samples of one measurement: median, min and max over the repeats."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": list(self.samples),
        }


def _fig(samples: Sequence[float]) -> Figure:
    return Figure(tuple(samples))


def _ratio(a: Figure, b: Figure) -> float:
    return a.median / b.median if b.median else float("nan")


# -- 1. throughput --------------------------------------------------------------------------


class _Done:
    """Count completed jobs across threads; set ``event`` when the target is reached."""

    def __init__(self, target: int) -> None:
        self._lock = threading.Lock()
        self._count = 0  # guarded by _lock
        self._target = target
        self.event = threading.Event()

    def add(self) -> None:
        with self._lock:
            self._count += 1
            if self._count == self._target:
                self.event.set()


class NoopWorker(jw.JobWorker):
    """Take ``noop`` jobs through the type index, do nothing, count completions."""

    def __init__(
        self, queue: jw.JobQueue, done: _Done, name: str, *, stop_when_done: bool = False
    ) -> None:
        super().__init__(queue, job_types=[JOB_TYPE])
        self._done = done
        self._name = name
        self._stop_when_done = stop_when_done

    def get_worker_name(self) -> str:
        return self._name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == JOB_TYPE

    def execute_job(self, job: jw.AnyJob) -> None:
        return None

    def on_job_complete(self, job: jw.AnyJob) -> None:
        self._done.add()
        if self._stop_when_done and self._done.event.is_set():
            self.stop()


def _stop_all(workers: Sequence[jw.JobWorker]) -> None:
    for worker in workers:
        if not worker.stop(timeout=WAIT_TIMEOUT):
            raise RuntimeError(f"{worker!r} did not stop")


@attrs.frozen
class RunTimes:
    """Seconds spent in one throughput run."""

    build: float  # new_job / tuple construction
    put: float  # create_job / Queue.put
    drain: float  # workers started -> every job done


def jobworker_run(n: int, threads: int) -> RunTimes:
    """Enqueue *n* no-op jobs, then drain them with *threads* JobWorkers."""
    queue = jw.MemoryQueue()
    t0 = time.perf_counter()
    jobs = [jw.new_job(JOB_TYPE, _params(i)) for i in range(n)]
    t1 = time.perf_counter()
    for job in jobs:
        queue.create_job(job)
    t2 = time.perf_counter()
    del jobs
    gc.collect()
    done = _Done(n)
    workers = [NoopWorker(queue, done, f"bench-{k}") for k in range(threads)]
    try:
        t3 = time.perf_counter()
        for worker in workers:
            worker.start_in_thread()
        if not done.event.wait(WAIT_TIMEOUT):
            raise RuntimeError("the workers did not finish in time")
        t4 = time.perf_counter()
    finally:
        _stop_all(workers)
    stats = queue.get_stats()
    if stats["complete"] != n:
        raise RuntimeError(f"expected {n} complete jobs, got {stats}")
    return RunTimes(build=t1 - t0, put=t2 - t1, drain=t4 - t3)


def _noop(item: Item) -> None:
    return None


def baseline_run(n: int, threads: int) -> RunTimes:
    """The same with ``queue.Queue``: put *n* tuples, drain with *threads* threads."""
    q: stdqueue.Queue[Item | None] = stdqueue.Queue()
    t0 = time.perf_counter()
    items = [(i, _params(i)) for i in range(n)]
    t1 = time.perf_counter()
    for item in items:
        q.put(item)
    t2 = time.perf_counter()
    del items
    gc.collect()

    def consume() -> None:
        while True:
            item = q.get()
            if item is None:
                q.task_done()
                return
            _noop(item)
            q.task_done()

    consumers = [
        threading.Thread(target=consume, name=f"baseline-{k}", daemon=False) for k in range(threads)
    ]
    t3 = time.perf_counter()
    for consumer in consumers:
        consumer.start()
    q.join()
    t4 = time.perf_counter()
    for _ in consumers:
        q.put(None)
    for consumer in consumers:
        consumer.join(WAIT_TIMEOUT)
        if consumer.is_alive():
            raise RuntimeError(f"{consumer.name} did not stop")
    return RunTimes(build=t1 - t0, put=t2 - t1, drain=t4 - t3)


def measure_throughput(n: int, repeat: int) -> dict[str, dict[str, Figure]]:
    """Jobs/s for enqueue and drain, 1 and 4 threads, jobworker and baseline.

    The four runs of a repeat are interleaved so drift hits them alike.
    Enqueue figures pool the 1- and 4-thread runs (the enqueue does not
    depend on the number of threads; nothing is running yet).
    """
    runs: dict[str, Callable[[int, int], RunTimes]] = {
        "jobworker": jobworker_run,
        "baseline": baseline_run,
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {"enqueue": [], "put_only": [], "drain_1": [], "drain_4": []} for name in runs
    }
    for _ in range(repeat):
        for threads in (1, 4):
            for name, run in runs.items():
                gc.collect()
                times = run(n, threads)
                s = samples[name]
                s["enqueue"].append(n / (times.build + times.put))
                s["put_only"].append(n / times.put)
                s[f"drain_{threads}"].append(n / times.drain)
    return {name: {k: _fig(v) for k, v in s.items()} for name, s in samples.items()}


# -- 2. latency -----------------------------------------------------------------------------


class _SignalClock:
    """The system clock, telling when the watched thread reads it while armed.

    A waiting ``MemoryQueue.poll_next_pending_job`` reads the clock with the
    queue lock held, finds nothing, and waits on its Condition, which
    releases the lock. So once ``ready`` is set, a ``create_job`` cannot
    store its job before the worker is waiting: every sample starts from a
    worker blocked in its poll. The clock is a public queue option; the
    times it returns are the system clock's.
    """

    def __init__(self) -> None:
        self._system = jw.SystemClock()
        self.ready = threading.Event()
        self.armed = False  # written by the watched thread only
        self.watch: int | None = None

    def now(self) -> dt.datetime:
        if self.armed and threading.get_ident() == self.watch:
            self.armed = False
            self.ready.set()
        return self._system.now()


class LatencyWorker(jw.JobWorker):
    """Record ``perf_counter()`` on the first line of ``execute_job``."""

    def __init__(self, queue: jw.JobQueue, clock: _SignalClock) -> None:
        super().__init__(queue, job_types=[JOB_TYPE])
        self._clock = clock
        self.started_at = 0.0  # written by the worker thread before it re-arms

    def get_worker_name(self) -> str:
        return "bench-latency"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == JOB_TYPE

    def execute_job(self, job: jw.AnyJob) -> None:
        self.started_at = time.perf_counter()
        self._clock.watch = threading.get_ident()

    def on_job_complete(self, job: jw.AnyJob) -> None:
        # The next clock read of this thread is the poll that goes to sleep.
        self._clock.armed = True


def _percentiles(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def _ready(event: threading.Event) -> None:
    if not event.wait(WAIT_TIMEOUT):
        raise RuntimeError("the worker did not come back to its poll")
    event.clear()


def jobworker_latency(samples: int) -> list[float]:
    """Microseconds from before ``create_job`` to the first line of ``execute_job``."""
    clock = _SignalClock()
    queue = jw.MemoryQueue(clock=clock)
    worker = LatencyWorker(queue, clock)
    result: list[float] = []
    try:
        worker.start_in_thread()
        # A first, unmeasured job tells the clock which thread to watch.
        queue.create_job(jw.new_job(JOB_TYPE, _params(-1)))
        _ready(clock.ready)
        for i in range(samples):
            job = jw.new_job(JOB_TYPE, _params(i))
            t0 = time.perf_counter()
            queue.create_job(job)
            _ready(clock.ready)  # the job completed and the worker waits again
            result.append((worker.started_at - t0) * 1e6)
    finally:
        _stop_all([worker])
    return result


class _SignalQueue(stdqueue.Queue[Item | None]):
    """A ``queue.Queue`` telling when the watched thread finds it empty in ``get``.

    ``get`` calls ``_qsize`` with the queue's mutex held and then waits on
    ``not_empty``; ``put`` needs the mutex, so it cannot land before the
    consumer waits (the same guarantee as :class:`_SignalClock`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ready = threading.Event()
        self.armed = False  # written by the watched thread only
        self.watch: int | None = None

    def _qsize(self) -> int:
        size = len(self.queue)
        if size == 0 and self.armed and threading.get_ident() == self.watch:
            self.armed = False
            self.ready.set()
        return size


def baseline_latency(samples: int) -> list[float]:
    """Microseconds from before ``Queue.put`` to the line after ``get`` returns."""
    q = _SignalQueue()
    started = [0.0]

    def consume() -> None:
        q.watch = threading.get_ident()
        while True:
            q.armed = True
            item = q.get()
            started[0] = time.perf_counter()
            if item is None:
                return

    consumer = threading.Thread(target=consume, name="baseline-latency", daemon=False)
    result: list[float] = []
    consumer.start()
    try:
        _ready(q.ready)
        for i in range(samples):
            item = (i, _params(i))
            t0 = time.perf_counter()
            q.put(item)
            _ready(q.ready)
            result.append((started[0] - t0) * 1e6)
    finally:
        q.put(None)
        consumer.join(WAIT_TIMEOUT)
    return result


def measure_latency(samples: int, repeat: int) -> dict[str, dict[str, Figure]]:
    """p50, p99 and max of *samples* one-at-a-time latencies, per repeat."""
    runs = {"jobworker": jobworker_latency, "baseline": baseline_latency}
    out: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p99": [], "max": []} for name in runs
    }
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            for key, value in _percentiles(run(samples)).items():
                out[name][key].append(value)
    return {name: {k: _fig(v) for k, v in d.items()} for name, d in out.items()}


# -- 3. memory ------------------------------------------------------------------------------


def _traced_bytes(fill: Callable[[], object]) -> tuple[int, list[tuple[str, int]]]:
    """Return the bytes still allocated after ``fill()``, and the top files by size."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = fill()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "filename")
    del kept
    total = sum(stat.size_diff for stat in stats)
    top = [
        (os.path.basename(str(stat.traceback[0].filename)), stat.size_diff)
        for stat in sorted(stats, key=lambda s: -s.size_diff)[:5]
    ]
    return total, top


def measure_memory(count: int, repeat: int) -> dict[str, Any]:
    """Bytes per pending job: *count* jobs in a MemoryQueue vs tuples in a Queue."""

    def fill_jobworker() -> object:
        queue = jw.MemoryQueue()
        for i in range(count):
            queue.create_job(jw.new_job(JOB_TYPE, _params(i)))
        return queue

    def fill_baseline() -> object:
        q: stdqueue.Queue[Item] = stdqueue.Queue()
        for i in range(count):
            # An id of the same size as jobworker's (32 hex characters).
            q.put((uuid.uuid4().hex, _params(i)))
        return q

    runs = {"jobworker": fill_jobworker, "baseline": fill_baseline}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    top: dict[str, list[tuple[str, int]]] = {}
    for _ in range(repeat):
        for name, fill in runs.items():
            total, top[name] = _traced_bytes(fill)
            samples[name].append(total / count)
    return {
        "bytes_per_job": {name: _fig(v) for name, v in samples.items()},
        "top_files": {name: [[f, size / count] for f, size in t] for name, t in top.items()},
    }


# -- 4. claims ------------------------------------------------------------------------------


def _fill(queue: jw.MemoryQueue, count: int) -> None:
    for i in range(count):
        queue.create_job(jw.new_job(JOB_TYPE, _params(i)))


def _always(job: jw.PendingJob[Any]) -> bool:
    return True


def measure_claims(backlog: int, claims: int, repeat: int) -> dict[str, Figure]:
    """Microseconds per ``poll_next_pending_job(timeout=0)`` with *backlog* waiting.

    The queue holds ``backlog + claims`` pending jobs before each timed
    batch and is topped up after it, so at least *backlog* jobs wait
    throughout. ``types`` claims take the index's fast path; ``predicate``
    claims are how a JobWorker calls it (types plus ``can_process_job``).
    """
    queue = jw.MemoryQueue()
    _fill(queue, backlog + claims)
    types = frozenset({JOB_TYPE})
    variants: dict[str, Callable[[], jw.RunningJob[Any, Any] | None]] = {
        "types": lambda: queue.poll_next_pending_job(types=types, worker="bench", timeout=0),
        "predicate": lambda: queue.poll_next_pending_job(
            types=types, predicate=_always, worker="bench", timeout=0
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, claim in variants.items():
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(claims):
                if claim() is None:
                    raise RuntimeError("a claim found no job")
            t1 = time.perf_counter()
            samples[name].append((t1 - t0) / claims * 1e6)
            _fill(queue, claims)
    return {name: _fig(v) for name, v in samples.items()}


# -- profile mode ---------------------------------------------------------------------------


#: Functions of the worker's hot path, shown by cumulative time per job.
HOT_PATH = (
    "run_once",
    "poll_next_pending_job",
    "_candidates",
    "_claim_if_pending",
    "_claim",
    "new_claim",
    "uuid4",
    "urandom",
    "_process",
    "track",
    "_write_result",
    "update_job",
    "_prepare_update",
    "roundtrip_value",
    "validate_job",
    "apply_update",
    "complete",
    "evolve",
    "now",
    "on_job_complete",
)


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":  # a built-in
        return name
    return f"{os.path.basename(filename)}:{line}({name})"


def profile_drain(n: int, top: int = 20) -> None:
    """Drain *n* no-op jobs with one worker in this thread under cProfile.

    Only the drain is profiled (the jobs are enqueued first). The worker
    loop runs in the calling thread (``worker.start()``) because cProfile
    follows one thread; its heartbeat thread still runs, as in production.
    Prints the functions costing most per job, by own and by cumulative time.
    """
    import cProfile
    import pstats

    queue = jw.MemoryQueue()
    _fill(queue, n)
    gc.collect()
    done = _Done(n)
    worker = NoopWorker(queue, done, "bench-profile", stop_when_done=True)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    try:
        worker.start()  # returns once the completion hook has stopped the worker
    finally:
        profiler.disable()
        _stop_all([worker])
    elapsed = time.perf_counter() - t0
    if queue.get_stats()["complete"] != n:
        raise RuntimeError("not every job completed")
    # pstats keeps (calls, primitive calls, own time, cumulative time, callers).
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    print(
        f"# Profile of a one-worker drain of {n:,} no-op jobs\n\n"
        f"{n / elapsed:,.0f} jobs/s under cProfile ({elapsed / n * 1e6:.1f} us per job; "
        "profiling inflates every call, read the shares, not the totals).\n"
    )
    header = [
        _row(["function", "calls/job", "own us/job", "cumulative us/job"]),
        _row(["---", "---:", "---:", "---:"]),
    ]

    def line(key: tuple[str, int, str]) -> str:
        _, calls, own, cumulative, _ = stats[key]
        return _row(
            [
                _where(key),
                f"{calls / n:.2f}",
                f"{own / n * 1e6:.2f}",
                f"{cumulative / n * 1e6:.2f}",
            ]
        )

    by_own = sorted(stats, key=lambda k: -stats[k][2])[:top]
    print(f"## Top {top} by own time\n", *header, *map(line, by_own), sep="\n")
    hot = [k for k in stats if k[2] in HOT_PATH or k[2].endswith(("urandom>", " now>"))]
    hot.sort(key=lambda k: -stats[k][3])
    print("\n## Hot path, by cumulative time\n", *header, *map(line, hot), sep="\n")


# -- output ---------------------------------------------------------------------------------


def _spread(fig: Figure, fmt: str) -> str:
    return f"{fig.median:{fmt}} [{min(fig.samples):{fmt}}-{max(fig.samples):{fmt}}]"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    o = report["options"]
    lines = [
        "# jobworker core benchmark",
        "",
        f"CPython {m['python']} on {m['system']} {m['machine']}, {m['cpus']} CPUs; "
        f"jobworker {m['jobworker']}; {o['jobs']:,} jobs per throughput run, "
        f"{o['repeat']} repeats.",
        "Cells: median [min-max] over the repeats.",
        "",
        "## 1. Throughput, no-op jobs (jobs/s, higher is better)",
        "",
        _row(["measurement", "jobworker", "queue.Queue", "jobworker / queue.Queue"]),
        _row(["---", "---:", "---:", "---:"]),
    ]
    t = report["throughput"]
    names = {
        "enqueue": "enqueue (build + create_job / put)",
        "put_only": "create_job / put alone",
        "drain_1": "drain, 1 worker thread",
        "drain_4": "drain, 4 worker threads",
    }
    for key, label in names.items():
        jwf, base = t["jobworker"][key], t["baseline"][key]
        lines.append(
            _row([label, _spread(jwf, ",.0f"), _spread(base, ",.0f"), f"{_ratio(jwf, base):.3f}"])
        )
    scale_jw = _ratio(t["jobworker"]["drain_4"], t["jobworker"]["drain_1"])
    scale_base = _ratio(t["baseline"]["drain_4"], t["baseline"]["drain_1"])
    lines.append(_row(["drain, 4 workers / 1 worker", f"{scale_jw:.2f}", f"{scale_base:.2f}", ""]))

    lines += [
        "",
        f"## 2. Enqueue -> start latency, idle worker ({o['latency_samples']:,} jobs one at "
        "a time, microseconds, lower is better)",
        "",
        _row(["percentile", "jobworker", "queue.Queue", "jobworker / queue.Queue"]),
        _row(["---", "---:", "---:", "---:"]),
    ]
    lat = report["latency"]
    for key in ("p50", "p99", "max"):
        jwf, base = lat["jobworker"][key], lat["baseline"][key]
        lines.append(
            _row([key, _spread(jwf, ",.1f"), _spread(base, ",.1f"), f"{_ratio(jwf, base):.1f}"])
        )

    mem = report["memory"]["bytes_per_job"]
    lines += [
        "",
        f"## 3. Memory per pending job ({o['memory_jobs']:,} jobs, {o['memory_repeat']} runs, "
        "bytes, lower is better)",
        "",
        _row(["", "jobworker", "queue.Queue", "jobworker / queue.Queue"]),
        _row(["---", "---:", "---:", "---:"]),
        _row(
            [
                "bytes per pending job",
                _spread(mem["jobworker"], ",.0f"),
                _spread(mem["baseline"], ",.0f"),
                f"{_ratio(mem['jobworker'], mem['baseline']):.1f}",
            ]
        ),
        "",
        f"## 4. Claim time by backlog ({o['claims']:,} claims per batch, "
        "microseconds per claim, lower is better)",
        "",
        _row(["jobs waiting", "types only", "types + predicate (as a worker)"]),
        _row(["---", "---:", "---:"]),
    ]
    claims: dict[int, dict[str, Figure]] = report["claims"]
    for backlog, figs in claims.items():
        lines.append(
            _row([f"{backlog:,}", _spread(figs["types"], ".2f"), _spread(figs["predicate"], ".2f")])
        )
    backlogs = list(claims)
    small = claims[backlogs[0]]
    for big in backlogs[1:]:
        lines.append(
            _row(
                [
                    f"ratio {big:,} / {backlogs[0]:,}",
                    f"{_ratio(claims[big]['types'], small['types']):.2f}",
                    f"{_ratio(claims[big]['predicate'], small['predicate']):.2f}",
                ]
            )
        )
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Figure):
        return value.as_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# -- main -----------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=_positive, help="jobs per throughput run (20000)")
    parser.add_argument("--repeat", type=_positive, help="repeats of each measurement (5)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--big", action="store_true", help="also claim with 1,000,000 waiting")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument(
        "--profile-drain",
        action="store_true",
        help="only profile a one-worker drain of --jobs jobs (cProfile) and print the costs",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.jobs = args.jobs or (2_000 if quick else 20_000)
    args.repeat = args.repeat or (3 if quick else 5)
    args.latency_samples = 200 if quick else 2_000
    args.memory_jobs = 10_000 if quick else 100_000
    # tracemalloc slows job creation about fivefold and the figure is the same
    # to the byte on every run: two runs show that without doubling the run time.
    args.memory_repeat = min(args.repeat, 2)
    args.claims = 200 if quick else 1_000
    args.backlogs = [1_000, 10_000] if quick else [1_000, 100_000]
    if args.big:
        args.backlogs.append(1_000_000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile_drain:
        profile_drain(args.jobs)
        return 0
    # Warm up imports, the converter and thread start-up; not measured.
    jobworker_run(500, 1)
    baseline_run(500, 1)

    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "system": platform.system(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "jobworker": jw.__version__,
        },
        "options": {
            "jobs": args.jobs,
            "repeat": args.repeat,
            "latency_samples": args.latency_samples,
            "memory_jobs": args.memory_jobs,
            "memory_repeat": args.memory_repeat,
            "claims": args.claims,
            "backlogs": args.backlogs,
        },
    }
    phases: list[tuple[str, Callable[[], Any]]] = [
        ("throughput", lambda: measure_throughput(args.jobs, args.repeat)),
        ("latency", lambda: measure_latency(args.latency_samples, args.repeat)),
        ("memory", lambda: measure_memory(args.memory_jobs, args.memory_repeat)),
        (
            "claims",
            lambda: {
                backlog: measure_claims(backlog, args.claims, args.repeat)
                for backlog in args.backlogs
            },
        ),
    ]
    seconds: dict[str, float] = {}
    for name, phase in phases:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        gc.collect()
        t0 = time.perf_counter()
        report[name] = phase()
        seconds[name] = time.perf_counter() - t0
    report["seconds"] = seconds
    print(render(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_jsonable(report), f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
