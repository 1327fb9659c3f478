"""Real worker processes on a shared queue: spawned, killed with SIGKILL, respawned.

The processes run ``worker_process.py`` beside this file, on SQLite or
PostgreSQL. A test watches them through the database and the ledger they
append to: other processes send no signal, so it reads in a loop bounded by
a deadline, with a short ``Event.wait`` between reads (:func:`watch`).

:func:`kill_workers` and :func:`check_kill_run` are the SIGKILL test both
durable backends run: 3 processes x 2 worker threads, 2,000 jobs, 6 SIGKILLs
at random intervals. The test reads the jobs table with a plain connection
of its own (no recovery, no decoding), so this module imports no driver.
"""

from __future__ import annotations

import collections
import contextlib
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
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import attrs

import jobworker as jw

HELPER = pathlib.Path(__file__).with_name("worker_process.py")
STARTUP_TIMEOUT = 30.0

# The SIGKILL test.
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

# Watching other processes: how often to look again.
_LOOK = threading.Event()  # never set: its wait() paces reads of the database


def watch(condition: Callable[[], bool], timeout: float, every: float = 0.02) -> bool:
    """Read until *condition* holds or *timeout* seconds pass; return whether it held.

    Looks again every *every* seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        _LOOK.wait(every)
    return True


def wait_for_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    assert readable, f"process {proc.pid} did not start within {STARTUP_TIMEOUT} s"
    assert proc.stdout.readline() == b"ready\n", f"process {proc.pid} died at start"


#: The ``worker_process.py`` options that name the queue, for a process of the given name.
QueueArgs = Callable[[str], Sequence[str]]


class WorkerProcesses:
    """Processes running ``worker_process.py work``, started and stopped by a test.

    Each has a name of its own (``<base>_<n>`` unless the test names it), which
    *queue_args* may put where the server shows it: PostgreSQL's
    ``application_name``.
    """

    def __init__(self, queue_args: QueueArgs, ledger: pathlib.Path, log: IO[bytes]) -> None:
        self.queue_args, self.ledger, self.log = queue_args, ledger, log
        self.names: dict[subprocess.Popen[bytes], str] = {}  # running process -> name
        self.base = f"jwproc_{uuid.uuid4().hex[:10]}"
        self._numbers = itertools.count(1)

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        """The processes started and not yet stopped."""
        return list(self.names)

    def start(self, *options: str, name: str | None = None) -> subprocess.Popen[bytes]:
        """Start a worker process; see :meth:`spawn`."""
        name = name or f"{self.base}_{next(self._numbers)}"
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HELPER),
                "work",
                str(self.ledger),
                *self.queue_args(name),
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.names[proc] = name
        return proc

    def spawn(self, *options: str, name: str | None = None) -> subprocess.Popen[bytes]:
        """Start a worker process; return once it has installed its signal handlers."""
        proc = self.start(*options, name=name)
        wait_for_ready(proc)
        return proc

    def spawn_many(self, n: int, *options: str) -> None:
        """Start *n* worker processes at once; return once all are ready."""
        for proc in [self.start(*options) for _ in range(n)]:
            wait_for_ready(proc)

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> dict[str, Any]:
        """Stop *proc* with SIGTERM; assert it exits 0 and return its metrics line."""
        proc.send_signal(signal.SIGTERM)
        return self._reap(proc, timeout)

    def terminate_all(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Stop every process with SIGTERM at once; as :meth:`terminate`."""
        procs = self.procs
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        return [self._reap(proc, timeout) for proc in procs]

    def _reap(self, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        out, _ = proc.communicate(timeout=timeout)
        del self.names[proc]
        assert proc.returncode == 0, f"process {proc.pid} exited {proc.returncode}\n{self.tail()}"
        report: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        return report

    def kill(self, proc: subprocess.Popen[bytes]) -> str:
        """SIGKILL *proc*; return its name."""
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        code = proc.returncode
        assert code == -signal.SIGKILL, f"{proc.pid} had exited with {code}\n{self.tail()}"
        return self.names.pop(proc)

    def tail(self) -> str:
        """The end of the worker processes' log, for a failure message."""
        self.log.flush()
        return pathlib.Path(self.log.name).read_text(errors="replace")[-4000:]

    def close(self) -> None:
        """Kill whatever is left (after a failure)."""
        for proc in self.procs:
            self.kill(proc)


@contextlib.contextmanager
def worker_processes(tmp_path: pathlib.Path, queue_args: QueueArgs) -> Iterator[WorkerProcesses]:
    """Worker processes logging to *tmp_path*; any left running at the end are killed."""
    with open(tmp_path / "workers.log", "ab") as log:
        procs = WorkerProcesses(queue_args, tmp_path / "ledger", log)
        try:
            yield procs
        finally:
            procs.close()


# -- the ledger --------------------------------------------------------------------------------


class Execution:
    """One execution in the ledger: its S line, and its E line if it ended."""

    def __init__(self, job_id: str, token: str, pid: int, start: float) -> None:
        self.job_id, self.token, self.pid, self.start = job_id, token, pid, start
        self.end: float | None = None


def read_ledger(path: pathlib.Path) -> list[Execution]:
    """Return the executions on record, one per claim token."""
    executions: dict[str, Execution] = {}
    for line in path.read_text().splitlines():
        mark, job_id, token, pid, at = line.split(" ")
        if mark == "S":
            assert token not in executions, f"claim {token} executed twice"
            executions[token] = Execution(job_id, token, int(pid), float(at))
        else:
            assert mark == "E", line
            execution = executions[token]
            assert (execution.job_id, execution.pid, execution.end) == (job_id, int(pid), None)
            execution.end = float(at)
    return list(executions.values())


# -- reading the jobs table --------------------------------------------------------------------

#: A new plain connection to the jobs' database, in autocommit mode (sqlite3 or psycopg).
Connect = Callable[[], Any]


def running_jobs(conn: Any, table: str) -> list[tuple[str, str, str]]:
    """``(id, claim token, worker name)`` of every running job."""
    sql = f"SELECT id, claim_token, claim_worker FROM {table} WHERE status = 'running'"
    return [tuple(row) for row in conn.execute(sql).fetchall()]


def pid_of(worker: str) -> int:
    """The process id in a worker name ``w-PID-N``."""
    return int(worker.split("-")[1])


def count_unfinished(conn: Any, table: str) -> int:
    sql = f"SELECT count(*) FROM {table} WHERE status IN ('pending', 'running')"
    return int(conn.execute(sql).fetchone()[0])


class OrphanWatch:
    """Records when each job held by a killed process stops being held by it.

    A job is an orphan from the kill of its process until a surviving worker
    recovers it (its claim token changes or it is no longer running).
    """

    def __init__(self, connect: Connect, table: str) -> None:
        self.connect, self.table = connect, table
        self.lock = threading.Lock()
        self.orphans: dict[str, tuple[str, float]] = {}  # guarded by lock: id -> (token, killed)
        # guarded by lock: (id, token) -> seconds from the kill to the recovery
        self.recovered: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="orphan-watch")

    def add(self, conn: Any, pid: int, killed_at: float) -> int:
        """Record the jobs the killed process *pid* held; return how many."""
        rows = [(i, token) for i, token, w in running_jobs(conn, self.table) if pid_of(w) == pid]
        with self.lock:
            for job_id, token in rows:
                previous = self.orphans.get(job_id)
                if previous is not None and previous[0] != token:
                    # Recovered and claimed again (by the process just killed)
                    # before the watch looked: that recovery happened by now.
                    old_token, old_kill = previous
                    self.recovered[job_id, old_token] = time.monotonic() - old_kill
                self.orphans[job_id] = (token, killed_at)
        return len(rows)

    def _run(self) -> None:
        conn = self.connect()
        try:
            stopping = False
            while not stopping:
                # One last look after stop is set: the jobs may all have ended
                # between two looks, and the test stops the watch at once then.
                stopping = self.stop.wait(0.02)
                with self.lock:
                    waiting = dict(self.orphans)
                if not waiting:
                    continue
                held = {(job_id, token) for job_id, token, _ in running_jobs(conn, self.table)}
                seen = time.monotonic()
                with self.lock:
                    for job_id, (token, killed_at) in waiting.items():
                        if (job_id, token) not in held:
                            self.recovered[job_id, token] = seen - killed_at
                            del self.orphans[job_id]
        finally:
            conn.close()


# -- the SIGKILL test --------------------------------------------------------------------------


@attrs.frozen
class Kill:
    pid: int
    held: int  # the jobs it held when it was killed
    at: float  # time.monotonic() of the kill


@attrs.frozen
class KillRun:
    """What :func:`kill_workers` saw, for :func:`check_kill_run`."""

    context: str  # the seed, to replay the kills
    rows: list[tuple[str, str, int, str]]  # (id, status, retry_count, result) of every job
    kills: list[Kill]
    orphans: dict[str, tuple[str, float]]  # jobs of killed processes never recovered
    recovered: dict[tuple[str, str], float]  # (id, token) -> seconds from kill to recovery
    reports: list[dict[str, Any]]  # the survivors' metrics
    ended: float  # seconds from the start until every job had ended
    ledger: pathlib.Path


def job_ids() -> list[str]:
    return [f"crash-{i:04d}" for i in range(JOBS)]


def kill_workers(
    processes: WorkerProcesses,
    queue: jw.JobQueue,
    connect: Connect,
    table: str,
    *,
    options: Sequence[str] = (),
    after_kill: Callable[[Any, str], None] | None = None,
    stop_timeout: float = 20.0,
) -> KillRun:
    """Run JOBS jobs on PROCESSES worker processes while KILLS of them are killed.

    *queue* creates the jobs, at CREATE_PER_SECOND, while a killer sends
    SIGKILL to a random busy process at random intervals and starts another
    in its place. Then every job must end, and the survivors must stop on
    SIGTERM within *stop_timeout* seconds. *options* go to every process
    after the common ones; ``after_kill(conn, name)`` returns once what the
    killed process held is final.
    """
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    context = f"seed {seed}"
    print(f"kill_workers: {context}")  # shown with any failure
    options = (
        f"--threads={THREADS}",
        f"--lease={LEASE}",
        f"--heartbeat={HEARTBEAT}",
        "--poll=0.2",
        *options,
    )
    ids = job_ids()
    conn = connect()
    orphans = OrphanWatch(connect, table)
    kills: list[Kill] = []
    producer: threading.Thread | None = None
    stop_producing = threading.Event()
    produce_errors: list[BaseException] = []
    began = time.monotonic()
    try:
        for _ in range(PROCESSES):
            processes.spawn(*options)

        def produce() -> None:
            # Paced so the jobs keep coming while the killer works (not a wait for a
            # thread); stop_producing is set when the test ends early.
            started = time.monotonic()
            try:
                for n, job_id in enumerate(ids):
                    due = started + n / CREATE_PER_SECOND
                    if stop_producing.wait(max(0.0, due - time.monotonic())):
                        return
                    ms = 4 + (n * 7919) % 9  # 4..12 ms of work
                    queue.create_job(jw.new_job("ledger", {"ms": ms}, id=job_id, max_retries=10))
            except BaseException as exc:  # broad: the test reports it
                produce_errors.append(exc)

        producer = threading.Thread(target=produce, name="producer")
        producer.start()
        orphans.thread.start()

        # The killer: SIGKILL a random process at random intervals, respawn it.
        interval = threading.Event()
        for _ in range(KILLS):
            interval.wait(rng.uniform(0.5, 1.5))
            # A random process among those running jobs now, so each kill counts.
            busy = {pid_of(worker) for _, _, worker in running_jobs(conn, table)}
            victim = rng.choice([p for p in processes.procs if p.pid in busy] or processes.procs)
            name = processes.kill(victim)
            killed_at = time.monotonic()
            if after_kill is not None:
                after_kill(conn, name)
            held = orphans.add(conn, victim.pid, killed_at)
            kills.append(Kill(victim.pid, held, killed_at))
            processes.spawn(*options)

        producer.join(timeout=60)
        assert not producer.is_alive(), context
        assert produce_errors == [], context

        # Every job ends, watched through the database.
        if not watch(lambda: count_unfinished(conn, table) == 0, timeout=40):
            left = count_unfinished(conn, table)
            raise AssertionError(f"{left} jobs never ended; {context}\n{processes.tail()}")
        ended = time.monotonic() - began
        orphans.stop.set()
        orphans.thread.join(timeout=10)
        assert not orphans.thread.is_alive()

        # Stop the survivors gracefully: the Runner handles SIGTERM and exits 0.
        reports = processes.terminate_all(timeout=stop_timeout)
        everything = f"SELECT id, status, retry_count, result FROM {table}"
        rows = [tuple(row) for row in conn.execute(everything).fetchall()]
    finally:
        stop_producing.set()
        if producer is not None:
            producer.join(timeout=60)
        orphans.stop.set()
        if orphans.thread.is_alive():
            orphans.thread.join(timeout=10)
        conn.close()

    with orphans.lock:
        return KillRun(
            context=context,
            rows=rows,
            kills=kills,
            orphans=dict(orphans.orphans),
            recovered=dict(orphans.recovered),
            reports=reports,
            ended=ended,
            ledger=processes.ledger,
        )


def check_kill_run(run: KillRun) -> str:
    """Assert that the killed processes lost no job and ran few twice; return the figures.

    The bound on duplicate executions: a kill interrupts at most the jobs in
    flight in that process, one per JobWorker thread, and only an interrupted
    job is recovered (retry_count + 1) and run again. So duplicates <=
    recoveries == jobs held by the killed processes <= kills x THREADS.
    """
    ids = job_ids()
    rows, context = run.rows, run.context

    # Every job was created once and ended complete; nothing was set aside or lost.
    assert sorted(row[0] for row in rows) == ids
    statuses = collections.Counter(row[1] for row in rows)
    assert statuses == {"complete": JOBS}, (statuses, context)

    # The ledger: one S line per execution, each under a claim of its own.
    executions = read_ledger(run.ledger)
    runs = collections.Counter(e.job_id for e in executions)
    assert set(runs) == set(ids), "a job never ran"

    # Each complete job's result comes from an execution on record, and every
    # execution whose result was not kept ran in a process that was killed.
    on_record = {(e.job_id, e.token): e.pid for e in executions}
    kept = set()
    for job_id, _, _, result in rows:
        stored = json.loads(result)
        assert on_record.get((job_id, stored["token"])) == stored["pid"], job_id
        kept.add((job_id, stored["token"]))
    killed = {kill.pid for kill in run.kills}
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
    held = [kill.held for kill in run.kills]
    bound = len(run.kills) * THREADS
    slowest = max(run.recovered.values(), default=0.0)
    figures = (
        f"jobs {JOBS}, kills {len(run.kills)}, jobs held by the killed processes {held}, "
        f"recoveries {recoveries}, duplicate executions {duplicates} "
        f"(in {sum(1 for c in runs.values() if c > 1)} jobs), bound {bound} = kills x threads, "
        f"slowest recovery {slowest:.2f} s after its kill, all ended {run.ended:.1f} s "
        f"after the start; survivors' loop errors {[r['loop_errors'] for r in run.reports]}; "
        f"{context}"
    )
    print(figures)
    assert len(run.kills) >= 5
    assert all(jobs <= THREADS for jobs in held), figures
    assert duplicates <= recoveries == sum(held) <= bound, figures
    assert recoveries >= 1, f"no kill interrupted a job: the test proved nothing; {figures}"

    # Each job held by a killed process was recovered by a survivor within a
    # lease of the kill (plus GRACE for scheduling), the last kill's included.
    assert not run.orphans, run.orphans
    assert len(run.recovered) == recoveries, figures
    assert slowest <= LEASE + GRACE, figures

    # The survivors lost no lease.
    assert all(r["lost"] == 0 for r in run.reports), run.reports
    return figures
