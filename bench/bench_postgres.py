"""Measure jobworker's PostgresQueue and JobWorker on a PostgreSQL server.

One run measures, each figure repeated ``--repeat`` times (median and min-max):

0. the server as this client sees it: a round trip, and a one-row commit;
1. throughput of no-op jobs: enqueue rate, and drain rate with one and four
   worker threads in this process, and with two processes of two worker
   threads each (subprocesses of this script);
2. enqueue -> start latency of an idle worker: with notifications, the
   worker in another process and in this one; without notifications, the
   worker in another process polling every 0.05 s;
3. time per claim with 1,000 and 100,000 jobs waiting.

Everything lives in a schema of its own (``jwbench_<pid>_<random>``), made by
``PostgresQueue(migrate=True)`` and dropped at the end, also on failure. See
``bench/README.md`` for how to read the figures.

Usage::

    python bench/bench_postgres.py [--jobs N] [--repeat R] [--quick] [--json PATH] [--dsn DSN]
    python bench/bench_postgres.py --profile-drain [--jobs N] [--dsn DSN]

The DSN defaults to ``$JOBWORKER_TEST_POSTGRES``, else the local test server.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import queue as stdqueue
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import attrs
import psycopg
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
    _row,
    _spread,
    _stop_all,
    _where,
)

import jobworker as jw
from jobworker.queues._rows import COLUMNS, values_of

#: The server the benchmark uses unless --dsn says otherwise (as the tests do).
DEFAULT_DSN = os.environ.get("JOBWORKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
#: Least and most seconds between two looks at get_stats while other processes drain.
WATCH_STEP = (0.01, 0.25)
#: The idle worker's poll interval when notifications are off, in seconds.
POLL_INTERVAL = 0.05
#: Processes and worker threads per process of the multi-process drain.
PROCESSES, THREADS_PER_PROCESS = 2, 2


# -- the database -----------------------------------------------------------------------------


class Database:
    """One schema for the whole run; every queue gets fresh tables under its own prefix."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"jwbench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._count = 0

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    @contextmanager
    def queue(self, **options: Any) -> Iterator[jw.PostgresQueue]:
        """A PostgresQueue on fresh tables, closed and dropped afterwards."""
        self._count += 1
        prefix = f"r{self._count}_"
        queue = jw.PostgresQueue(
            self.dsn, schema=self.schema, prefix=prefix, migrate=True, **options
        )
        try:
            yield queue
        finally:
            queue.close()
            with self.connect() as conn:
                conn.execute(f"DROP TABLE IF EXISTS {queue.names.jobs}, {queue.names.meta}")

    def child_config(self, queue: jw.PostgresQueue, **extra: Any) -> dict[str, Any]:
        """What a subprocess needs to open the same queue."""
        return {
            "dsn": self.dsn,
            "schema": self.schema,
            "prefix": queue.names.prefix,
            "notify": queue.notify,
            **extra,
        }

    def drop(self) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def server_info(db: Database) -> dict[str, str]:
    with db.connect() as conn:
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
        }


# -- 0. the server from this client -----------------------------------------------------------


def measure_reference(db: Database, samples: int, repeat: int) -> dict[str, dict[str, Figure]]:
    """Microseconds of a bare round trip (``SELECT 1``) and of a one-row autocommit INSERT.

    Every job costs round trips and commits; these are their floors on this
    machine, measured on one connection of its own.
    """
    table = f'"{db.schema}"."reference"'
    out: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p99": [], "max": []} for name in ("round_trip", "commit")
    }
    with db.connect() as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"')
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, payload text NOT NULL)")
        try:
            statements = {
                "round_trip": ("SELECT 1", ()),
                "commit": (f"INSERT INTO {table} (payload) VALUES (%s)", ('{"a": 1, "b": "x"}',)),
            }
            for _ in range(repeat):
                for name, (sql, args) in statements.items():
                    times = []
                    for _ in range(samples):
                        t0 = time.perf_counter()
                        conn.execute(sql, args)
                        times.append((time.perf_counter() - t0) * 1e6)
                    for key, value in _percentiles(times).items():
                        out[name][key].append(value)
        finally:
            conn.execute(f"DROP TABLE {table}")
    return {name: {k: _fig(v) for k, v in d.items()} for name, d in out.items()}


# -- subprocesses -----------------------------------------------------------------------------


class Child:
    """This script run as ``--child``: one JSON config line in, lines of text out.

    A reader thread turns the child's stdout into a queue of lines, so every
    read has a timeout and a child that dies is noticed.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: stdqueue.SimpleQueue[str | None] = stdqueue.SimpleQueue()
        self._reader = threading.Thread(target=self._read_all, name="bench-child-reader")
        self._reader.start()
        try:
            self.send(json.dumps(config))
            if self.read() != "ready":
                raise RuntimeError("the child did not say ready")
        except BaseException:
            self.kill()
            raise

    def _read_all(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = WAIT_TIMEOUT) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except stdqueue.Empty:
            raise RuntimeError(f"no word from child {self.proc.pid} in {timeout} s") from None
        if line is None:
            raise RuntimeError(f"child {self.proc.pid} exited with {self.proc.wait()}")
        return line

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self) -> str:
        """Tell the child to stop; return its last line once it has exited cleanly."""
        self.send("stop")
        last = self.read()
        code = self.proc.wait(WAIT_TIMEOUT)
        if code != 0:
            raise RuntimeError(f"child {self.proc.pid} exited with {code}")
        return last

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(WAIT_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def child_main() -> int:
    """The ``--child`` side: open the queue of the config line, then drain or wait for jobs."""
    config = json.loads(sys.stdin.readline())
    queue = jw.PostgresQueue(
        config["dsn"], schema=config["schema"], prefix=config["prefix"], notify=config["notify"]
    )
    try:
        if config["mode"] == "drain":
            return _child_drain(queue, config["threads"])
        return _child_latency(queue, config["poll_interval"])
    finally:
        queue.close()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _child_drain(queue: jw.PostgresQueue, threads: int) -> int:
    done = _Done(-1)  # never reached: the parent watches the queue and says stop
    workers = [NoopWorker(queue, done, f"bench-{os.getpid()}-{k}") for k in range(threads)]
    # One look at the queue opens a pooled connection before the start signal.
    queue.get_stats()
    _say("ready")
    try:
        if sys.stdin.readline().strip() != "go":
            return 1
        for worker in workers:
            worker.start_in_thread()
        sys.stdin.readline()  # "stop", or end of input if the parent went away
    finally:
        _stop_all(workers)
    _say(json.dumps({"processed": sum(w.get_metrics().processed for w in workers)}))
    return 0


def _child_latency(queue: jw.PostgresQueue, poll_interval: float) -> int:
    worker = LatencyWorker(queue, lambda started: _say(repr(started)), poll_interval=poll_interval)
    worker.start_in_thread()
    try:
        _say("ready")
        sys.stdin.readline()  # "stop", or end of input
    finally:
        _stop_all([worker])
    _say("stopped")
    return 0


# -- 1. throughput ----------------------------------------------------------------------------


@attrs.frozen
class RunTimes:
    """Seconds spent in one throughput run."""

    build: float  # new_job
    put: float  # create_job
    drain: float  # workers started -> every job complete
    watching: float = 0.0  # of the drain, seconds the parent spent in get_stats


def _enqueue(queue: jw.JobQueue, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    jobs = [jw.new_job(JOB_TYPE, _params(i)) for i in range(n)]
    t1 = time.perf_counter()
    for job in jobs:
        queue.create_job(job)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _check_complete(queue: jw.JobQueue, n: int) -> None:
    stats = queue.get_stats()
    if stats["complete"] != n:
        raise RuntimeError(f"expected {n} complete jobs, got {stats}")


def local_run(db: Database, n: int, threads: int) -> RunTimes:
    """Enqueue *n* no-op jobs, then drain them with *threads* JobWorkers in this process."""
    with db.queue() as queue:
        build, put = _enqueue(queue, n)
        gc.collect()
        done = _Done(n)
        workers = [NoopWorker(queue, done, f"bench-{k}") for k in range(threads)]
        try:
            t0 = time.perf_counter()
            for worker in workers:
                worker.start_in_thread()
            if not done.event.wait(WAIT_TIMEOUT):
                raise RuntimeError("the workers did not finish in time")
            t1 = time.perf_counter()
        finally:
            _stop_all(workers)
        _check_complete(queue, n)
    return RunTimes(build=build, put=put, drain=t1 - t0)


def _watch_step(complete: int, n: int, elapsed: float) -> float:
    """Seconds until the next look: a quarter of the time left at the rate so far.

    Each look costs the server a few queries, so looks are rare while many
    jobs are left, and ``WATCH_STEP[0]`` apart near the end, where the clock stops.
    """
    least, most = WATCH_STEP
    if complete <= 0:
        return least
    left = (n - complete) * elapsed / complete
    return min(most, max(least, left / 4))


def remote_run(db: Database, n: int, processes: int, threads: int) -> RunTimes:
    """Enqueue *n* jobs, then drain them with *processes* subprocesses of *threads* workers.

    The clock runs from the start signal to the first look at ``get_stats``
    that finds every job complete; see :func:`_watch_step` for the pause
    between looks.
    """
    with db.queue() as queue:
        build, put = _enqueue(queue, n)
        gc.collect()
        children: list[Child] = []
        try:
            config = db.child_config(queue, mode="drain", threads=threads)
            for _ in range(processes):
                children.append(Child(config))
            watch = threading.Event()  # never set: its wait is the pause between looks
            watching = 0.0
            t0 = time.perf_counter()
            for child in children:
                child.send("go")
            while True:
                look = time.perf_counter()
                complete = queue.get_stats()["complete"]
                t1 = time.perf_counter()
                watching += t1 - look
                if complete >= n:
                    break
                if not all(child.alive() for child in children):
                    raise RuntimeError("a worker process ended early")
                if t1 - t0 > WAIT_TIMEOUT:
                    raise RuntimeError("the worker processes did not finish in time")
                watch.wait(_watch_step(complete, n, t1 - t0))
            processed = [json.loads(child.finish())["processed"] for child in children]
        finally:
            for child in children:
                child.kill()
        if sum(processed) != n:
            raise RuntimeError(f"the processes report {processed} jobs, not {n} in all")
        _check_complete(queue, n)
    return RunTimes(build=build, put=put, drain=t1 - t0, watching=watching)


#: Drain configurations of phase 1: key, run.
DRAINS: tuple[tuple[str, Callable[[Database, int], RunTimes]], ...] = (
    ("drain_1", lambda db, n: local_run(db, n, 1)),
    ("drain_4", lambda db, n: local_run(db, n, 4)),
    ("drain_2x2", lambda db, n: remote_run(db, n, PROCESSES, THREADS_PER_PROCESS)),
)


def measure_throughput(db: Database, n: int, repeat: int) -> dict[str, Figure]:
    """Jobs/s for enqueue and for each drain; the drains of a repeat run in turn.

    Enqueue figures pool every run (nothing is running during the enqueue).
    """
    samples: dict[str, list[float]] = {"enqueue": [], "put_only": []}
    samples.update({key: [] for key, _ in DRAINS})
    for _ in range(repeat):
        for key, run in DRAINS:
            gc.collect()
            times = run(db, n)
            samples["enqueue"].append(n / (times.build + times.put))
            samples["put_only"].append(n / times.put)
            samples[key].append(n / times.drain)
            if key == "drain_2x2":
                samples.setdefault("watch_share", []).append(times.watching / times.drain)
    return {key: _fig(v) for key, v in samples.items()}


# -- 2. latency -------------------------------------------------------------------------------

_CONDITION_WAIT = threading.Condition.wait.__code__


class LatencyWorker(jw.JobWorker):
    """Report the ``time.time()`` of ``execute_job``'s first line once idle again.

    When a job completes, the worker arms a profile hook for its own thread
    (``sys.setprofile``). The hook fires when the thread enters
    ``threading.Condition.wait`` called from the queue's ``_wait``: the idle
    poll going to sleep, with the queue's Condition held. It reports the start
    time then and removes itself. A wake-up (a local ``create_job`` or the
    listener thread relaying a NOTIFY) needs that Condition, so it cannot
    come before the worker sleeps: every sample starts from a sleeping worker.
    """

    def __init__(
        self, queue: jw.JobQueue, report: Callable[[float], None], *, poll_interval: float
    ) -> None:
        super().__init__(queue, job_types=[JOB_TYPE], poll_interval=poll_interval)
        self._report = report
        self._started = 0.0  # written and read by the worker thread only

    def get_worker_name(self) -> str:
        return "bench-latency"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == JOB_TYPE

    def execute_job(self, job: jw.AnyJob) -> None:
        self._started = time.time()

    def on_job_complete(self, job: jw.AnyJob) -> None:
        sys.setprofile(self._hook)

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if (
            event == "call"
            and frame.f_code is _CONDITION_WAIT
            and frame.f_back is not None
            and frame.f_back.f_code.co_name == "_wait"
        ):
            sys.setprofile(None)
            self._report(self._started)


@attrs.frozen
class LatencySamples:
    start: list[float]  # microseconds from before create_job to execute_job's first line
    create: list[float]  # microseconds of the create_job call


def _latency_loop(
    queue: jw.JobQueue, next_start: Callable[[], float], samples: int, jitter: float
) -> LatencySamples:
    """Create one job at a time; *next_start* returns its start once the worker is idle.

    With *jitter*, wait a random time in [0, jitter) before each job, so that
    jobs arrive at random points of a polling worker's cycle.
    """
    rng = random.Random(0)
    pause = threading.Event()  # never set: its wait is the random arrival delay
    queue.create_job(jw.new_job(JOB_TYPE, _params(-1)))  # unmeasured: arms the worker
    next_start()
    start: list[float] = []
    create: list[float] = []
    for i in range(samples):
        if jitter:
            pause.wait(rng.uniform(0, jitter))
        job = jw.new_job(JOB_TYPE, _params(i))
        t0 = time.time()
        queue.create_job(job)
        t1 = time.time()
        started = next_start()
        start.append((started - t0) * 1e6)
        create.append((t1 - t0) * 1e6)
    return LatencySamples(start, create)


def local_latency(db: Database, samples: int) -> LatencySamples:
    """Notifications on, the worker a thread of this process."""
    reports: stdqueue.SimpleQueue[float] = stdqueue.SimpleQueue()
    with db.queue() as queue:
        worker = LatencyWorker(queue, reports.put, poll_interval=1.0)
        worker.start_in_thread()
        try:
            return _latency_loop(queue, lambda: reports.get(timeout=WAIT_TIMEOUT), samples, 0.0)
        finally:
            _stop_all([worker])


def remote_latency(
    db: Database, samples: int, *, notify: bool, poll_interval: float
) -> LatencySamples:
    """The worker in a subprocess; only a NOTIFY (or its own poll) can wake it."""
    with db.queue(notify=notify) as queue:
        child = Child(db.child_config(queue, mode="latency", poll_interval=poll_interval))
        try:
            jitter = 0.0 if notify else poll_interval
            result = _latency_loop(queue, lambda: float(child.read()), samples, jitter)
            child.finish()
        finally:
            child.kill()
    return result


#: Latency variants of phase 2, in table order: key, run.
LATENCIES: tuple[tuple[str, Callable[[Database, int], LatencySamples]], ...] = (
    ("notify_remote", lambda db, n: remote_latency(db, n, notify=True, poll_interval=1.0)),
    ("notify_local", local_latency),
    ("poll_remote", lambda db, n: remote_latency(db, n, notify=False, poll_interval=POLL_INTERVAL)),
)


def measure_latency(db: Database, samples: int, repeat: int) -> dict[str, dict[str, Figure]]:
    """p50, p99 and max of *samples* one-at-a-time latencies, per variant and repeat."""
    out: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeat):
        for key, run in LATENCIES:
            gc.collect()
            result = run(db, samples)
            for name, values in ((key, result.start), (f"{key}_create", result.create)):
                for stat, value in _percentiles(values).items():
                    out.setdefault(name, {}).setdefault(stat, []).append(value)
    return {name: {k: _fig(v) for k, v in d.items()} for name, d in out.items()}


# -- 3. claims --------------------------------------------------------------------------------


class Loader:
    """Bulk-loads pending jobs with COPY, in exactly the form ``create_job`` stores.

    Each job goes through the queue's own encoder (``_encode_new``, what
    ``create_job`` calls) and the backend's ``values_of``; the first load
    checks that a job stored by COPY reads back as the same row as the same
    job stored by ``create_job``.
    """

    def __init__(self, db: Database, queue: jw.PostgresQueue) -> None:
        self._db = db
        self._queue = queue
        self._select = f"SELECT {COLUMNS}, lease_until_us FROM {queue.names.jobs} WHERE id = %s"
        self._checked = False

    def _copy(self, conn: psycopg.Connection[Any], jobs: Sequence[jw.PendingJob[Any]]) -> None:
        sql = f"COPY {self._queue.names.jobs} ({COLUMNS}, lease_until_us) FROM STDIN"
        with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as copy:
            for job in jobs:
                copy.write_row((*values_of(self._queue._encode_new(job)), None))

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        job = jw.new_job(JOB_TYPE, _params(-1))
        job_id = job.metadata.id
        self._queue.create_job(job)
        by_create = conn.execute(self._select, (job_id,)).fetchone()
        conn.execute(f"DELETE FROM {self._queue.names.jobs} WHERE id = %s", (job_id,))
        self._copy(conn, [job])
        by_copy = conn.execute(self._select, (job_id,)).fetchone()
        if by_create is None or by_create != by_copy:
            raise RuntimeError(f"COPY stores {by_copy!r}, create_job {by_create!r}")
        self._checked = True

    def fill(self, count: int) -> None:
        with self._db.connect() as conn:
            if not self._checked:
                self._check(conn)
                count -= 1
            jobs = [jw.new_job(JOB_TYPE, _params(i)) for i in range(count)]
            self._copy(conn, jobs)


def _always(job: jw.PendingJob[Any]) -> bool:
    return True


#: The claim variants of phase 3, in table order.
CLAIM_VARIANTS = ("types", "predicate", "untyped")


def measure_claims(db: Database, backlog: int, claims: int, repeat: int) -> dict[str, Figure]:
    """Microseconds per ``poll_next_pending_job(timeout=0)`` with *backlog* jobs waiting.

    The table holds ``backlog + claims`` pending jobs before each batch and
    is topped up after it, so at least *backlog* wait throughout. Each claim
    is timed alone; the job is then cancelled, untimed, so at most one job
    runs at a claim. Variants: ``types`` (the head of the type's index in one
    transaction), ``predicate`` (types plus a predicate that accepts every
    job: how a JobWorker with job_types claims), ``untyped`` (predicate
    only: a JobWorker without job_types). Each batch gives a mean and a median.
    """
    samples: dict[str, list[float]] = {
        f"{name}_{stat}": [] for name in CLAIM_VARIANTS for stat in ("mean", "p50")
    }
    with db.queue() as queue:
        loader = Loader(db, queue)
        loader.fill(backlog + claims)
        with db.connect() as conn:
            # As autovacuum would, sooner or later, on a table this size.
            conn.execute(f"ANALYZE {queue.names.jobs}")
        types = [JOB_TYPE]
        variants: dict[str, Callable[[], jw.RunningJob[Any, Any] | None]] = {
            "types": lambda: queue.poll_next_pending_job(types=types, worker="bench", timeout=0),
            "predicate": lambda: queue.poll_next_pending_job(
                types=types, predicate=_always, worker="bench", timeout=0
            ),
            "untyped": lambda: queue.poll_next_pending_job(
                predicate=_always, worker="bench", timeout=0
            ),
        }
        for _ in range(repeat):
            for name, claim in variants.items():
                gc.collect()
                times: list[float] = []
                for _ in range(claims):
                    t0 = time.perf_counter()
                    job = claim()
                    times.append((time.perf_counter() - t0) * 1e6)
                    if job is None:
                        raise RuntimeError("a claim found no job")
                    queue.cancel_job(job.metadata.id)
                pct = _percentiles(times)
                samples[f"{name}_mean"].append(sum(times) / len(times))
                samples[f"{name}_p50"].append(pct["p50"])
                loader.fill(claims)
    return {name: _fig(v) for name, v in samples.items()}


# -- profile mode -----------------------------------------------------------------------------


class _Tracer:
    """libpq's protocol trace of the queue's pooled connections, one file each.

    While installed, every connection psycopg opens is recorded, except the
    LISTEN connection (opened by the queue's listener thread, which only
    receives). Between :meth:`start` and :meth:`stop`, the recorded
    connections and every later one are traced, each to a file of its own.
    """

    def __init__(self, directory: str) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._opened: list[psycopg.Connection[Any]] = []  # guarded by _lock
        self._traced: list[tuple[psycopg.Connection[Any], str]] = []  # guarded by _lock
        self._files = 0  # guarded by _lock
        self._active = False  # guarded by _lock
        self.opened = 0  # guarded by _lock: connections opened since start()

    @contextmanager
    def installed(self) -> Iterator[None]:
        saved = psycopg.Connection.__dict__["connect"]
        tracer = self

        def connect(cls: type[psycopg.Connection[Any]], *args: Any, **kwargs: Any) -> Any:
            conn = saved.__func__(cls, *args, **kwargs)
            if not threading.current_thread().name.startswith("jobworker-listen-"):
                with tracer._lock:
                    tracer._opened.append(conn)
                    if tracer._active:
                        tracer.opened += 1
                        tracer._trace(conn)
            return conn

        psycopg.Connection.connect = classmethod(connect)  # type: ignore[assignment,method-assign]
        try:
            yield
        finally:
            psycopg.Connection.connect = saved  # type: ignore[method-assign]

    def _trace(self, conn: psycopg.Connection[Any]) -> None:
        self._files += 1
        path = os.path.join(self._dir, f"conn-{self._files}.trace")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        conn.pgconn.trace(fd)  # libpq writes through a FILE it opens on fd
        conn.pgconn.set_trace_flags(
            psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
        )
        self._traced.append((conn, path))

    def start(self) -> None:
        """Trace the open connections, and every new one until :meth:`stop`.

        Call it when no other thread uses the connections.
        """
        with self._lock:
            self._active = True
            self._traced = []
            self.opened = 0
            for conn in self._opened:
                if not conn.closed:
                    self._trace(conn)

    def stop(self) -> list[tuple[int, str]]:
        """Stop tracing (libpq flushes each file); return this session's (connection, file).

        Call it when no other thread uses the connections.
        """
        with self._lock:
            self._active = False
            for conn, _ in self._traced:
                if not conn.closed:
                    conn.pgconn.untrace()
            return [(id(conn), path) for conn, path in self._traced]


_PARSE = re.compile(r' "([^"]*)" "(.*)" \d', re.S)
_BIND = re.compile(r' "[^"]*" "([^"]*)"')


def _label(sql: str, table: str) -> str:
    """A short name for a statement: the table, column and value lists abbreviated."""
    text = " ".join(sql.split()).replace(table, "{t}").replace(COLUMNS, "<columns>")
    text = re.sub(r"\(\$\d+(, \$\d+)*\)", "(...)", text)
    text = re.sub(r'"_pg3_\d+"', "<name>", text)  # psycopg's savepoint names
    return text if text else '"" (empty query: the pool checking the connection)'


def parse_traces(
    files: Sequence[tuple[int, str]], table: str, names: dict[int, dict[str, str]]
) -> tuple[Counter[str], Counter[str]]:
    """Count, per statement, the executions in libpq traces, and the protocol messages.

    *files* are ``(connection key, path)``; *names* maps each connection's
    prepared statement names to their SQL, kept from one call to the next
    (psycopg prepares a statement once per connection, after five uses). A
    round trip ends with each ReadyForQuery: one per simple ``Query`` and one
    per ``Sync`` of the extended protocol (Parse / Bind / Describe / Execute / Sync).
    """
    statements: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    for key, path in files:
        prepared = names.setdefault(key, {})
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        # A message may span lines (a statement with newlines): split on message starts.
        for message in re.split(r"\n(?=[FB]\t\d+\t)", text):
            parts = message.split("\t", 3)
            if len(parts) < 3:
                continue
            direction, _, kind = parts[:3]
            rest = parts[3].strip() if len(parts) > 3 else ""
            kind = kind.strip()
            messages[f"{direction} {kind}"] += 1
            if direction != "F":
                continue
            if kind == "Query":
                statements[_label(rest[1:-1], table)] += 1  # drop the enclosing quotes
            elif kind == "Parse" and (m := _PARSE.match(" " + rest)):
                prepared[m.group(1)] = m.group(2)
            elif kind == "Bind" and (m := _BIND.match(" " + rest)):
                statements[_label(prepared.get(m.group(1), "?"), table)] += 1
    return statements, messages


#: psycopg and psycopg_pool entry points shown in the hot path beside jobworker's own.
PSYCOPG_HOT = (
    "connection",  # ConnectionPool.connection: checkout and return
    "getconn",
    "check_connection",  # the check at checkout: one round trip
    "putconn",
    "execute",
    "transaction",
    "wait",  # Connection.wait: blocked until the server answers
)


def _share(key: tuple[str, int, str]) -> str:
    """Who a profiled function's own time belongs to."""
    filename, _, name = key
    if filename == "~":
        return "built-ins (C functions called from Python)"
    path = filename.replace(os.sep, "/")
    if "/psycopg_pool/" in path:
        return "psycopg_pool (Python)"
    if "/psycopg/" in path:
        if name == "wait" and path.endswith("/connection.py"):
            return "psycopg Connection.wait: blocked until the server answers"
        if name in ("_send_query_prepared", "_execute_send", "_exec_command"):
            return "psycopg: sending queries (libpq send calls)"
        return "psycopg (Python: cursors, adaptation, prepared statements)"
    if "/jobworker/" in path:
        return "jobworker (Python)"
    if "/attr/" in path or "/attrs/" in path:
        return "attrs"
    return "standard library and other"


@attrs.frozen
class Traffic:
    """What a phase sent and received, from the libpq traces."""

    statements: Counter[str]  # executions per statement label
    messages: Counter[str]  # protocol messages, "F Query", "B ReadyForQuery", ...
    connections: int  # traced
    opened: int  # of which opened during the phase

    @property
    def round_trips(self) -> int:
        # One ReadyForQuery per simple Query and per Sync: the client waits for each.
        return self.messages["B ReadyForQuery"]


def _trace_run(db: Database, n: int) -> tuple[Traffic, Traffic, str]:
    """Enqueue *n* jobs, then drain them with one worker; trace both phases apart.

    Ten jobs enqueued first (traced, not counted) let psycopg prepare its
    statements (it does after five uses); the drain takes them too, so it
    drains ``n + 10``.
    """
    names: dict[int, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="jobworker-bench-trace-") as directory:
        tracer = _Tracer(directory)
        with tracer.installed(), db.queue() as queue:
            table = queue.names.jobs

            def traced(phase: Callable[[], object]) -> Traffic:
                tracer.start()
                try:
                    phase()
                finally:
                    files = tracer.stop()
                return Traffic(*parse_traces(files, table, names), len(files), tracer.opened)

            traced(lambda: _enqueue(queue, 10))
            enqueue = traced(lambda: _enqueue(queue, n))
            done = _Done(n + 10)
            worker = NoopWorker(queue, done, "bench-trace")

            def drain() -> None:
                try:
                    worker.start_in_thread()
                    if not done.event.wait(WAIT_TIMEOUT):
                        raise RuntimeError("the worker did not finish in time")
                finally:
                    _stop_all([worker])

            drain_traffic = traced(drain)
            _check_complete(queue, n + 10)
    return enqueue, drain_traffic, table


def _cprofile_drain(db: Database, n: int) -> tuple[dict[tuple[str, int, str], Any], float]:
    """Drain *n* jobs with one worker in this thread under cProfile; return stats, seconds."""
    import cProfile
    import pstats

    with db.queue() as queue:
        _enqueue(queue, n)
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
        _check_complete(queue, n)
    return pstats.Stats(profiler).stats, elapsed  # type: ignore[attr-defined]


def _print_traffic(title: str, traffic: Traffic, n: int) -> None:
    print(f"## {title} (libpq trace of {traffic.connections} connection(s))\n")
    print(_row(["statement", "per job"]), _row(["---", "---:"]), sep="\n")
    for label, count in traffic.statements.most_common():
        per_job = f"{count / n:.2f}" if count / n >= 0.01 else f"{count} in all"
        print(_row([f"`{label}`", per_job]))
    print(_row(["**round trips (ReadyForQuery)**", f"**{traffic.round_trips / n:.2f}**"]))
    print(_row(["of which COMMIT", f"{traffic.statements['COMMIT'] / n:.2f}"]))
    print(_row(["rows received (DataRow)", f"{traffic.messages['B DataRow'] / n:.2f}"]))
    print(_row(["connections opened meanwhile", f"{traffic.opened} in all"]))
    print(
        "\nA connection closed before the end of the phase (such as the database clock's "
        "sampling connection) may leave its last statements out of the trace: libpq writes the "
        "trace through a buffer that only stopping the trace flushes.\n"
    )


def profile_drain(db: Database, n: int, top: int = 25) -> None:
    """Count round trips per job (libpq trace), then profile a drain (cProfile)."""
    print(f"# Profile of a one-worker PostgresQueue drain of {n:,} no-op jobs\n")
    print("Default PostgresQueue and JobWorker options; the worker has job_types=['noop'].\n")
    reference = measure_reference(db, 200, 1)
    rt = reference["round_trip"]["p50"].median
    commit = reference["commit"]["p50"].median
    print(
        f"This client: round trip p50 {rt:.0f} us, one-row autocommit INSERT p50 {commit:.0f} us.\n"
    )
    round_trips = commits = 0
    if sys.platform == "linux":
        enqueue, drain, table = _trace_run(db, n)
        _print_traffic("Round trips per create_job", enqueue, n)
        _print_traffic("Round trips per job drained", drain, n + 10)
        print(f"`{{t}}` is the jobs table, {table}.\n")
        round_trips = round(drain.round_trips * n / (n + 10))
        commits = round(drain.statements["COMMIT"] * n / (n + 10))
    else:
        print("(libpq tracing is available on Linux only: round trips not counted.)\n")

    stats, elapsed = _cprofile_drain(db, n)
    print(
        f"## cProfile\n\n{n / elapsed:,.0f} jobs/s under cProfile ({elapsed / n * 1e6:,.0f} us "
        "per job; cProfile times wall clock, so waits on the server show as the time of "
        "psycopg's wait functions).\n"
    )
    if round_trips:
        floor = (round_trips - commits) / n * rt + commits / n * commit
        print(
            f"Floor from the trace: {round_trips / n:.1f} round trips x {rt:.0f} us, "
            f"{commits / n:.1f} of them commits at {commit:.0f} us: about {floor:,.0f} us per "
            "job spent on the server and the network at the least.\n"
        )
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
                f"{own / n * 1e6:.1f}",
                f"{cumulative / n * 1e6:.1f}",
            ]
        )

    shares: Counter[str] = Counter()
    for key, record in stats.items():
        shares[_share(key)] += record[2]
    total = sum(shares.values())
    print("### Where the time goes (own time, summed)\n")
    print(_row(["whose", "us/job", "share"]), _row(["---", "---:", "---:"]), sep="\n")
    for whose, seconds in shares.most_common():
        print(_row([whose, f"{seconds / n * 1e6:,.0f}", f"{seconds / total:.0%}"]))
    by_own = sorted(stats, key=lambda k: -stats[k][2])[:top]
    print(f"\n### Top {top} by own time\n", *header, *map(line, by_own), sep="\n")
    hot = [
        key
        for key in stats
        if "/jobworker/" in key[0].replace(os.sep, "/")
        or (key[2] in PSYCOPG_HOT and "psycopg" in key[0])
    ]
    hot = [key for key in hot if stats[key][3] / elapsed >= 0.005]  # at least 0.5%
    hot.sort(key=lambda k: -stats[k][3])
    print("\n### Hot path, by cumulative time\n", *header, *map(line, hot), sep="\n")


# -- output -----------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    o = report["options"]
    s = report["server"]
    lines = [
        "# jobworker PostgreSQL benchmark",
        "",
        f"CPython {m['python']} on {m['system']} {m['machine']}, nproc {m['nproc']}; "
        f"PostgreSQL {s['server_version']} (synchronous_commit {s['synchronous_commit']}, "
        f"fsync {s['fsync']}, wal_sync_method {s['wal_sync_method']}); psycopg {m['psycopg']} "
        f"({m['psycopg_impl']}); jobworker {m['jobworker']}; {o['jobs']:,} jobs per throughput "
        f"run, {o['repeat']} repeats; default PostgresQueue options unless stated.",
        "Cells: median [min-max] over the repeats."
        + (
            f" Load average (1, 5, 15 min) at the start {_fmt_load(m['loadavg_start'])}, "
            f"at the end {_fmt_load(m['loadavg_end'])}."
            if m.get("loadavg_start")
            else ""
        ),
        "",
        f"## 0. The server from this client ({o['reference_samples']:,} statements per run, "
        "microseconds)",
        "",
        _row(["statement", "p50", "p99"]),
        _row(["---", "---:", "---:"]),
    ]
    ref = report["reference"]
    for key, label in (
        ("round_trip", "round trip (`SELECT 1`)"),
        ("commit", "one-row INSERT, autocommit (a commit)"),
    ):
        lines.append(
            _row([label, _spread(ref[key]["p50"], ",.0f"), _spread(ref[key]["p99"], ",.0f")])
        )

    t = report["throughput"]
    lines += [
        "",
        "## 1. Throughput, no-op jobs (jobs/s, higher is better)",
        "",
        _row(["measurement", "jobs/s", "us per job"]),
        _row(["---", "---:", "---:"]),
    ]
    names = {
        "enqueue": "enqueue (new_job + create_job)",
        "put_only": "create_job alone",
        "drain_1": "drain, 1 worker thread",
        "drain_4": "drain, 4 worker threads in one process",
        "drain_2x2": f"drain, {PROCESSES} processes x {THREADS_PER_PROCESS} worker threads",
    }
    for key, label in names.items():
        fig = t[key]
        lines.append(_row([label, _spread(fig, ",.0f"), f"{1e6 / fig.median:,.0f}"]))
    lines.append(
        _row(["drain, 4 threads / 1 thread", f"{_ratio(t['drain_4'], t['drain_1']):.2f}", ""])
    )
    lines.append(
        _row(
            [
                f"drain, {PROCESSES}x{THREADS_PER_PROCESS} processes / 1 thread",
                f"{_ratio(t['drain_2x2'], t['drain_1']):.2f}",
                "",
            ]
        )
    )
    lines += [
        "",
        "While the processes drain, this process looks at `get_stats()` every "
        f"{o['watch_step'][0] * 1000:.0f} to {o['watch_step'][1] * 1000:.0f} ms (a quarter of the "
        "time left at the rate so far); the looks took "
        f"{_spread(_pct(t['watch_share']), '.1f')} % of the drain's wall time.",
    ]

    lat = report["latency"]
    lines += [
        "",
        f"## 2. Enqueue -> start latency, idle worker ({o['latency_samples']:,} jobs one at a "
        "time, milliseconds, lower is better)",
        "",
        _row(
            [
                "percentile",
                "notify, worker in another process",
                "notify, worker in this process",
                f"no notify, poll_interval {POLL_INTERVAL} s, another process",
                "the create_job call (notify, other process)",
            ]
        ),
        _row(["---", "---:", "---:", "---:", "---:"]),
    ]
    for stat in ("p50", "p99", "max"):
        cells = [
            _spread(_ms(lat[key][stat]), ",.2f")
            for key in ("notify_remote", "notify_local", "poll_remote", "notify_remote_create")
        ]
        lines.append(_row([stat, *cells]))

    claims: dict[int, dict[str, Figure]] = report["claims"]
    lines += [
        "",
        f"## 3. Claim time by backlog ({o['claims']:,} claims per batch, microseconds per "
        "claim, lower is better)",
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
    for backlog, figs in claims.items():
        lines.append(_row([f"{backlog:,}", *(_spread(figs[k], ",.0f") for k in keys)]))
    backlogs = list(claims)
    small = claims[backlogs[0]]
    for big in backlogs[1:]:
        ratios = (f"{_ratio(claims[big][k], small[k]):.2f}" for k in keys)
        lines.append(_row([f"ratio {big:,} / {backlogs[0]:,}", *ratios]))
    return "\n".join(lines)


def _fmt_load(load: Sequence[float] | None) -> str:
    return "n/a" if load is None else " / ".join(f"{x:.1f}" for x in load)


def _pct(fig: Figure) -> Figure:
    return Figure(tuple(v * 100 for v in fig.samples))


def _ms(fig: Figure) -> Figure:
    return Figure(tuple(v / 1000 for v in fig.samples))


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=_positive, help="jobs per throughput run (3000)")
    parser.add_argument("--repeat", type=_positive, help="repeats of each measurement (5)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument(
        "--dsn",
        default=DEFAULT_DSN,
        help="libpq connection string of the server "
        "(default: $JOBWORKER_TEST_POSTGRES, else the local test server)",
    )
    parser.add_argument(
        "--profile-drain",
        action="store_true",
        help="only profile a one-worker drain of --jobs jobs: round trips per job "
        "(libpq trace) and cProfile",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.jobs = args.jobs or (300 if quick else 3_000)
    args.repeat = args.repeat or (2 if quick else 5)
    args.reference_samples = 100 if quick else 500
    args.latency_samples = 50 if quick else 300
    args.claims = 100 if quick else 500
    args.backlogs = [1_000, 10_000] if quick else [1_000, 100_000]
    return args


def _nproc() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, where the system tells them."""
    if hasattr(os, "getloadavg"):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main()
    # SIGTERM ends the run as Ctrl-C does: through the finally clauses that
    # stop the worker processes and drop the schema.
    signal.signal(signal.SIGTERM, _terminate)
    db = Database(args.dsn)
    try:
        if args.profile_drain:
            profile_drain(db, args.jobs)
            return 0
        report: dict[str, Any] = {
            "machine": {
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "system": platform.system(),
                "machine": platform.machine(),
                "nproc": _nproc(),
                "psycopg": psycopg.__version__,
                "psycopg_impl": psycopg.pq.__impl__,
                "jobworker": jw.__version__,
            },
            "server": server_info(db),
            "options": {
                "jobs": args.jobs,
                "repeat": args.repeat,
                "reference_samples": args.reference_samples,
                "latency_samples": args.latency_samples,
                "claims": args.claims,
                "backlogs": args.backlogs,
                "watch_step": WATCH_STEP,
                "poll_interval": POLL_INTERVAL,
                "processes": PROCESSES,
                "threads_per_process": THREADS_PER_PROCESS,
            },
        }
        report["machine"]["loadavg_start"] = _loadavg()
        # Warm up imports, the pool, prepared statements and thread start-up; not measured.
        local_run(db, 100, 1)

        phases: list[tuple[str, Callable[[], Any]]] = [
            ("reference", lambda: measure_reference(db, args.reference_samples, args.repeat)),
            ("throughput", lambda: measure_throughput(db, args.jobs, args.repeat)),
            ("latency", lambda: measure_latency(db, args.latency_samples, args.repeat)),
            (
                "claims",
                lambda: {
                    backlog: measure_claims(db, backlog, args.claims, args.repeat)
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
        report["machine"]["loadavg_end"] = _loadavg()
    finally:
        db.drop()
    print(render(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_jsonable(report), f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
