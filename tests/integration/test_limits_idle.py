"""Idle workers held back by limits sleep: no more CPU than idle workers without limits.

Four worker threads idle for two seconds on a queue with no limits and no
jobs, then four on a queue whose jobs all wait (a rate window that is full
for a minute, a type at its concurrency limit held by a job that does not
end, a paused type). The process's CPU time over each spell is compared:
a poll that spun on the held-back jobs would cost far more than the idle one.
"""

from __future__ import annotations

import pathlib
import threading
import time
from typing import Any

import pytest

import jobworker as jw

IDLE = 2.0
WORKERS = 4


class Holder(jw.JobWorker):
    """Runs every job until *release* is set."""

    release = threading.Event()

    def get_worker_name(self) -> str:
        return "holder"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> None:
        self.release.wait(30)


def idle_cpu(queue: jw.JobQueue, started: int) -> tuple[float, int]:
    """CPU seconds of this process while WORKERS workers run IDLE seconds; and jobs started."""
    workers = [Holder(queue, poll_interval=0.5) for _ in range(WORKERS)]
    threads = [worker.start_in_thread() for worker in workers]
    try:
        # Let the workers take what they may before the spell is measured.
        deadline = time.monotonic() + 10
        while len(queue.list_jobs(status="running")) < started:
            assert time.monotonic() < deadline, "the workers did not start the jobs they may"
            threading.Event().wait(0.01)
        before = time.process_time()
        threading.Event().wait(IDLE)
        cpu = time.process_time() - before
        running = len(queue.list_jobs(status="running"))
    finally:
        Holder.release.set()
        for worker in workers:
            worker.stop(timeout=30)
        for thread in threads:
            thread.join(30)
        Holder.release.clear()
    return cpu, running


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_workers_held_back_by_limits_use_no_more_cpu_than_idle_ones(
    backend: str, tmp_path: pathlib.Path
) -> None:
    def open_queue(name: str, **options: Any) -> jw.JobQueue:
        if backend == "memory":
            return jw.MemoryQueue(**options)
        return jw.SQLiteQueue(tmp_path / f"{name}.sqlite3", **options)

    plain = open_queue("plain")
    try:
        baseline, _ = idle_cpu(plain, 0)
    finally:
        plain.close()

    registry = jw.JobTypeRegistry()
    registry.set_limits("api", rate=1, period=60.0)
    registry.set_limits("export", concurrency=1)
    limited = open_queue("limited", registry=registry)
    try:
        for n in range(10):
            limited.create_job(jw.new_job("api", {"n": n}))
            limited.create_job(jw.new_job("export", {"n": n}))
            limited.create_job(jw.new_job("paused", {"n": n}))
        limited.pause_type("paused")
        # One api job (the rate's one start) and one export (the limit) run; the rest wait.
        held, running = idle_cpu(limited, 2)
    finally:
        limited.close()
    print(f"{backend}: idle {baseline:.3f} s CPU, held back by limits {held:.3f} s CPU")
    assert running == 2
    assert held <= baseline * 1.5 + 0.05, (held, baseline)
