"""A worker process with limits declared, for the multi-process limit tests.

Run as ``[sys.executable, this_file, CONFIG]`` where CONFIG is JSON::

    {"sqlite": PATH} or {"postgres": DSN, "schema": S, "prefix": P},
    "threads": N, "lease": S, "poll": S, "limits": {type: {...}}

It opens the queue with those limits, starts N worker threads that take
every type (each job waits for its ``ms`` param, the job's own work), prints
``ready`` and runs until SIGTERM (or SIGKILL).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import jobworker as jw


class Sleeper(jw.JobWorker):
    def get_worker_name(self) -> str:
        return f"limited-{os.getpid()}"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> None:
        threading.Event().wait(job.params.get("ms", 0) / 1000)


def open_queue(config: dict[str, Any]) -> jw.JobQueue:
    registry = jw.JobTypeRegistry()
    for job_type, limits in config["limits"].items():
        registry.set_limits(job_type, **limits)
    options: dict[str, Any] = {"registry": registry, "lease_duration": config["lease"]}
    if "sqlite" in config:
        return jw.SQLiteQueue(config["sqlite"], **options)
    from jobworker.queues.postgres import PostgresQueue

    return PostgresQueue(
        config["postgres"], schema=config["schema"], prefix=config["prefix"], **options
    )


def main() -> None:
    config = json.loads(sys.argv[1])
    queue = open_queue(config)
    workers = [
        Sleeper(queue, poll_interval=config["poll"], error_backoff=0.05)
        for _ in range(config["threads"])
    ]
    runner = jw.Runner(workers, handle_signals=True)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    runner.run()
    queue.close()


if __name__ == "__main__":
    main()
