"""A worker process for the partition tests, run inside a network namespace.

Run as ``[sys.executable, this_file, CONNINFO, SCHEMA, LEASE, EVENTS]``. It
runs two workers on a :class:`jobworker.PostgresQueue` until its stdin
closes, then stops them and exits 0 if they stopped in time.

Jobs of type ``part`` complete at once with ``{"by": "cut"}``; a job of type
``hold`` first works for its ``seconds`` param. Each line of EVENTS (JSON,
appended) is one of:

- ``{"t": time, "log": level, "logger": name, "msg": text}``: a log record
  of jobworker at DEBUG and above;
- ``{"t": end, "call": name, "took": seconds}``: a database call of the queue
  (a statement, a transaction, a clock sample) that took over 0.2 s;
- ``{"t": time, "ran": job_id}``: a job's work began.

``ready`` is printed on stdout once the workers run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jobworker as jw
from jobworker.queues.postgres import DatabaseClock

T = TypeVar("T")

_lock = threading.Lock()


def emit(fd: int, record: dict[str, Any]) -> None:
    with _lock:
        os.write(fd, (json.dumps(record) + "\n").encode())


class EventHandler(logging.Handler):
    def __init__(self, fd: int) -> None:
        super().__init__(logging.DEBUG)
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        event = {"t": record.created, "log": record.levelname, "logger": record.name, "msg": text}
        emit(self.fd, event)


class TimedQueue(jw.PostgresQueue):
    """Records every database call that takes long."""

    events_fd = -1

    def _timed(self, name: str, call: Callable[[], T]) -> T:
        began = time.monotonic()
        try:
            return call()
        finally:
            took = time.monotonic() - began
            if took > 0.2:
                emit(self.events_fd, {"t": time.time(), "call": name, "took": took})

    def _write(self, body: Callable[[Any], T]) -> T:
        return self._timed("write", lambda: super(TimedQueue, self)._write(body))

    def _autocommit(self, body: Callable[[Any], T], what: str = "write") -> T:
        return self._timed(what, lambda: super(TimedQueue, self)._autocommit(body, what))


class TimedClock:
    def __init__(self, inner: DatabaseClock, fd: int) -> None:
        self.inner = inner
        self.fd = fd

    def now(self) -> dt.datetime:
        began = time.monotonic()
        try:
            return self.inner.now()
        finally:
            took = time.monotonic() - began
            if took > 0.2:
                emit(self.fd, {"t": time.time(), "call": "clock", "took": took})


class PartWorker(jw.JobWorker):
    def __init__(self, queue: jw.JobQueue, fd: int, number: int, **kw: Any) -> None:
        super().__init__(queue, **kw)
        self.fd = fd
        self.name = f"cut-{number}"

    def get_worker_name(self) -> str:
        return self.name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type in ("part", "hold")

    def execute_job(self, job: jw.AnyJob) -> Any:
        emit(self.fd, {"t": time.time(), "ran": job.metadata.id})
        if job.metadata.type == "hold":
            threading.Event().wait(float(job.params["seconds"]))  # the job's own work
        return {"by": "cut"}


def main() -> int:
    conninfo, schema, lease, events = sys.argv[1:5]
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    handler = EventHandler(fd)
    for name in ("jobworker", "psycopg.pool"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    TimedQueue.events_fd = fd
    queue = TimedQueue(conninfo, schema=schema, lease_duration=float(lease), pool_size=4)
    assert isinstance(queue.clock, DatabaseClock)
    queue.clock = TimedClock(queue.clock, fd)
    # A short error_backoff: the loop looks again soon after the heal.
    workers = [PartWorker(queue, fd, n, poll_interval=1.0, error_backoff=0.5) for n in range(2)]
    for worker in workers:
        worker.start_in_thread()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    stopped = all([worker.stop(timeout=30.0) for worker in workers])
    queue.close()
    return 0 if stopped else 1


if __name__ == "__main__":
    sys.exit(main())
