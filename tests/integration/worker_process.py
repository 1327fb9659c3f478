"""A worker process on a shared SQLite or PostgreSQL queue, for the integration tests.

Run as ``[sys.executable, this_file, MODE, OUTPUT, QUEUE, options...]``, where
QUEUE is ``--sqlite DB`` (a database file) or ``--postgres CONNINFO`` (with
``--schema``, ``--pool-size`` and ``--no-notify``; put ``application_name``
in CONNINFO to find the process's connections in ``pg_stat_activity``):

``work LEDGER QUEUE [--threads N --lease S --heartbeat S --poll S]``
    Run N ledger workers under ``jobworker.Runner(handle_signals=True)``
    until SIGTERM or SIGINT, then print one JSON line of the workers' summed
    metrics and exit 0 if every worker stopped in time. Worker names are
    ``w-PID-N``, so a claim in the database tells which process holds the job.

    Each execution appends two lines to LEDGER (``O_APPEND``, one write per
    line, so lines never interleave), ``S job_id token pid time`` before the
    job's work and ``E job_id token pid time`` after it (``time.time()``), so
    an execution cut short by SIGKILL is on record too. A job sleeps for its
    ``ms`` param, if any: the job's own work.

``claim OUT QUEUE [--threads N]``
    Once a line ``go`` arrives on stdin, N threads claim with
    ``poll_next_pending_job(timeout=0)`` in a tight loop, completing each job
    at once, until none is left; every claim goes to OUT as JSON.

Both print ``ready`` on stdout once they can be signalled or started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from typing import Any

import jobworker as jw
from jobworker.model import complete


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


def open_queue(args: argparse.Namespace, **options: Any) -> jw.JobQueue:
    """Open the queue the command line names, with the JobQueue *options*."""
    if args.sqlite is not None:
        if args.busy_timeout is not None:
            options["busy_timeout"] = args.busy_timeout
        return jw.SQLiteQueue(args.sqlite, **options)
    return jw.PostgresQueue(
        args.postgres,
        schema=args.schema,
        pool_size=args.pool_size,
        notify=args.notify,
        **options,
    )


def work(args: argparse.Namespace) -> int:
    queue = open_queue(args, lease_duration=args.lease, retry_policy=jw.RetryPolicy.immediate())
    fd = os.open(args.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
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


def claim(args: argparse.Namespace) -> int:
    queue = open_queue(args)
    claims: list[dict[str, Any]] = []  # list.append is atomic
    errors: list[str] = []

    def run(number: int) -> None:
        name = f"claim-{os.getpid()}-{number}"
        # Half the threads claim through the predicate path, half through the index.
        predicate = (lambda job: True) if number % 2 else None
        try:
            while job := queue.poll_next_pending_job(worker=name, predicate=predicate):
                claims.append({"id": job.metadata.id, "token": job.claim.token, "worker": name})
                done = complete(job, name, now=queue.clock.now())
                queue.update_job(done, "running", claim=job.claim)
        except BaseException as exc:  # broad: report any failure to the test
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(args.threads)]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.close()
    with open(args.output, "w") as out:
        json.dump({"pid": os.getpid(), "claims": claims, "errors": errors}, out)
    return 0 if not errors else 1


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {os.getpid()} %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["work", "claim"])
    parser.add_argument("output", help="the ledger (work) or the report (claim)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", metavar="DB")
    where.add_argument("--postgres", metavar="CONNINFO")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--busy-timeout", type=float, default=None, help="SQLite only")
    parser.add_argument("--schema", default="public", help="PostgreSQL only")
    parser.add_argument("--pool-size", type=int, default=4, help="PostgreSQL only")
    parser.add_argument("--no-notify", dest="notify", action="store_false", help="PostgreSQL only")
    args = parser.parse_args()
    return work(args) if args.mode == "work" else claim(args)


if __name__ == "__main__":
    sys.exit(main())
