"""Measure jobworker's SQLiteQueue and JobWorker beside a minimal WAL queue.

One run measures, each figure repeated ``--repeat`` times (median and min-max):

1. throughput of no-op jobs: enqueue rate, and drain rate with one and with
   four worker threads, beside a minimal SQLite queue (one table, WAL,
   ``synchronous = NORMAL``, one transaction per enqueue, claim and ack)
   driven by plain threads; also the process CPU time per job;
2. enqueue -> start latency of an idle worker waiting in its poll;
3. time per claim with a small and a large backlog: with job types, with
   job types and a predicate (a worker with ``job_types``), and with a
   predicate alone (a worker without).

Database files live in a temporary directory removed at the end. See
``bench/README.md`` for how to read the figures.

Usage::

    python bench/bench_sqlite.py [--jobs N] [--repeat R] [--quick] [--json PATH] [--dir DIR]
    python bench/bench_sqlite.py --profile-drain [--jobs N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import attrs
from bench_core import (
    JOB_TYPE,
    WAIT_TIMEOUT,
    Figure,
    NoopWorker,
    _Done,
    _fig,
    _jsonable,
    _params,
    _percentiles,
    _positive,
    _ratio,
    _ready,
    _row,
    _spread,
    _stop_all,
    _where,
)

import jobworker as jw

#: The busy timeout of both queues (SQLiteQueue's default), in seconds.
BUSY_TIMEOUT = 5.0
#: How long an idle baseline consumer waits before it polls again, in seconds.
BASELINE_POLL = 0.001


# -- database files -----------------------------------------------------------------------


class _Files:
    """Fresh database paths in one temporary directory, removed with it."""

    def __init__(self, parent: str | None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="jobworker-bench-", dir=parent)
        self._count = 0

    def new(self) -> str:
        self._count += 1
        return os.path.join(self._dir.name, f"bench-{self._count}.sqlite3")

    @staticmethod
    def remove(path: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)

    def cleanup(self) -> None:
        self._dir.cleanup()


@contextmanager
def _sqlite_queue(files: _Files, **options: Any) -> Iterator[jw.SQLiteQueue]:
    """A SQLiteQueue on a fresh file, closed and deleted afterwards."""
    path = files.new()
    queue = jw.SQLiteQueue(path, **options)
    try:
        yield queue
    finally:
        queue.close()
        files.remove(path)


# -- 1. throughput: jobworker ---------------------------------------------------------------


@attrs.frozen
class RunTimes:
    """Seconds spent in one throughput run."""

    build: float  # new_job / params dicts
    put: float  # create_job / json.dumps + INSERT
    drain: float  # workers started -> every job done
    cpu_put: float  # process CPU seconds (every thread) during put
    cpu_drain: float  # process CPU seconds (every thread) during drain


def jobworker_run(files: _Files, n: int, threads: int) -> RunTimes:
    """Enqueue *n* no-op jobs into a SQLiteQueue, then drain them with *threads* JobWorkers."""
    with _sqlite_queue(files) as queue:
        t0 = time.perf_counter()
        jobs = [jw.new_job(JOB_TYPE, _params(i)) for i in range(n)]
        t1, c1 = time.perf_counter(), time.process_time()
        for job in jobs:
            queue.create_job(job)
        t2, c2 = time.perf_counter(), time.process_time()
        del jobs
        gc.collect()
        done = _Done(n)
        workers = [NoopWorker(queue, done, f"bench-{k}") for k in range(threads)]
        try:
            t3, c3 = time.perf_counter(), time.process_time()
            for worker in workers:
                worker.start_in_thread()
            if not done.event.wait(WAIT_TIMEOUT):
                raise RuntimeError("the workers did not finish in time")
            t4, c4 = time.perf_counter(), time.process_time()
        finally:
            _stop_all(workers)
        stats = queue.get_stats()
        if stats["complete"] != n:
            raise RuntimeError(f"expected {n} complete jobs, got {stats}")
    return RunTimes(build=t1 - t0, put=t2 - t1, drain=t4 - t3, cpu_put=c2 - c1, cpu_drain=c4 - c3)


# -- 1. throughput: the minimal WAL queue ------------------------------------------------------


class MiniQueue:
    """The least a durable SQLite queue does: a row per job, a status, a payload.

    WAL and ``synchronous = NORMAL`` as SQLiteQueue's default; one transaction
    per enqueue (an INSERT), per claim (``BEGIN IMMEDIATE``, the oldest
    pending row, marked running, ``COMMIT``) and per ack (an UPDATE to done).
    A partial index on pending rows keeps the claim from scanning the done
    ones (without it the drain is quadratic). No ids of its own, no
    timestamps, types, retries, leases, recovery or notifications.
    """

    SCHEMA = (
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL, payload TEXT NOT NULL)",
        "CREATE INDEX jobs_pending ON jobs (id) WHERE status = 'pending'",
    )

    def __init__(self, path: str) -> None:
        self.path = path
        conn = self.connect()
        try:
            for statement in self.SCHEMA:
                conn.execute(statement)
        finally:
            conn.close()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @staticmethod
    def enqueue(conn: sqlite3.Connection, payload: str) -> None:
        conn.execute("INSERT INTO jobs (status, payload) VALUES ('pending', ?)", (payload,))

    @staticmethod
    def claim(conn: sqlite3.Connection) -> tuple[int, str] | None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row: tuple[int, str] | None = conn.execute(
                "SELECT id, payload FROM jobs WHERE status = 'pending' ORDER BY id LIMIT 1"
            ).fetchone()
            if row is not None:
                conn.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (row[0],))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return row

    @staticmethod
    def ack(conn: sqlite3.Connection, row_id: int) -> None:
        conn.execute("UPDATE jobs SET status = 'done' WHERE id = ?", (row_id,))


def _noop(params: Any) -> None:
    return None


def baseline_run(files: _Files, n: int, threads: int) -> RunTimes:
    """The same with :class:`MiniQueue` and *threads* plain threads, each with a connection."""
    path = files.new()
    try:
        mini = MiniQueue(path)
        conn = mini.connect()
        try:
            t0 = time.perf_counter()
            params = [_params(i) for i in range(n)]
            t1, c1 = time.perf_counter(), time.process_time()
            for p in params:
                mini.enqueue(conn, json.dumps(p))
            t2, c2 = time.perf_counter(), time.process_time()
        finally:
            conn.close()
        del params
        gc.collect()
        done = _Done(n)
        stop = threading.Event()
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                conn = mini.connect()
                try:
                    while not stop.is_set():
                        row = mini.claim(conn)
                        if row is None:
                            stop.wait(BASELINE_POLL)
                            continue
                        _noop(json.loads(row[1]))
                        mini.ack(conn, row[0])
                        done.add()
                finally:
                    conn.close()
            except BaseException as exc:
                errors.append(exc)
                done.event.set()  # wake the main thread, which raises

        consumers = [
            threading.Thread(target=consume, name=f"baseline-{k}", daemon=False)
            for k in range(threads)
        ]
        t3, c3 = time.perf_counter(), time.process_time()
        for consumer in consumers:
            consumer.start()
        finished = done.event.wait(WAIT_TIMEOUT)
        t4, c4 = time.perf_counter(), time.process_time()
        stop.set()
        for consumer in consumers:
            consumer.join(WAIT_TIMEOUT)
            if consumer.is_alive():
                raise RuntimeError(f"{consumer.name} did not stop")
        if errors:
            raise RuntimeError("a baseline consumer failed") from errors[0]
        if not finished:
            raise RuntimeError("the baseline consumers did not finish in time")
        check = sqlite3.connect(path)
        try:
            (count,) = check.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone()
        finally:
            check.close()
        if count != n:
            raise RuntimeError(f"expected {n} done rows, got {count}")
    finally:
        files.remove(path)
    return RunTimes(build=t1 - t0, put=t2 - t1, drain=t4 - t3, cpu_put=c2 - c1, cpu_drain=c4 - c3)


def measure_throughput(files: _Files, n: int, repeat: int) -> dict[str, dict[str, Figure]]:
    """Jobs/s for enqueue and drain, 1 and 4 threads, jobworker and baseline.

    The four runs of a repeat are interleaved so drift hits them alike.
    Enqueue figures pool the 1- and 4-thread runs (nothing runs yet).
    The ``cpu_*`` figures are process CPU microseconds per job, every thread
    counted: less sensitive than rates to other load on the machine.
    """
    runs: dict[str, Callable[[_Files, int, int], RunTimes]] = {
        "jobworker": jobworker_run,
        "baseline": baseline_run,
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {
            key: []
            for key in (
                "enqueue",
                "put_only",
                "drain_1",
                "drain_4",
                "cpu_put",
                "cpu_drain_1",
                "cpu_drain_4",
            )
        }
        for name in runs
    }
    for _ in range(repeat):
        for threads in (1, 4):
            for name, run in runs.items():
                gc.collect()
                times = run(files, n, threads)
                s = samples[name]
                s["enqueue"].append(n / (times.build + times.put))
                s["put_only"].append(n / times.put)
                s[f"drain_{threads}"].append(n / times.drain)
                s["cpu_put"].append(times.cpu_put / n * 1e6)
                s[f"cpu_drain_{threads}"].append(times.cpu_drain / n * 1e6)
    return {name: {k: _fig(v) for k, v in s.items()} for name, s in samples.items()}


# -- 2. latency -------------------------------------------------------------------------------

_CONDITION_WAIT = threading.Condition.wait.__code__


class _WaitSignal:
    """Tells when the armed thread next enters ``threading.Condition.wait``.

    SQLiteQueue's poll reads its clock last in ``_next_wake``, before a
    database read and outside its lock, so a clock that signals (as in
    ``bench_core.py``) would let a ``create_job`` land before the worker
    sleeps; the poll would then skip the sleep. Instead, the worker arms a
    profile hook for its own thread (``sys.setprofile``) when a job
    completes; the first ``Condition.wait`` it enters afterwards is the idle
    poll going to sleep. The hook sets ``ready`` and removes itself. The
    poll enters ``wait`` holding the queue's Condition, and ``create_job``
    needs that Condition to notify, so the notify cannot come before the
    worker sleeps: every sample starts from a worker blocked in its poll.
    """

    def __init__(self) -> None:
        self.ready = threading.Event()

    def arm(self) -> None:
        """Watch the calling thread (it must be the worker thread)."""
        sys.setprofile(self._hook)

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is _CONDITION_WAIT:
            sys.setprofile(None)
            self.ready.set()


class LatencyWorker(jw.JobWorker):
    """Record ``perf_counter()`` on the first line of ``execute_job``."""

    def __init__(self, queue: jw.JobQueue, signal: _WaitSignal) -> None:
        super().__init__(queue, job_types=[JOB_TYPE])
        self._signal = signal
        self.started_at = 0.0  # written by the worker thread before it sleeps again

    def get_worker_name(self) -> str:
        return "bench-latency"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == JOB_TYPE

    def execute_job(self, job: jw.AnyJob) -> None:
        self.started_at = time.perf_counter()

    def on_job_complete(self, job: jw.AnyJob) -> None:
        # The next Condition.wait of this thread is the poll going to sleep.
        self._signal.arm()


def jobworker_latency(files: _Files, samples: int) -> tuple[list[float], list[float]]:
    """Microseconds from before ``create_job`` to the first line of ``execute_job``.

    Also returns how long each ``create_job`` call took, in microseconds.
    """
    signal = _WaitSignal()
    latency: list[float] = []
    create: list[float] = []
    with _sqlite_queue(files) as queue:
        worker = LatencyWorker(queue, signal)
        try:
            worker.start_in_thread()
            # A first, unmeasured job: once it completes the worker is armed.
            queue.create_job(jw.new_job(JOB_TYPE, _params(-1)))
            _ready(signal.ready)
            for i in range(samples):
                job = jw.new_job(JOB_TYPE, _params(i))
                t0 = time.perf_counter()
                queue.create_job(job)
                t1 = time.perf_counter()
                _ready(signal.ready)  # the job completed and the worker sleeps again
                latency.append((worker.started_at - t0) * 1e6)
                create.append((t1 - t0) * 1e6)
        finally:
            _stop_all([worker])
    return latency, create


def measure_latency(files: _Files, samples: int, repeat: int) -> dict[str, dict[str, Figure]]:
    """p50, p99 and max of *samples* one-at-a-time latencies, per repeat."""
    out: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p99": [], "max": []} for name in ("start", "create_job")
    }
    for _ in range(repeat):
        gc.collect()
        latency, create = jobworker_latency(files, samples)
        for name, values in (("start", latency), ("create_job", create)):
            for key, value in _percentiles(values).items():
                out[name][key].append(value)
    return {name: {k: _fig(v) for k, v in d.items()} for name, d in out.items()}


# -- 3. claims ---------------------------------------------------------------------------------


def _fill(queue: jw.JobQueue, count: int) -> None:
    for i in range(count):
        queue.create_job(jw.new_job(JOB_TYPE, _params(i)))


def _always(job: jw.PendingJob[Any]) -> bool:
    return True


#: The claim variants of phase 3, in table order.
CLAIM_VARIANTS = ("types", "predicate", "untyped")


def measure_claims(files: _Files, backlog: int, claims: int, repeat: int) -> dict[str, Figure]:
    """Microseconds per ``poll_next_pending_job(timeout=0)`` with *backlog* waiting.

    The queue holds ``backlog + claims`` pending jobs before each batch and
    is topped up after it, so at least *backlog* jobs wait throughout. Each
    claim is timed alone; the claimed job is then cancelled, untimed, so at
    most one job is running at a claim, as with one worker. Variants:
    ``types`` takes the one-transaction path; ``predicate`` is how a
    JobWorker with ``job_types`` calls it (types plus ``can_process_job``);
    ``untyped`` is how a JobWorker without ``job_types`` (the default) calls
    it, with the predicate alone. ``untyped`` claims scan the backlog, so
    they run a tenth of the batch. Each batch gives a mean (WAL checkpoints
    included, wherever they fall) and a median (the usual claim).
    """
    samples: dict[str, list[float]] = {
        f"{name}_{stat}": [] for name in CLAIM_VARIANTS for stat in ("mean", "p50")
    }
    with _sqlite_queue(files) as queue:
        _fill(queue, backlog + claims)
        types = [JOB_TYPE]
        variants: dict[str, tuple[int, Callable[[], jw.RunningJob[Any, Any] | None]]] = {
            "types": (
                claims,
                lambda: queue.poll_next_pending_job(types=types, worker="bench", timeout=0),
            ),
            "predicate": (
                claims,
                lambda: queue.poll_next_pending_job(
                    types=types, predicate=_always, worker="bench", timeout=0
                ),
            ),
            "untyped": (
                max(1, claims // 10),
                lambda: queue.poll_next_pending_job(predicate=_always, worker="bench", timeout=0),
            ),
        }
        for _ in range(repeat):
            for name, (count, claim) in variants.items():
                gc.collect()
                times: list[float] = []
                for _ in range(count):
                    t0 = time.perf_counter()
                    job = claim()
                    times.append((time.perf_counter() - t0) * 1e6)
                    if job is None:
                        raise RuntimeError("a claim found no job")
                    queue.cancel_job(job.metadata.id)
                samples[f"{name}_mean"].append(statistics.fmean(times))
                samples[f"{name}_p50"].append(statistics.median(times))
                _fill(queue, count)
    return {name: _fig(v) for name, v in samples.items()}


# -- profile mode --------------------------------------------------------------------------------

#: Functions of the worker's hot path, shown by cumulative time per job.
HOT_PATH = (
    "run_once",
    "poll_next_pending_job",
    "_claim_accepted",
    "_claim_best",
    "_recover_if_due",
    "_recover",
    "_stream",
    "_ready_rows",
    "_decode_row",
    "_load",
    "row_to_job",
    "_write",
    "_read",
    "_conn",
    "_claim_row",
    "start",
    "new_claim",
    "_store",
    "mutable_values",
    "_decode",
    "decode_job",
    "load_value",
    "encode_job",
    "encode_value",
    "_encode_update",
    "validate_job",
    "_process",
    "track",
    "_write_result",
    "update_job",
    "apply_update",
    "complete",
    "evolve",
    "_next_wake",
    "_notify",
    "_now_us",
    "to_us",
    "from_us",
    "now",
    "on_job_complete",
)

#: What one job costs, counted by calls: label, function names.
COUNTS = (
    ("write transactions (_write: BEGIN IMMEDIATE ... COMMIT)", ("_write",)),
    ("reads outside a transaction (_read + _stream pages)", ("_read", "_ready_rows")),
    ("statements (Connection.execute)", ("<method 'execute' of 'sqlite3.Connection' objects>",)),
    ("lease recovery checks (_recover + _recover_if_due)", ("_recover", "_recover_if_due")),
    ("rows decoded to jobs (row_to_job)", ("row_to_job",)),
    ("values encoded to JSON (encode_value)", ("encode_value",)),
    ("values decoded from JSON (load_value)", ("load_value",)),
    ("clock reads (_now_us)", ("_now_us",)),
    ("idle-wake queries (_next_wake)", ("_next_wake",)),
    ("heartbeat hand-offs (_Heartbeat.track)", ("track",)),
)


def profile_drain(files: _Files, n: int, top: int = 25) -> None:
    """Drain *n* no-op jobs from a SQLiteQueue with one worker in this thread under cProfile.

    Only the drain is profiled (the jobs are enqueued first). The worker
    loop runs in the calling thread (``worker.start()``) because cProfile
    follows one thread; its heartbeat thread still runs, as in production.
    """
    import cProfile
    import pstats

    with _sqlite_queue(files) as queue:
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
        f"# Profile of a one-worker SQLiteQueue drain of {n:,} no-op jobs\n\n"
        f"{n / elapsed:,.0f} jobs/s under cProfile ({elapsed / n * 1e6:.1f} us per job; "
        "profiling inflates every call, read the shares, not the totals).\n"
    )
    calls: dict[str, int] = {}
    for (_, _, name), record in stats.items():
        calls[name] = calls.get(name, 0) + record[0]
    print("## Per job, by calls\n")
    print(_row(["what", "per job"]), _row(["---", "---:"]), sep="\n")
    for label, names in COUNTS:
        print(_row([label, f"{sum(calls.get(name, 0) for name in names) / n:.2f}"]))
    header = [
        _row(["function", "calls/job", "own us/job", "cumulative us/job"]),
        _row(["---", "---:", "---:", "---:"]),
    ]

    def line(key: tuple[str, int, str]) -> str:
        _, ncalls, own, cumulative, _ = stats[key]
        return _row(
            [
                _where(key),
                f"{ncalls / n:.2f}",
                f"{own / n * 1e6:.2f}",
                f"{cumulative / n * 1e6:.2f}",
            ]
        )

    by_own = sorted(stats, key=lambda k: -stats[k][2])[:top]
    print(f"\n## Top {top} by own time\n", *header, *map(line, by_own), sep="\n")
    hot = [
        k
        for k in stats
        if k[2] in HOT_PATH or "sqlite3." in k[2] or k[2].endswith((" now>", "loads>"))
    ]
    hot.sort(key=lambda k: -stats[k][3])
    print("\n## Hot path, by cumulative time\n", *header, *map(line, hot), sep="\n")


# -- output ----------------------------------------------------------------------------------------


_THROUGHPUT_HEADER = [
    "measurement",
    "SQLiteQueue + JobWorker",
    "minimal WAL queue",
    "jobworker / minimal",
]


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    o = report["options"]
    lines = [
        "# jobworker SQLite benchmark",
        "",
        f"CPython {m['python']} on {m['system']} {m['machine']}, nproc {m['nproc']}; "
        f"SQLite {m['sqlite']}; jobworker {m['jobworker']}; {o['jobs']:,} jobs per "
        f"throughput run, {o['repeat']} repeats; WAL, synchronous NORMAL, leases on.",
        "Cells: median [min-max] over the repeats.",
        "",
        "## 1. Throughput, no-op jobs (jobs/s, higher is better)",
        "",
        _row(_THROUGHPUT_HEADER),
        _row(["---", "---:", "---:", "---:"]),
    ]
    t = report["throughput"]
    names = {
        "enqueue": "enqueue (new_job + create_job / params + INSERT)",
        "put_only": "create_job / json.dumps + INSERT alone",
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
        "Process CPU time per job, every thread counted (microseconds, lower is better; "
        "less sensitive than the rates to other load on the machine):",
        "",
        _row(_THROUGHPUT_HEADER),
        _row(["---", "---:", "---:", "---:"]),
    ]
    cpu_names = {
        "cpu_put": "create_job / json.dumps + INSERT",
        "cpu_drain_1": "drain, 1 worker thread",
        "cpu_drain_4": "drain, 4 worker threads",
    }
    for key, label in cpu_names.items():
        jwf, base = t["jobworker"][key], t["baseline"][key]
        lines.append(
            _row([label, _spread(jwf, ",.1f"), _spread(base, ",.1f"), f"{_ratio(jwf, base):.2f}"])
        )

    lat = report["latency"]
    lines += [
        "",
        f"## 2. Enqueue -> start latency, idle worker ({o['latency_samples']:,} jobs one at "
        "a time, microseconds, lower is better)",
        "",
        _row(["percentile", "create_job -> execute_job", "of which the create_job call"]),
        _row(["---", "---:", "---:"]),
    ]
    for key in ("p50", "p99", "max"):
        lines.append(
            _row(
                [
                    key,
                    _spread(lat["start"][key], ",.1f"),
                    _spread(lat["create_job"][key], ",.1f"),
                ]
            )
        )

    lines += [
        "",
        f"## 3. Claim time by backlog ({o['claims']:,} claims per batch, "
        f"{max(1, o['claims'] // 10):,} without job_types; microseconds per claim, "
        "lower is better)",
        "",
        _row(
            [
                "jobs waiting",
                "types: mean",
                "types: median",
                "types + predicate (worker with job_types): mean",
                "types + predicate: median",
                "predicate only (worker without job_types): mean",
                "predicate only: median",
            ]
        ),
        _row(["---", *["---:"] * 6]),
    ]
    keys = [f"{name}_{stat}" for name in CLAIM_VARIANTS for stat in ("mean", "p50")]
    claims: dict[int, dict[str, Figure]] = report["claims"]
    for backlog, figs in claims.items():
        lines.append(_row([f"{backlog:,}", *(_spread(figs[k], ",.1f") for k in keys)]))
    backlogs = list(claims)
    small = claims[backlogs[0]]
    for big in backlogs[1:]:
        ratios = (f"{_ratio(claims[big][k], small[k]):.2f}" for k in keys)
        lines.append(_row([f"ratio {big:,} / {backlogs[0]:,}", *ratios]))
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=_positive, help="jobs per throughput run (5000)")
    parser.add_argument("--repeat", type=_positive, help="repeats of each measurement (5)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="make the temporary directory for the database files in DIR "
        "(default: the system's temporary directory)",
    )
    parser.add_argument(
        "--profile-drain",
        action="store_true",
        help="only profile a one-worker drain of --jobs jobs (cProfile) and print the costs",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.jobs = args.jobs or (500 if quick else 5_000)
    args.repeat = args.repeat or (3 if quick else 5)
    args.latency_samples = 100 if quick else 500
    args.claims = 200 if quick else 1_000
    args.backlogs = [1_000, 10_000] if quick else [1_000, 100_000]
    return args


def _nproc() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files = _Files(args.dir)
    try:
        if args.profile_drain:
            profile_drain(files, args.jobs)
            return 0
        # Warm up imports, the converter, SQLite and thread start-up; not measured.
        jobworker_run(files, 200, 1)
        baseline_run(files, 200, 1)

        report: dict[str, Any] = {
            "machine": {
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "system": platform.system(),
                "machine": platform.machine(),
                "nproc": _nproc(),
                "sqlite": sqlite3.sqlite_version,
                "jobworker": jw.__version__,
            },
            "options": {
                "jobs": args.jobs,
                "repeat": args.repeat,
                "latency_samples": args.latency_samples,
                "claims": args.claims,
                "backlogs": args.backlogs,
                "synchronous": "NORMAL",
                "busy_timeout": BUSY_TIMEOUT,
                "baseline_poll": BASELINE_POLL,
            },
        }
        phases: list[tuple[str, Callable[[], Any]]] = [
            ("throughput", lambda: measure_throughput(files, args.jobs, args.repeat)),
            ("latency", lambda: measure_latency(files, args.latency_samples, args.repeat)),
            (
                "claims",
                lambda: {
                    backlog: measure_claims(files, backlog, args.claims, args.repeat)
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
    finally:
        files.cleanup()
    print(render(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_jsonable(report), f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
