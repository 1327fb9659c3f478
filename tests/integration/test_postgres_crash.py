"""PostgresQueue shared by real worker processes, some of them killed with SIGKILL.

The worker processes run ``postgres_worker_process.py`` beside this file,
each with an ``application_name`` of its own, so the test can tell when the
server has ended a killed process's connections (and with them any claim it
was committing). The test watches the processes through the database and the
ledger they append to: other processes send no signal, so it reads in a loop
bounded by a deadline, with a short ``Event.wait`` between reads.
"""

from __future__ import annotations

import collections
import itertools
import json
import pathlib
import random
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import jobworker as jw

HELPER = pathlib.Path(__file__).with_name("postgres_worker_process.py")

JOBS = 2000
PROCESSES = 3
THREADS = 2  # JobWorker threads per process
LEASE = 1.5
HEARTBEAT = 0.3
# A connection for each worker thread and each heartbeat, with room to spare.
POOL_SIZE = 4 * THREADS
KILLS = 6
# Jobs are created at this rate while the killer runs, so the kills land on
# busy processes: 2,000 jobs take about as long as the 6 kill intervals.
CREATE_PER_SECOND = 250
# Time a surviving worker may take, past the lease, to notice an expired
# lease and recover the job: it wakes when the earliest lease expires, but a
# loaded 2-core CI machine may schedule it late.
GRACE = 2.0
STARTUP_TIMEOUT = 30.0

# Watching other processes: how often to look again.
_LOOK = threading.Event()  # never set: its wait() paces reads of the database


def look_again() -> None:
    _LOOK.wait(0.02)


class WorkerProcesses:
    """The worker processes, spawned and killed by the test."""

    def __init__(self, dsn: str, schema: str, ledger: pathlib.Path, log: IO[bytes]) -> None:
        self.dsn, self.schema, self.ledger, self.log = dsn, schema, ledger, log
        self.procs: dict[subprocess.Popen[bytes], str] = {}  # process -> application_name
        self.base = f"jwcrash_{uuid.uuid4().hex[:10]}"
        self.numbers = itertools.count(1)

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start a worker process and return once it has installed its signal handlers."""
        app = f"{self.base}_{next(self.numbers)}"
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HELPER),
                make_conninfo(self.dsn, application_name=app),
                self.schema,
                str(self.ledger),
                f"--threads={THREADS}",
                f"--lease={LEASE}",
                f"--heartbeat={HEARTBEAT}",
                f"--pool-size={POOL_SIZE}",
                "--poll=0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.procs[proc] = app
        wait_for_ready(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> str:
        """SIGKILL *proc*; return its application_name."""
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        return self.procs.pop(proc)

    def close(self) -> None:
        """Kill whatever is left (after a failure); the test stops the rest with SIGTERM."""
        for proc in list(self.procs):
            self.kill(proc)


def wait_for_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    assert readable, f"process {proc.pid} did not start within {STARTUP_TIMEOUT} s"
    assert proc.stdout.readline() == b"ready\n", f"process {proc.pid} died at start"


def one(conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


class OrphanWatch:
    """Records when each job held by a killed process stops being held by it.

    A job is an orphan from the kill of its process until a surviving worker
    recovers it (its claim token changes or it is no longer running).
    """

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn, self.table = dsn, table
        self.lock = threading.Lock()
        self.orphans: dict[str, tuple[str, float]] = {}  # guarded by lock: id -> (token, killed)
        # guarded by lock: (id, token) -> seconds from the kill to the recovery
        self.recovered: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="orphan-watch")

    def add(self, conn: psycopg.Connection[Any], pid: int, killed_at: float) -> int:
        """Record the jobs the killed process *pid* held; return how many."""
        rows = conn.execute(
            f"SELECT id, claim_token FROM {self.table} WHERE status = 'running' "
            "AND claim_worker LIKE %s",
            (f"w-{pid}-%",),
        ).fetchall()
        with self.lock:
            for job_id, token in rows:
                self.orphans[job_id] = (token, killed_at)
        return len(rows)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(0.02):
                with self.lock:
                    waiting = dict(self.orphans)
                if not waiting:
                    continue
                held = set(
                    conn.execute(
                        f"SELECT id, claim_token FROM {self.table} WHERE status = 'running'"
                    ).fetchall()
                )
                seen = time.monotonic()
                with self.lock:
                    for job_id, (token, killed_at) in waiting.items():
                        if (job_id, token) not in held:
                            self.recovered[job_id, token] = seen - killed_at
                            del self.orphans[job_id]


@pytest.fixture
def processes(
    postgres_schema: tuple[str, str], tmp_path: pathlib.Path
) -> Iterator[WorkerProcesses]:
    dsn, schema = postgres_schema
    with open(tmp_path / "workers.log", "ab") as log:
        procs = WorkerProcesses(dsn, schema, tmp_path / "ledger", log)
        try:
            yield procs
        finally:
            procs.close()


def worker_log(tmp_path: pathlib.Path) -> str:
    text = (tmp_path / "workers.log").read_text(errors="replace")
    return text[-4000:]


def test_killed_worker_processes_lose_no_job(
    tmp_path: pathlib.Path, processes: WorkerProcesses
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    context = f"seed {seed}"
    dsn, schema = processes.dsn, processes.schema
    table = f'"{schema}"."jobworker_jobs"'
    queue = jw.PostgresQueue(dsn, schema=schema, migrate=True, lease_duration=LEASE, pool_size=2)
    ids = [f"crash-{i:04d}" for i in range(JOBS)]
    conn = psycopg.connect(dsn, autocommit=True)
    watch = OrphanWatch(dsn, table)
    kills: list[tuple[int, int, float]] = []  # (pid, jobs it held, monotonic time)
    producer: threading.Thread | None = None
    stop_producing = threading.Event()
    began = time.monotonic()
    try:
        for _ in range(PROCESSES):
            processes.spawn()

        def produce() -> None:
            # Paced so the jobs keep coming while the killer works (not a wait for a
            # thread); set when the test ends early.
            started = time.monotonic()
            for n, job_id in enumerate(ids):
                due = started + n / CREATE_PER_SECOND
                if stop_producing.wait(max(0.0, due - time.monotonic())):
                    return
                ms = 4 + (n * 7919) % 9  # 4..12 ms of work
                queue.create_job(jw.new_job("ledger", {"ms": ms}, id=job_id, max_retries=10))

        producer = threading.Thread(target=produce, name="producer")
        producer.start()
        watch.thread.start()

        def busy_pids() -> set[int]:
            rows = conn.execute(
                f"SELECT DISTINCT split_part(claim_worker, '-', 2)::int FROM {table} "
                "WHERE status = 'running'"
            ).fetchall()
            return {pid for (pid,) in rows}

        # The killer: SIGKILL a random process at random intervals, respawn it.
        interval = threading.Event()
        for _ in range(KILLS):
            interval.wait(rng.uniform(0.5, 1.5))
            # A random process among those running jobs now, so each kill counts.
            busy = busy_pids()
            victim = rng.choice(
                [p for p in processes.procs if p.pid in busy] or list(processes.procs)
            )
            app = processes.kill(victim)
            killed_at = time.monotonic()
            # Once the server has ended the dead process's connections, a claim it
            # was committing has either landed or not: what it held is final.
            deadline = killed_at + 10
            while one(
                conn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ):
                assert time.monotonic() < deadline, f"the server kept {app}'s connections"
                look_again()
            held = watch.add(conn, victim.pid, killed_at)
            kills.append((victim.pid, held, killed_at))
            processes.spawn()

        producer.join(timeout=60)
        assert not producer.is_alive(), context

        # Every job ends, watched through the database.
        deadline = time.monotonic() + 40
        unfinished = f"SELECT count(*) FROM {table} WHERE status IN ('pending', 'running')"
        while (left := one(conn, unfinished)) and time.monotonic() < deadline:
            look_again()
        assert left == 0, f"{left} jobs never ended; {context}\n{worker_log(tmp_path)}"
        ended = time.monotonic()
        watch.stop.set()
        watch.thread.join(timeout=10)
        assert not watch.thread.is_alive()

        # Stop the survivors gracefully: the Runner handles SIGTERM and exits 0.
        survivors = list(processes.procs)
        for proc in survivors:
            proc.send_signal(signal.SIGTERM)
        reports = []
        for proc in survivors:
            out, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0, f"{proc.pid}; {context}\n{worker_log(tmp_path)}"
            del processes.procs[proc]
            reports.append(json.loads(out.decode().splitlines()[-1]))

        rows = conn.execute(f"SELECT id, status, retry_count, result FROM {table}").fetchall()
        # The server ends a process's connections soon after the process exits.
        deadline = time.monotonic() + 10
        alive = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s"
        while (leftover := one(conn, alive, (f"{processes.base}%",))) and (
            time.monotonic() < deadline
        ):
            look_again()
    finally:
        stop_producing.set()
        if producer is not None:
            producer.join(timeout=60)
        watch.stop.set()
        if watch.thread.is_alive():
            watch.thread.join(timeout=10)
        conn.close()
        queue.close()

    # Every job was created once and ended complete; nothing was set aside or lost.
    assert sorted(row[0] for row in rows) == ids
    statuses = collections.Counter(row[1] for row in rows)
    assert statuses == {"complete": JOBS}, (statuses, context)

    # The ledger: one S line per execution, each under a claim of its own.
    starts = [
        line.split(" ")[1:4]
        for line in (processes.ledger).read_text().splitlines()
        if line.startswith("S ")
    ]
    tokens = [token for _, token, _ in starts]
    assert len(set(tokens)) == len(tokens), "a claim was executed twice"
    runs = collections.Counter(job_id for job_id, _, _ in starts)
    assert set(runs) == set(ids), "a job never ran"

    # Each complete job's result comes from an execution on record.
    on_record = {(job_id, token): int(pid) for job_id, token, pid in starts}
    for job_id, _, _, result in rows:
        stored = json.loads(result)
        assert on_record.get((job_id, stored["token"])) == stored["pid"], job_id

    # Only a kill loses a claim: each execution after a job's first follows a
    # recovery (retry_count + 1), and a kill interrupts at most the jobs in
    # flight in that process, one per JobWorker thread.
    retries = {row[0]: row[2] for row in rows}
    for job_id, count in runs.items():
        assert count <= retries[job_id] + 1, (job_id, count, retries[job_id])
    recoveries = sum(retries.values())
    duplicates = sum(count - 1 for count in runs.values())
    held = [jobs for _, jobs, _ in kills]
    bound = len(kills) * THREADS
    slowest = max(watch.recovered.values(), default=0.0)
    figures = (
        f"jobs {JOBS}, kills {len(kills)}, jobs held by the killed processes {held}, "
        f"recoveries {recoveries}, duplicate executions {duplicates} "
        f"(in {sum(1 for c in runs.values() if c > 1)} jobs), bound {bound} = kills x threads, "
        f"slowest recovery {slowest:.2f} s after its kill, all ended {ended - began:.1f} s "
        f"after the start; survivors' loop errors {[r['loop_errors'] for r in reports]}; "
        f"{context}"
    )
    print(figures)
    assert len(kills) >= 5
    assert all(jobs <= THREADS for jobs in held), figures
    assert duplicates <= recoveries == sum(held) <= bound, figures
    assert recoveries >= 1, f"no kill interrupted a job: the test proved nothing; {figures}"

    # Each job held by a killed process was recovered by a survivor within a
    # lease of the kill (plus GRACE for scheduling), the last kill's included.
    assert not watch.orphans, watch.orphans
    assert len(watch.recovered) == recoveries, figures
    assert slowest <= LEASE + GRACE, figures

    # The survivors' counters add up, and no connection of theirs is left open.
    assert all(r["lost"] == 0 for r in reports), reports
    assert leftover == 0
