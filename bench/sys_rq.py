"""RQ: jobs in the local Redis, run by ``SimpleWorker`` (no fork per job).

RQ has no thread worker: a worker runs one job at a time. "1 worker" is one
``SimpleWorker`` in burst mode in this process; "4 workers" are four
processes, each a ``SimpleWorker`` in burst mode, started and imported before
the clock starts (run as ``python bench/sys_rq.py --worker URL``, they say
``ready`` and wait for ``go`` on stdin). The idle worker of the latency
workload blocks in Redis ``BLPOP``.
"""

from __future__ import annotations

import logging
import os
import signal as signals
import subprocess
import sys
import threading
from typing import Any

from _common import (
    WAIT_TIMEOUT,
    StartSignal,
    drain_result,
    latency_loop,
    params,
    timed,
)
from _services import Services
from redis import Redis
from rq import Queue, SimpleWorker

QUEUE = "bench"
#: Set in this process for the latency workload: the job reports its start here.
SIGNAL: StartSignal | None = None


def rq_noop(a: int, b: str) -> None:
    """The job: do nothing (and report its start when the latency workload listens)."""
    if SIGNAL is not None:
        SIGNAL.started()


class _Worker(SimpleWorker):
    """A SimpleWorker that ends a latency sample once it is done with the job."""

    def execute_job(self, job: Any, queue: Queue) -> None:
        super().execute_job(job, queue)
        if SIGNAL is not None:
            SIGNAL.ended()


def _worker(conn: Redis) -> SimpleWorker:
    return _Worker([Queue(QUEUE, connection=conn)], connection=conn)


class RQ:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.conn = services.redis()
        self.queue = Queue(QUEUE, connection=self.conn)

    def _enqueue(self, n: int) -> None:
        for i in range(n):
            self.queue.enqueue(rq_noop, **params(i))

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        with timed() as enq:
            self._enqueue(n)
        if threads == 1:
            worker = _worker(self.conn)
            with timed() as drain:
                worker.work(burst=True, logging_level="WARNING")
        else:
            drain = self._drain_processes(threads)
        left = self.queue.count
        if left:
            raise RuntimeError(f"{left} jobs left in the queue")
        return drain_result(n, enq[0], drain[0])

    def _drain_processes(self, count: int) -> list[float]:
        procs = [
            subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", self.services.redis_url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("an RQ worker process did not start")
            with timed() as drain:
                for proc in procs:
                    assert proc.stdin is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                for proc in procs:
                    if proc.wait(WAIT_TIMEOUT) != 0:
                        raise RuntimeError("an RQ worker process failed")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return drain

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        # The worker installs signal handlers, so it runs in the main thread and
        # the producer in another; SIGTERM (RQ's warm shutdown) stops it at the end.
        global SIGNAL
        SIGNAL = signal = StartSignal()
        out: list[float] = []
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                out.extend(
                    latency_loop(
                        lambda i: self.queue.enqueue(rq_noop, **params(i)), signal, samples, budget
                    )
                )
            except BaseException as exc:  # broad: reported in the main thread below
                errors.append(exc)
            finally:
                os.kill(os.getpid(), signals.SIGTERM)

        producer = threading.Thread(target=produce, name="bench-producer")
        producer.start()
        _worker(self.conn).work(logging_level="WARNING")
        producer.join(WAIT_TIMEOUT)
        signals.signal(signals.SIGTERM, signals.SIG_DFL)
        if errors:
            raise errors[0]
        return {"samples_us": out}

    def memory(self, n: int) -> dict[str, Any]:
        before = self.services.redis_size()
        chunk = 1_000
        for start in range(0, n, chunk):
            with self.conn.pipeline() as pipe:
                self.queue.enqueue_many(
                    [
                        Queue.prepare_data(rq_noop, kwargs=params(i))
                        for i in range(start, min(n, start + chunk))
                    ],
                    pipeline=pipe,
                )
                pipe.execute()
        after = self.services.redis_size()
        return {"bytes_per_job": (after - before) / n, "method": "Redis MEMORY USAGE", "jobs": n}


def worker_main(redis_url: str) -> int:
    logging.getLogger("rq").setLevel(logging.WARNING)
    conn = Redis.from_url(redis_url)
    worker = _worker(conn)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    worker.work(burst=True, logging_level="WARNING")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    sys.exit("run by bench/run.py")
