"""jobworker: MemoryQueue, SQLiteQueue and PostgresQueue, drained by JobWorker threads.

The ``drain2p`` workload drains a SQLite or PostgreSQL queue with worker
processes instead: each started by the harness (multiprocessing, ``spawn``)
with the system object, from which it opens the same queue, and one
:class:`NoopWorker` thread. They count completions into one
:class:`~_common.ProcessDone`, which the parent waits on.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from _common import (
    LATENCY_GAP,
    WAIT_TIMEOUT,
    WARM_UP,
    Done,
    ProcessDone,
    StartSignal,
    drain_result,
    files_size,
    latency_loop,
    params,
    time_claims,
    timed,
    traced_bytes,
    warm_up,
)
from _services import Services
from _systems import POSTGRES_POLL_INTERVAL

import jobworker as jw

JOB_TYPE = "noop"
TYPES = frozenset({JOB_TYPE})


class NoopWorker(jw.JobWorker):
    """Take ``noop`` jobs through the type index, do nothing, count completions."""

    def __init__(
        self,
        queue: jw.JobQueue,
        name: str,
        *,
        done: Done | None = None,
        signal: StartSignal | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(queue, job_types=[JOB_TYPE], poll_interval=poll_interval)
        self._name = name
        self._done = done
        self._signal = signal

    def get_worker_name(self) -> str:
        return self._name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == JOB_TYPE

    def execute_job(self, job: jw.AnyJob) -> None:
        if self._signal is not None:
            self._signal.started()

    def on_job_complete(self, job: jw.AnyJob) -> None:
        if self._done is not None:
            self._done.add()
        if self._signal is not None:
            self._signal.ended()


def _stop_all(workers: list[NoopWorker]) -> None:
    for worker in workers:
        if not worker.stop(timeout=60.0):
            raise RuntimeError(f"{worker!r} did not stop")


def _always(job: jw.PendingJob[Any]) -> bool:
    return True


def _claim(queue: jw.JobQueue) -> object:
    """Claim as a JobWorker with ``job_types`` does: the types, then the predicate."""
    return queue.poll_next_pending_job(types=TYPES, predicate=_always, worker="bench", timeout=0)


def _until(wait: Callable[..., bool], procs: list[Any], what: str) -> None:
    """Return once ``wait(timeout=...)`` says yes; fail if a process exits first or time runs out.

    *wait* is an Event's or a Semaphore's own wait: it returns the moment
    that happens. The timeout only bounds each wait, so that a worker process
    that died is noticed within a second instead of after ``WAIT_TIMEOUT``.
    """
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not wait(timeout=1.0):
        ended = [p.pid for p in procs if p.exitcode is not None]
        if ended:
            raise RuntimeError(f"worker process {ended} ended before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} in {WAIT_TIMEOUT:.0f} s")


def _worker_process(
    system: _JobworkerSystem, done: ProcessDone, ready: Any, go: Any, stop: Any
) -> None:
    """One worker process of ``drain2p``: open the parent's queue, drain it until told to stop."""
    queue = system.open(first=False)
    try:
        queue.get_stats()  # opens the queue's first connection before the clock starts
        worker = NoopWorker(
            queue, f"bench-{os.getpid()}", done=done, poll_interval=system.poll_interval
        )
        ready.release()
        if not go.wait(WAIT_TIMEOUT):
            raise RuntimeError("no start signal from the parent")
        worker.start_in_thread()
        try:
            stop.wait(WAIT_TIMEOUT)
        finally:
            _stop_all([worker])
    finally:
        queue.close()


class _JobworkerSystem:
    """What the three queues share; a subclass says how to open one and how to fill it fast."""

    #: The workers' ``poll_interval`` (JobWorker's default).
    poll_interval = 1.0
    #: The gap between latency samples (see ``latency_loop``).
    latency_gap = LATENCY_GAP

    def __init__(self, services: Services) -> None:
        self.services = services

    def open(self, *, first: bool = True) -> jw.JobQueue:
        raise NotImplementedError

    def _drained(self, n: int, run: Callable[[jw.JobQueue, int], float]) -> dict[str, Any]:
        """Enqueue *n* jobs, timed; ``run(queue, n)`` drains them and returns its seconds."""
        queue = self.open()
        try:
            with timed() as enq:
                for i in range(n):
                    queue.create_job(jw.new_job(JOB_TYPE, params(i)))
            seconds = run(queue, n)
            stats = queue.get_stats()
            if stats["complete"] != n:
                raise RuntimeError(f"expected {n} complete jobs, got {stats}")
        finally:
            queue.close()
        return drain_result(n, enq[0], seconds)

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        """Drain *n* jobs with *threads* worker threads in this process."""

        def run(queue: jw.JobQueue, n: int) -> float:
            done = Done(n)
            workers = [
                NoopWorker(queue, f"bench-{k}", done=done, poll_interval=self.poll_interval)
                for k in range(threads)
            ]
            try:
                with timed() as drain:
                    for worker in workers:
                        worker.start_in_thread()
                    done.wait()
            finally:
                _stop_all(workers)
            return drain[0]

        return self._drained(n, run)

    def drain_processes(self, n: int, processes: int) -> dict[str, Any]:
        """Drain *n* jobs with *processes* worker processes of one worker thread each.

        The processes start, import and connect before the clock starts; the
        clock runs from the start signal until the last job's
        ``on_job_complete``, in whichever process, reaches the shared count.
        Then they are told to stop and joined; any still alive is killed by its PID.
        """

        def run(queue: jw.JobQueue, n: int) -> float:
            ctx = multiprocessing.get_context("spawn")
            done = ProcessDone(n, ctx)
            ready, go, stop = ctx.Semaphore(0), ctx.Event(), ctx.Event()
            procs = [
                ctx.Process(
                    target=_worker_process,
                    args=(self, done, ready, go, stop),
                    name=f"bench-worker-{k}",
                )
                for k in range(processes)
            ]
            try:
                for proc in procs:
                    proc.start()
                for _ in procs:
                    _until(ready.acquire, procs, "a worker process was ready")
                with timed() as drain:
                    go.set()
                    _until(done.event.wait, procs, "the last job")
                stop.set()
                for proc in procs:
                    proc.join(WAIT_TIMEOUT)
                    if proc.exitcode != 0:
                        raise RuntimeError(f"worker process {proc.pid} exited with {proc.exitcode}")
            finally:
                stop.set()
                for proc in procs:
                    if proc.pid is not None and proc.exitcode is None:
                        proc.kill()
                        proc.join()
            if done.count != n:
                raise RuntimeError(f"the worker processes completed {done.count} jobs, not {n}")
            return drain[0]

        return self._drained(n, run)

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        producer = self.open()
        consumer = self.consumer_queue(producer)
        signal = StartSignal()
        worker = NoopWorker(
            consumer, "bench-latency", signal=signal, poll_interval=self.poll_interval
        )
        worker.start_in_thread()
        try:
            out = latency_loop(
                lambda i: producer.create_job(jw.new_job(JOB_TYPE, params(i))),
                signal,
                samples,
                budget,
                self.latency_gap,
            )
        finally:
            _stop_all([worker])
            if consumer is not producer:
                consumer.close()
            producer.close()
        return {"samples_us": out}

    def consumer_queue(self, producer: jw.JobQueue) -> jw.JobQueue:
        """Return the queue the idle worker polls: the producer's own, unless a subclass says."""
        return producer

    def fill(self, queue: jw.JobQueue, n: int) -> None:
        for i in range(n):
            queue.create_job(jw.new_job(JOB_TYPE, params(i)))

    def claims(self, backlogs: list[int], count: int) -> dict[str, Any]:
        out: dict[str, dict[str, float]] = {}
        for backlog in warm_up(backlogs):
            queue = self.open()
            try:
                self.fill(queue, backlog + count)
                out[str(backlog)] = time_claims(partial(_claim, queue), count)
            finally:
                queue.close()
                self.reset()
        out.pop(WARM_UP)
        return {
            "us_per_claim": {k: v["median"] for k, v in out.items()},
            "us_per_claim_mean": {k: v["mean"] for k, v in out.items()},
        }

    def reset(self) -> None:
        """Forget the stored jobs before the next backlog (a fresh file or tables)."""


class Memory(_JobworkerSystem):
    def open(self, *, first: bool = True) -> jw.JobQueue:
        return jw.MemoryQueue()

    def memory(self, n: int) -> dict[str, Any]:
        def fill() -> object:
            queue = jw.MemoryQueue()
            self.fill(queue, n)
            return queue

        return {"bytes_per_job": traced_bytes(fill) / n, "method": "tracemalloc", "jobs": n}


class SQLite(_JobworkerSystem):
    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._count = 0
        self.path = ""
        self.reset()

    def reset(self) -> None:
        self._count += 1
        self.path = self.services.path(f"jobworker-{self._count}.sqlite3")

    def open(self, *, first: bool = True) -> jw.JobQueue:
        return jw.SQLiteQueue(self.path)

    def fill(self, queue: jw.JobQueue, n: int) -> None:
        # One transaction through create_job(connection=): the rows create_job
        # stores, without a commit (and a WAL frame) per job.
        assert isinstance(queue, jw.SQLiteQueue)
        conn = sqlite3.connect(self.path)
        try:
            with conn:
                for i in range(n):
                    queue.create_job(jw.new_job(JOB_TYPE, params(i)), connection=conn)
        finally:
            conn.close()

    def _size(self) -> int:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return files_size(self.path, self.path + "-wal")

    def memory(self, n: int) -> dict[str, Any]:
        queue = self.open()
        try:
            before = self._size()
            self.fill(queue, n)
            after = self._size()
        finally:
            queue.close()
        return {"bytes_per_job": (after - before) / n, "method": "file size", "jobs": n}


class Postgres(_JobworkerSystem):
    #: Notifications wake idle workers (PostgresQueue's default).
    notify = True

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._count = 0
        self.prefix = ""
        self.reset()

    def reset(self) -> None:
        self._count += 1
        self.prefix = f"r{self._count}_"

    def open(self, *, first: bool = True) -> jw.JobQueue:
        return jw.PostgresQueue(
            self.services.dsn,
            schema=self.services.pg_schema(),
            prefix=self.prefix,
            notify=self.notify,
            migrate=first,
        )

    def consumer_queue(self, producer: jw.JobQueue) -> jw.JobQueue:
        # A second queue object on the same tables: the idle worker can only
        # be woken by the NOTIFY its queue's listener relays, as in another process.
        return self.open(first=False)

    def fill(self, queue: jw.JobQueue, n: int) -> None:
        import psycopg

        # One transaction, pipelined (psycopg's pipeline mode): the rows
        # create_job stores, without a round trip and a commit per job.
        with psycopg.connect(self.services.dsn) as conn, conn.transaction(), conn.pipeline():
            for i in range(n):
                queue.create_job(jw.new_job(JOB_TYPE, params(i)), connection=conn)

    def memory(self, n: int) -> dict[str, Any]:
        queue = self.open()
        try:
            before = self.services.pg_size()
            self.fill(queue, n)
            after = self.services.pg_size()
        finally:
            queue.close()
        return {"bytes_per_job": (after - before) / n, "method": "table size", "jobs": n}


class PostgresPoll(Postgres):
    """PostgresQueue with notifications off: an idle worker finds a job at its next poll.

    Jobs arrive at a random point of the poll cycle: the gap between latency
    samples spans one poll interval (plus the usual 1 ms).
    """

    notify = False
    poll_interval = POSTGRES_POLL_INTERVAL
    latency_gap = (LATENCY_GAP[0], LATENCY_GAP[0] + POSTGRES_POLL_INTERVAL)


# -- profile --------------------------------------------------------------------------------


def profile_drain(services: Services, storage: str, n: int) -> str:
    """Return pyinstrument's text profile of a one-worker drain of *n* no-op jobs.

    pyinstrument samples the thread that starts it, so the worker loop runs
    in this thread (``worker.start()``), stopped from its completion hook at
    the last job; its heartbeat thread runs as in production. Only the drain
    is profiled.
    """
    from pyinstrument import Profiler

    system = {"memory": Memory, "sqlite": SQLite, "postgres": Postgres}[storage](services)
    queue = system.open()
    try:
        system.fill(queue, n)
        done = Done(n)

        class Stopping(NoopWorker):
            def on_job_complete(self, job: jw.AnyJob) -> None:
                super().on_job_complete(job)
                if done.event.is_set():
                    self.stop(timeout=0)

        worker = Stopping(queue, "bench-profile", done=done)
        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            worker.start()
        finally:
            profiler.stop()
            _stop_all([worker])
    finally:
        queue.close()
    return str(profiler.output_text(unicode=True, color=False, show_all=False))
