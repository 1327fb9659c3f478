"""Huey: MemoryHuey, SqliteHuey and PostgresHuey, drained by its Consumer with thread workers.

Huey's Consumer polls storages that cannot block (memory, SQLite) with a
delay that starts at ``initial_delay`` (0.1 s by default) and grows to
``max_delay`` (10 s). The bench sets both to 1 ms: that favours Huey's
latency (at the cost of CPU while idle) and keeps a drain from ever waiting
on a backed-off poll. PostgresHuey blocks on LISTEN/NOTIFY, so the delay does
not matter there. SqliteHuey gets ``synchronous = NORMAL``, as jobworker's
SQLiteQueue (Huey's default leaves SQLite's FULL, which syncs every commit).
Huey deletes a task's row when it dequeues it: it does not keep running or
finished jobs, which makes its storage work lighter than a queue with states.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from _common import (
    Done,
    StartSignal,
    drain_result,
    files_size,
    latency_loop,
    params,
    timed,
    traced_bytes,
)
from _services import Services
from huey import MemoryHuey, PostgresHuey, SqliteHuey
from huey.consumer import Consumer
from huey.signals import SIGNAL_COMPLETE
from huey.storage import SqliteStorage

POLL = 0.001


class _NormalSqliteStorage(SqliteStorage):
    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn


class _NormalSqliteHuey(SqliteHuey):
    storage_class = _NormalSqliteStorage


class _HueySystem:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Huey logs every task at INFO when a handler is configured; none is.
        logging.getLogger("huey").setLevel(logging.WARNING)
        self.huey = self.make()
        self.done: Done | None = None
        self.signal: StartSignal | None = None

        @self.huey.task()
        def noop(a: int, b: str) -> None:
            if self.signal is not None:
                self.signal.started()
            if self.done is not None:
                self.done.add()

        # A latency sample ends once Huey has finished with the task (results,
        # signals): the next job must find the worker idle.
        @self.huey.signal(SIGNAL_COMPLETE)
        def completed(signal: str, task: Any) -> None:
            if self.signal is not None:
                self.signal.ended()

        self.task = noop

    def make(self) -> Any:
        raise NotImplementedError

    def consumer(self, workers: int) -> Consumer:
        return Consumer(
            self.huey,
            workers=workers,
            worker_type="thread",
            periodic=False,
            initial_delay=POLL,
            max_delay=POLL,
            check_worker_health=False,
        )

    def _stop(self, consumer: Consumer) -> None:
        consumer.stop(graceful=True)

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        with timed() as enq:
            for i in range(n):
                self.task(**params(i))
        self.done = Done(n)
        consumer = self.consumer(threads)
        try:
            with timed() as drain:
                consumer.start()
                self.done.wait()
        finally:
            self._stop(consumer)
        return drain_result(n, enq[0], drain[0])

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        self.signal = StartSignal()
        consumer = self.consumer(1)
        consumer.start()
        try:
            out = latency_loop(lambda i: self.task(**params(i)), self.signal, samples, budget)
        finally:
            self._stop(consumer)
        return {"samples_us": out}

    def fill(self, n: int) -> None:
        for i in range(n):
            self.task(**params(i))

    def close(self) -> None:
        self.huey.storage.close()


class Memory(_HueySystem):
    def make(self) -> Any:
        return MemoryHuey("bench")

    def memory(self, n: int) -> dict[str, Any]:
        def fill() -> object:
            self.fill(n)  # the Result handles are dropped, as a fire-and-forget caller would
            return None

        return {"bytes_per_job": traced_bytes(fill) / n, "method": "tracemalloc", "jobs": n}


class SQLite(_HueySystem):
    def make(self) -> Any:
        self.path = self.services.path("huey.sqlite3")
        return _NormalSqliteHuey("bench", filename=self.path)

    def _size(self) -> int:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return files_size(self.path, self.path + "-wal")

    def memory(self, n: int) -> dict[str, Any]:
        self.huey.storage.queue_size()  # creates the tables
        before = self._size()
        self.fill(n)
        after = self._size()
        return {"bytes_per_job": (after - before) / n, "method": "file size", "jobs": n}


class Postgres(_HueySystem):
    def make(self) -> Any:
        return PostgresHuey("bench", dsn=self.services.pg_dsn())

    def memory(self, n: int) -> dict[str, Any]:
        self.huey.storage.queue_size()  # creates the tables
        before = self.services.pg_size()
        self.fill(n)
        after = self.services.pg_size()
        return {"bytes_per_job": (after - before) / n, "method": "table size", "jobs": n}
