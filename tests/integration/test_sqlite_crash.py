"""SQLiteQueue shared by real worker processes, some of them killed with SIGKILL.

The worker processes run ``sqlite_worker_process.py`` beside this file. The
test watches them through the database and the ledger they append to: other
processes send no signal, so it reads in a loop bounded by a deadline, with a
short ``Event.wait`` between reads.
"""

from __future__ import annotations

import collections
import json
import pathlib
import random
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import pytest

import jobworker as jw

HELPER = pathlib.Path(__file__).with_name("sqlite_worker_process.py")

JOBS = 2000
PROCESSES = 3
THREADS = 2  # JobWorker threads per process
LEASE = 1.5
HEARTBEAT = 0.3
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

    def __init__(self, db: pathlib.Path, ledger: pathlib.Path, log: IO[bytes]) -> None:
        self.db, self.ledger, self.log = db, ledger, log
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start a worker process and return once it has installed its signal handlers."""
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HELPER),
                "work",
                str(self.db),
                str(self.ledger),
                f"--threads={THREADS}",
                f"--lease={LEASE}",
                f"--heartbeat={HEARTBEAT}",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.procs.append(proc)
        wait_for_ready(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=10)
        assert code == -signal.SIGKILL, f"{proc.pid} had exited with {code}\n{self.tail()}"
        self.procs.remove(proc)
        assert proc.stdout is not None
        proc.stdout.close()

    def tail(self) -> str:
        """The end of the worker processes' log, for a failure message."""
        self.log.flush()
        return pathlib.Path(self.log.name).read_text(errors="replace")[-4000:]

    def close(self) -> None:
        """Kill whatever is left (after a failure); the test stops the rest with SIGTERM."""
        for proc in list(self.procs):
            self.kill(proc)


def wait_for_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    assert readable, f"process {proc.pid} did not start within {STARTUP_TIMEOUT} s"
    assert proc.stdout.readline() == b"ready\n", f"process {proc.pid} died at start"


def connect(db: pathlib.Path) -> sqlite3.Connection:
    """A plain connection for the test's own reads (no recovery, no decoding)."""
    return sqlite3.connect(db, timeout=30, isolation_level=None)


def count_unfinished(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM jobworker_jobs WHERE status IN ('pending', 'running')"
        ).fetchone()[0]
    )


BUSY_PIDS = """SELECT DISTINCT CAST(substr(claim_worker, 7, instr(substr(claim_worker, 7), '-') - 1)
    AS INTEGER) FROM jobworker_jobs WHERE status = 'running'"""


class OrphanWatch:
    """Records when each job held by a killed process stops being held by it.

    A job is an orphan from the kill of its process until a surviving worker
    recovers it (its claim token changes or it is no longer running).
    """

    def __init__(self, db: pathlib.Path) -> None:
        self.db = db
        self.lock = threading.Lock()
        self.orphans: dict[str, tuple[str, float]] = {}  # guarded by lock: id -> (token, killed)
        # guarded by lock: (id, token) -> seconds from the kill to the recovery
        self.recovered: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="orphan-watch")

    def add(self, conn: sqlite3.Connection, pid: int, killed_at: float) -> int:
        """Record the jobs the killed process *pid* held; return how many."""
        rows = conn.execute(
            "SELECT id, claim_token FROM jobworker_jobs WHERE status = 'running' "
            "AND claim_worker LIKE ?",
            (f"crash-{pid}-%",),
        ).fetchall()
        with self.lock:
            for job_id, token in rows:
                self.orphans[job_id] = (token, killed_at)
        return len(rows)

    def _run(self) -> None:
        conn = connect(self.db)
        try:
            while not self.stop.wait(0.02):
                with self.lock:
                    waiting = dict(self.orphans)
                if not waiting:
                    continue
                held = set(
                    conn.execute(
                        "SELECT id, claim_token FROM jobworker_jobs WHERE status = 'running'"
                    ).fetchall()
                )
                seen = time.monotonic()
                with self.lock:
                    for job_id, (token, killed_at) in waiting.items():
                        if (job_id, token) not in held:
                            self.recovered[job_id, token] = seen - killed_at
                            del self.orphans[job_id]
        finally:
            conn.close()


@pytest.fixture
def processes(tmp_path: pathlib.Path) -> Iterator[WorkerProcesses]:
    with open(tmp_path / "workers.log", "ab") as log:
        procs = WorkerProcesses(tmp_path / "jobs.sqlite", tmp_path / "ledger", log)
        try:
            yield procs
        finally:
            procs.close()


def test_killed_worker_processes_lose_no_job(processes: WorkerProcesses) -> None:
    """3 processes x 2 worker threads, 2,000 jobs, 6 SIGKILLs at random intervals.

    The bound on duplicate executions: a kill interrupts at most the jobs in
    flight in that process, one per JobWorker thread, and only an interrupted
    job is recovered (retry_count + 1) and run again. So duplicates <=
    recoveries == jobs held by the killed processes <= kills x THREADS.
    """
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    context = f"seed {seed}"
    queue = jw.SQLiteQueue(processes.db, lease_duration=LEASE)
    ids = [f"crash-{i:04d}" for i in range(JOBS)]
    conn = connect(processes.db)
    watch = OrphanWatch(processes.db)
    kills: list[tuple[int, int, float]] = []  # (pid, jobs it held, monotonic time)
    try:
        for _ in range(PROCESSES):
            processes.spawn()

        produce_errors: list[BaseException] = []

        def produce() -> None:
            # Paced so the jobs keep coming while the killer works (not a wait for a thread).
            pace = threading.Event()
            started = time.monotonic()
            try:
                for n, job_id in enumerate(ids):
                    due = started + n / CREATE_PER_SECOND
                    pace.wait(max(0.0, due - time.monotonic()))
                    ms = 4 + (n * 7919) % 9  # 4..12 ms of work
                    queue.create_job(jw.new_job("crash", {"ms": ms}, id=job_id, max_retries=10))
            except BaseException as exc:  # broad: the test reports it
                produce_errors.append(exc)

        producer = threading.Thread(target=produce, name="producer")
        producer.start()
        watch.thread.start()

        # The killer: SIGKILL a random process at random intervals, respawn it.
        interval = threading.Event()
        for _ in range(KILLS):
            interval.wait(rng.uniform(0.5, 1.5))
            # A random process among those running jobs now, so each kill counts.
            busy = {row[0] for row in conn.execute(BUSY_PIDS)}
            victim = rng.choice([p for p in processes.procs if p.pid in busy] or processes.procs)
            processes.kill(victim)
            killed_at = time.monotonic()
            held = watch.add(conn, victim.pid, killed_at)
            kills.append((victim.pid, held, killed_at))
            processes.spawn()

        producer.join(timeout=60)
        assert not producer.is_alive(), context
        assert produce_errors == [], context

        # Every job ends, watched through the database.
        deadline = time.monotonic() + 40
        while (left := count_unfinished(conn)) and time.monotonic() < deadline:
            look_again()
        assert left == 0, f"{left} jobs never ended; {context}\n{processes.tail()}"
        watch.stop.set()
        watch.thread.join(timeout=10)
        assert not watch.thread.is_alive()

        # Stop the survivors gracefully: the Runner handles SIGTERM and exits 0.
        survivors = list(processes.procs)
        for proc in survivors:
            proc.send_signal(signal.SIGTERM)
        for proc in survivors:
            assert proc.wait(timeout=15) == 0, f"{proc.pid}; {context}\n{processes.tail()}"
            processes.procs.remove(proc)
            assert proc.stdout is not None
            proc.stdout.close()

        rows = conn.execute("SELECT id, status, retry_count, result FROM jobworker_jobs").fetchall()
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        watch.stop.set()
        if watch.thread.is_alive():
            watch.thread.join(timeout=10)
        conn.close()
        queue.close()

    # Every job was created once and ended complete; nothing was set aside or lost.
    assert integrity == [("ok",)]
    assert sorted(row[0] for row in rows) == ids
    statuses = collections.Counter(row[1] for row in rows)
    assert statuses == {"complete": JOBS}, (statuses, context)

    # The ledger: one line per execution, each under a claim of its own.
    lines = (processes.ledger).read_text().splitlines()
    executions = [tuple(line.split(" ")) for line in lines]
    assert all(len(execution) == 3 for execution in executions)
    tokens = [token for _, token, _ in executions]
    assert len(set(tokens)) == len(tokens), "a claim was executed twice"
    runs = collections.Counter(job_id for job_id, _, _ in executions)
    assert set(runs) == set(ids), "a job never ran"

    # Each complete job's result comes from an execution on record, and every
    # execution whose result was not kept ran in a process that was killed.
    on_record = {(job_id, token): int(pid) for job_id, token, pid in executions}
    kept = set()
    for job_id, _, _, result in rows:
        stored = json.loads(result)
        assert on_record.get((job_id, stored["token"])) == stored["pid"], job_id
        kept.add((job_id, stored["token"]))
    killed = {pid for pid, _, _ in kills}
    discarded = {key: pid for key, pid in on_record.items() if key not in kept}
    assert set(discarded.values()) <= killed, discarded

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
        f"slowest recovery {slowest:.2f} s after its kill; {context}"
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


def test_threads_in_two_processes_claim_each_job_once(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "claims.sqlite"
    n_jobs = 1000
    with jw.SQLiteQueue(db) as queue:
        for i in range(n_jobs):
            queue.create_job(jw.new_job("claim", {"i": i}, id=f"claim-{i:04d}"))

    outs = [tmp_path / f"claims-{n}.json" for n in range(2)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for out in outs:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(HELPER), "claim", str(db), str(out), "--threads=3"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        for proc in procs:
            wait_for_ready(proc)
        for proc in procs:  # start both at once: the claims contend
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode(errors="replace")

    reports = [json.loads(out.read_text()) for out in outs]
    claims: list[dict[str, Any]] = [claim for report in reports for claim in report["claims"]]
    assert [report["errors"] for report in reports] == [[], []]
    # Every job claimed exactly once, by one claim of its own.
    assert sorted(claim["id"] for claim in claims) == [f"claim-{i:04d}" for i in range(n_jobs)]
    assert len({claim["token"] for claim in claims}) == n_jobs
    # Both processes took part, and the completions were stored by the claimant.
    assert all(report["claims"] for report in reports)
    by_id = {claim["id"]: claim["worker"] for claim in claims}
    with jw.SQLiteQueue(db) as queue:
        assert queue.get_stats() == {
            "pending": 0,
            "running": 0,
            "complete": n_jobs,
            "failed": 0,
            "cancelled": 0,
        }
        for job in queue.list_jobs(limit=n_jobs):
            assert jw.is_complete_job(job)
            assert job.result == by_id[job.metadata.id]
            assert job.metadata.retry_count == 0
