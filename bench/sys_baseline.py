"""The baselines: a bare ``queue.Queue`` with threads, ``ThreadPoolExecutor``, a minimal WAL queue.

They are floors, not competitors: no ids of their own, timestamps, states,
retries, leases or recovery. ``queue.Queue`` with worker threads is the limit
for a threaded in-process queue; the minimal WAL queue is the least a durable
SQLite queue does (one transaction per enqueue, claim and ack).
"""

from __future__ import annotations

import json
import queue as stdqueue
import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import (
    WAIT_TIMEOUT,
    WARM_UP,
    Done,
    StartSignal,
    drain_result,
    files_size,
    latency_loop,
    noop,
    params,
    time_claims,
    timed,
    traced_bytes,
    warm_up,
)
from _services import Services

# -- queue.Queue ----------------------------------------------------------------------------


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{thread.name} did not stop")


class StdQueue:
    """``queue.Queue`` of ``(i, params)`` tuples, drained by plain threads calling the no-op."""

    def __init__(self, services: Services) -> None:
        self.q: stdqueue.Queue[tuple[int, dict[str, Any]] | None] = stdqueue.Queue()

    def _consume(self, done: Done | None, signal: StartSignal | None) -> None:
        q = self.q
        while True:
            item = q.get()
            if item is None:
                return
            if signal is not None:
                signal.started()
            noop(**item[1])
            if signal is not None:
                signal.ended()
            if done is not None:
                done.add()

    def _threads(self, k: int, done: Done | None, signal: StartSignal | None) -> list[Any]:
        threads = [
            threading.Thread(target=self._consume, args=(done, signal), name=f"bench-{i}")
            for i in range(k)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _stop(self, threads: list[threading.Thread]) -> None:
        for _ in threads:
            self.q.put(None)
        _join_all(threads)

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        with timed() as enq:
            for i in range(n):
                self.q.put((i, params(i)))
        done = Done(n)
        with timed() as drain:
            workers = self._threads(threads, done, None)
            done.wait()
        self._stop(workers)
        return drain_result(n, enq[0], drain[0])

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        signal = StartSignal()
        workers = self._threads(1, None, signal)
        try:
            out = latency_loop(lambda i: self.q.put((i, params(i))), signal, samples, budget)
        finally:
            self._stop(workers)
        return {"samples_us": out}

    def memory(self, n: int) -> dict[str, Any]:
        def fill() -> object:
            q: stdqueue.Queue[tuple[str, dict[str, Any]]] = stdqueue.Queue()
            for i in range(n):
                # An id of the same size as jobworker's (32 hex characters).
                q.put((uuid.uuid4().hex, params(i)))
            return q

        return {"bytes_per_job": traced_bytes(fill) / n, "method": "tracemalloc", "jobs": n}

    def claims(self, backlogs: list[int], count: int) -> dict[str, Any]:
        out: dict[str, dict[str, float]] = {}
        for backlog in warm_up(backlogs):
            q: stdqueue.Queue[tuple[int, dict[str, Any]]] = stdqueue.Queue()
            for i in range(backlog + count):
                q.put((i, params(i)))
            out[str(backlog)] = time_claims(q.get_nowait, count)
        out.pop(WARM_UP)
        return {
            "us_per_claim": {k: v["median"] for k, v in out.items()},
            "us_per_claim_mean": {k: v["mean"] for k, v in out.items()},
        }


# -- ThreadPoolExecutor ---------------------------------------------------------------------


class Executor:
    """``concurrent.futures.ThreadPoolExecutor``: ``submit`` is the enqueue.

    An executor starts running work as it is submitted, so to time the
    enqueue and the drain apart, each of its threads first takes a gate task
    that waits on an Event; the no-op jobs are submitted behind the gates,
    and the drain starts when the gates open.
    """

    def __init__(self, services: Services) -> None:
        pass

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        gate = threading.Event()
        done = Done(n)

        def job(p: dict[str, Any]) -> None:
            noop(**p)
            done.add()

        with ThreadPoolExecutor(threads, thread_name_prefix="bench") as pool:
            for _ in range(threads):
                pool.submit(gate.wait, WAIT_TIMEOUT)
            with timed() as enq:
                for i in range(n):
                    pool.submit(job, params(i))
            with timed() as drain:
                gate.set()
                done.wait()
        return drain_result(n, enq[0], drain[0])

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        signal = StartSignal()

        def job(p: dict[str, Any]) -> None:
            signal.started()
            noop(**p)
            signal.ended()

        with ThreadPoolExecutor(1, thread_name_prefix="bench") as pool:
            out = latency_loop(lambda i: pool.submit(job, params(i)), signal, samples, budget)
        return {"samples_us": out}

    def memory(self, n: int) -> dict[str, Any]:
        gate = threading.Event()
        pool = ThreadPoolExecutor(1, thread_name_prefix="bench")
        pool.submit(gate.wait, WAIT_TIMEOUT)

        def job(p: dict[str, Any]) -> None:
            noop(**p)

        def fill() -> object:
            # The futures are dropped, as a fire-and-forget caller would.
            for i in range(n):
                pool.submit(job, params(i))
            return None

        try:
            size = traced_bytes(fill)
        finally:
            gate.set()
            pool.shutdown(wait=True, cancel_futures=True)
        return {"bytes_per_job": size / n, "method": "tracemalloc", "jobs": n}


# -- the minimal WAL SQLite queue -----------------------------------------------------------

BUSY_TIMEOUT = 5.0
#: How long an idle consumer of the minimal queue waits before it polls again, in seconds.
MINI_POLL = 0.001


class MiniQueue:
    """The least a durable SQLite queue does: a row per job, a status, a JSON payload.

    WAL and ``synchronous = NORMAL`` (SQLiteQueue's default); one transaction
    per enqueue (an INSERT), per claim (``BEGIN IMMEDIATE``, the oldest
    pending row marked running, ``COMMIT``) and per ack (an UPDATE to done).
    A partial index on pending rows keeps the claim from scanning done ones.
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
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @staticmethod
    def enqueue(conn: sqlite3.Connection, payload: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO jobs (status, payload) VALUES ('pending', ?)", (json.dumps(payload),)
        )

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


class MiniWal:
    """The minimal WAL queue, consumed by plain threads, one connection each.

    An idle consumer polls every millisecond (``Event.wait(0.001)``, on an
    Event set at stop): the queue has no wake-ups, so its latency is its
    polling interval.
    """

    def __init__(self, services: Services) -> None:
        self.path = services.path("mini.sqlite3")
        self.mq = MiniQueue(self.path)
        self.stopping = threading.Event()

    def _consume(self, done: Done | None, signal: StartSignal | None) -> None:
        conn = self.mq.connect()
        try:
            while not self.stopping.is_set():
                row = self.mq.claim(conn)
                if row is None:
                    self.stopping.wait(MINI_POLL)
                    continue
                if signal is not None:
                    signal.started()
                noop(**json.loads(row[1]))
                self.mq.ack(conn, row[0])
                if signal is not None:
                    signal.ended()
                if done is not None:
                    done.add()
        finally:
            conn.close()

    def _run(self, k: int, done: Done | None, signal: StartSignal | None) -> list[Any]:
        threads = [
            threading.Thread(target=self._consume, args=(done, signal), name=f"bench-{i}")
            for i in range(k)
        ]
        for thread in threads:
            thread.start()
        return threads

    def _stop(self, threads: list[threading.Thread]) -> None:
        self.stopping.set()
        _join_all(threads)
        self.stopping.clear()

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        conn = self.mq.connect()
        with timed() as enq:
            for i in range(n):
                self.mq.enqueue(conn, params(i))
        done = Done(n)
        with timed() as drain:
            workers = self._run(threads, done, None)
            done.wait()
        self._stop(workers)
        conn.close()
        return drain_result(n, enq[0], drain[0])

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        conn = self.mq.connect()
        signal = StartSignal()
        workers = self._run(1, None, signal)
        try:
            out = latency_loop(lambda i: self.mq.enqueue(conn, params(i)), signal, samples, budget)
        finally:
            self._stop(workers)
            conn.close()
        return {"samples_us": out}

    def _fill(self, conn: sqlite3.Connection, n: int, start: int = 0) -> None:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO jobs (status, payload) VALUES ('pending', ?)",
            ((json.dumps(params(i)),) for i in range(start, start + n)),
        )
        conn.execute("COMMIT")

    def _size(self, conn: sqlite3.Connection) -> int:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return files_size(self.path, self.path + "-wal")

    def memory(self, n: int) -> dict[str, Any]:
        conn = self.mq.connect()
        before = self._size(conn)
        self._fill(conn, n)
        after = self._size(conn)
        conn.close()
        return {"bytes_per_job": (after - before) / n, "method": "file size", "jobs": n}

    def claims(self, backlogs: list[int], count: int) -> dict[str, Any]:
        out: dict[str, dict[str, float]] = {}
        for k, backlog in enumerate(warm_up(backlogs)):
            mq = MiniQueue(self.path + f".claims{k}")
            conn = mq.connect()
            self._fill(conn, backlog + count)
            out[str(backlog)] = time_claims(lambda c=conn, q=mq: q.claim(c), count)
            conn.close()
        out.pop(WARM_UP)
        return {
            "us_per_claim": {k: v["median"] for k, v in out.items()},
            "us_per_claim_mean": {k: v["mean"] for k, v in out.items()},
        }
