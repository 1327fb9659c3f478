"""A child process of test_sched_unique_processes: races unique creates, or runs a scheduler.

Usage::

    python sched_unique_child.py race QUEUE_ARGS... COUNT
    python sched_unique_child.py schedule QUEUE_ARGS... START_US FACTOR END_US

QUEUE_ARGS is ``sqlite PATH`` or ``postgres DSN SCHEMA``. ``race`` waits for
the file ``PATH.go`` (SQLite) or ``SCHEMA.go`` in the working directory, then
makes COUNT ``create_or_get_job`` calls of one unique key, printing a line
per call ("created" or "existing"). ``schedule`` runs a Scheduler of an
every-minute schedule on an accelerated clock (virtual time START_US plus
FACTOR times the real seconds since WALL0, an epoch time it reads from its
standard input once it has printed "ready") until the virtual time reaches
END_US.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

import jobworker as jw
from jobworker.clock import from_us
from jobworker.schedules import Schedule, Scheduler


class AcceleratedClock:
    """Virtual time that runs FACTOR times faster than the wall clock, the same in every process."""

    def __init__(self, start_us: int, wall0: float, factor: float) -> None:
        self.start = from_us(start_us)
        self.wall0 = wall0
        self.factor = factor

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(time.time() - self.wall0) * self.factor)


def open_queue(args: list[str]) -> tuple[jw.JobQueue, list[str]]:
    if args[0] == "sqlite":
        return jw.SQLiteQueue(args[1]), args[2:]
    from jobworker.queues.postgres import PostgresQueue

    return PostgresQueue(args[1], schema=args[2], notify=False, pool_size=2), args[3:]


def race(queue: jw.JobQueue, count: int) -> None:
    print("ready", flush=True)
    sys.stdin.readline()  # the start line: the parent writes to every racer at once
    unique = jw.Unique(key="account:7", states={"pending", "running", "complete"})
    for n in range(count):
        job, created = queue.create_or_get_job(jw.new_job("sync", {"n": n}, unique=unique))
        print("created" if created else "existing", job.metadata.id, flush=True)


def schedule(queue: jw.JobQueue, start_us: int, factor: float, end_us: int) -> None:
    tick = Schedule("tick", "* * * * *", "report", None, grace=10.0)
    print("ready", flush=True)
    clock = AcceleratedClock(start_us, float(sys.stdin.readline()), factor)
    scheduler = Scheduler(queue, [tick], clock=clock, max_wait=0.01)
    end = from_us(end_us)
    scheduler.start_in_thread()
    try:
        while clock.now() < end:
            time.sleep(0.01)  # the main thread only watches the virtual clock
    finally:
        scheduler.stop(timeout=10)


def main() -> None:
    mode, rest = sys.argv[1], sys.argv[2:]
    queue, rest = open_queue(rest)
    with queue:
        if mode == "race":
            race(queue, int(rest[0]))
        else:
            schedule(queue, int(rest[0]), float(rest[1]), int(rest[2]))


if __name__ == "__main__":
    main()
