"""jobworker: MemoryQueue, SQLiteQueue and PostgresQueue, drained by JobWorker threads."""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

from _common import (
    WARM_UP,
    Done,
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
    ) -> None:
        super().__init__(queue, job_types=[JOB_TYPE])
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


class _JobworkerSystem:
    """What the three queues share; a subclass says how to open one and how to fill it fast."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def open(self, *, first: bool = True) -> jw.JobQueue:
        raise NotImplementedError

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        queue = self.open()
        try:
            with timed() as enq:
                for i in range(n):
                    queue.create_job(jw.new_job(JOB_TYPE, params(i)))
            done = Done(n)
            workers = [NoopWorker(queue, f"bench-{k}", done=done) for k in range(threads)]
            try:
                with timed() as drain:
                    for worker in workers:
                        worker.start_in_thread()
                    done.wait()
            finally:
                _stop_all(workers)
            stats = queue.get_stats()
            if stats["complete"] != n:
                raise RuntimeError(f"expected {n} complete jobs, got {stats}")
        finally:
            queue.close()
        return drain_result(n, enq[0], drain[0])

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        producer = self.open()
        consumer = self.consumer_queue(producer)
        signal = StartSignal()
        worker = NoopWorker(consumer, "bench-latency", signal=signal)
        worker.start_in_thread()
        try:
            out = latency_loop(
                lambda i: producer.create_job(jw.new_job(JOB_TYPE, params(i))),
                signal,
                samples,
                budget,
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
