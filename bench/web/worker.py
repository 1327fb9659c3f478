"""A worker process of the load benchmark: THREADS workers on the site's queue, ~5 ms jobs.

Runs until its standard input closes, then prints one JSON line: the jobs it
ran and the times its outcome writes took (``update_job`` of a complete job),
measured around the call.
"""

import json
import os
import sys
import threading
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
django.setup()

import jobworker as jw  # noqa: E402
from jobworker.contrib.django import get_queue  # noqa: E402

writes: list[float] = []
writes_lock = threading.Lock()


class BenchWorker(jw.JobWorker):
    def get_worker_name(self) -> str:
        return "bench"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> None:
        time.sleep(0.005)  # the job's own work: about 5 ms of I/O


def main() -> None:
    threads = int(sys.argv[1])
    queue = get_queue()
    update = queue.update_job

    def timed(job: jw.AnyJob, *args: Any, **kwargs: Any) -> jw.AnyJob:
        began = time.perf_counter()
        try:
            return update(job, *args, **kwargs)
        finally:
            if job.status == "complete":
                took = time.perf_counter() - began
                with writes_lock:
                    writes.append(took)

    queue.update_job = timed  # type: ignore[method-assign]
    workers = [BenchWorker(queue, job_types=["bench"]) for _ in range(threads)]
    for worker in workers:
        worker.start_in_thread()
    print("ready", flush=True)
    sys.stdin.read()
    for worker in workers:
        worker.request_stop()
    for worker in workers:
        worker.stop(timeout=60)
    ran = sum(worker.get_metrics().processed for worker in workers)
    print(json.dumps({"ran": ran, "writes": writes}), flush=True)


if __name__ == "__main__":
    main()
