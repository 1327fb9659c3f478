"""A worker process on a PostgreSQL queue, for the integration tests.

Run as ``[sys.executable, this_file, CONNINFO, SCHEMA, LEDGER, options...]``.

Runs ``--threads`` ledger workers under ``jobworker.Runner(handle_signals=True)``
until SIGTERM or SIGINT, then prints one JSON line of the workers' summed
metrics and exits 0 if every worker stopped in time.

Each execution appends two lines to LEDGER (``O_APPEND``, one write per
line, so lines never interleave), ``S job_id token pid time`` before the
job's work and ``E job_id token pid time`` after it (``time.time()``), so an
execution cut short by SIGKILL is on record too. A job sleeps for its
``ms`` param, if any: the job's own work.

Prints ``ready`` on stdout once its signal handlers are installed. Worker
names are ``w-PID-N``, so a claim in the database tells which process holds
the job. Put ``application_name`` in CONNINFO to find the process's
connections in ``pg_stat_activity``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import jobworker as jw


class LedgerWorker(jw.JobWorker):
    """Records each execution in the ledger, around the job's few ms of work."""

    def __init__(self, queue: jw.JobQueue, ledger_fd: int, number: int, **kw: Any) -> None:
        super().__init__(queue, **kw)
        self.ledger_fd = ledger_fd
        self.name = f"w-{os.getpid()}-{number}"

    def get_worker_name(self) -> str:
        return self.name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "ledger"

    def _record(self, mark: str, job: jw.RunningJob[Any, Any]) -> None:
        line = f"{mark} {job.metadata.id} {job.claim.token} {os.getpid()} {time.time():.6f}\n"
        os.write(self.ledger_fd, line.encode())

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        self._record("S", job)
        ms = job.params.get("ms", 0)
        if ms:
            time.sleep(ms / 1000)  # the job's own work, not a wait for a thread
        self._record("E", job)
        return {"token": job.claim.token, "pid": os.getpid()}


class AnnouncingRunner(jw.Runner):
    """A Runner that says ``ready`` once its signal handlers are installed."""

    def start(self) -> None:
        super().start()  # run() installs the handlers before it calls start()
        print("ready", flush=True)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {os.getpid()} %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("conninfo")
    parser.add_argument("schema")
    parser.add_argument("ledger")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--no-notify", dest="notify", action="store_false")
    args = parser.parse_args()

    queue = jw.PostgresQueue(
        args.conninfo,
        schema=args.schema,
        pool_size=args.pool_size,
        notify=args.notify,
        lease_duration=args.lease,
        retry_policy=jw.RetryPolicy.immediate(),
    )
    fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    workers = [
        LedgerWorker(
            queue,
            fd,
            n,
            poll_interval=args.poll,
            error_backoff=0.05,
            heartbeat_interval=args.heartbeat,
            retry_policy=jw.RetryPolicy.immediate(),
        )
        for n in range(args.threads)
    ]
    stopped = AnnouncingRunner(workers, handle_signals=True, stop_timeout=10).run()
    queue.close()
    os.close(fd)
    metrics = [worker.get_metrics() for worker in workers]
    summary = {
        key: sum(getattr(m, key) for m in metrics)
        for key in ("processed", "errors", "lost", "loop_errors")
    }
    print(json.dumps({"pid": os.getpid(), **summary}), flush=True)
    return 0 if stopped else 1


if __name__ == "__main__":
    sys.exit(main())
