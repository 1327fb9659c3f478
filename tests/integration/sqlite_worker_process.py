"""A worker process on an SQLite database file, for the integration tests.

Run as ``[sys.executable, this_file, MODE, ...]``:

``work DB LEDGER --threads N --lease S --heartbeat S``
    Run N ledger workers under ``jobworker.Runner(handle_signals=True)`` until
    SIGTERM or SIGINT; exit 0 if every worker stopped in time. Each execution
    appends one line ``job_id token pid`` to LEDGER (``O_APPEND``, one write
    per line) before the job's work, so an execution cut short by SIGKILL is
    on record too.

``claim DB OUT --threads N``
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
    """Records each execution in the ledger, then does the job's few ms of work."""

    def __init__(self, queue: jw.JobQueue, ledger_fd: int, number: int, **kw: Any) -> None:
        super().__init__(queue, **kw)
        self.ledger_fd = ledger_fd
        self.name = f"crash-{os.getpid()}-{number}"

    def get_worker_name(self) -> str:
        return self.name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "crash"

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        token = job.claim.token
        # One write of one short line to an O_APPEND file: lines never interleave.
        os.write(self.ledger_fd, f"{job.metadata.id} {token} {os.getpid()}\n".encode())
        time.sleep(job.params["ms"] / 1000)  # the job's own work, not a wait for a thread
        return {"token": token, "pid": os.getpid()}


class AnnouncingRunner(jw.Runner):
    """A Runner that says ``ready`` once its signal handlers are installed."""

    def start(self) -> None:
        super().start()  # run() installs the handlers before it calls start()
        print("ready", flush=True)


def work(args: argparse.Namespace) -> int:
    queue = jw.SQLiteQueue(
        args.db, lease_duration=args.lease, retry_policy=jw.RetryPolicy.immediate()
    )
    fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    workers = [
        LedgerWorker(
            queue,
            fd,
            n,
            poll_interval=0.2,
            error_backoff=0.05,
            heartbeat_interval=args.heartbeat,
            retry_policy=jw.RetryPolicy.immediate(),
        )
        for n in range(args.threads)
    ]
    stopped = AnnouncingRunner(workers, handle_signals=True, stop_timeout=10).run()
    queue.close()
    os.close(fd)
    return 0 if stopped else 1


def claim(args: argparse.Namespace) -> int:
    queue = jw.SQLiteQueue(args.db, busy_timeout=30)
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
    with open(args.out, "w") as out:
        json.dump({"pid": os.getpid(), "claims": claims, "errors": errors}, out)
    return 0 if not errors else 1


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {os.getpid()} %(message)s")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("work")
    w.add_argument("db")
    w.add_argument("ledger")
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--lease", type=float, default=1.5)
    w.add_argument("--heartbeat", type=float, default=0.3)
    c = sub.add_parser("claim")
    c.add_argument("db")
    c.add_argument("out")
    c.add_argument("--threads", type=int, default=3)
    args = parser.parse_args()
    return work(args) if args.mode == "work" else claim(args)


if __name__ == "__main__":
    sys.exit(main())
