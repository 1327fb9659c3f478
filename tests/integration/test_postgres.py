"""PostgresQueue against a real server, with real threads and real processes.

Every test works in a schema of its own (dropped afterwards). Worker
processes run ``worker_process.py --postgres`` beside this file, started by
``crash_harness``; the test watches them through the database and the
ledger they append to. Other processes send no signal, so those watches read
in a loop bounded by a deadline, with a short ``Event.wait`` between reads.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

import jobworker as jw
import jobworker.clock
from jobworker.model import complete
from jobworker.queues._postgres_schema import SCHEMA_VERSION, Names
from tests.conftest import drop_schema, new_schema, require_postgres, with_app

from .crash_harness import Execution, WorkerProcesses, read_ledger, watch


def count_backends(dsn: str, app_like: str) -> int:
    """Return how many server connections have an application_name LIKE *app_like*."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s", (app_like,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def jobs_table(schema: str) -> str:
    return f'"{schema}"."jobworker_jobs"'


def create_jobs(dsn: str, queue: jw.PostgresQueue, jobs: list[jw.PendingJob[Any]]) -> None:
    """Create *jobs* in one transaction of the test's own connection."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        for job in jobs:
            queue.create_job(job, connection=conn)


# -- 1. many processes, many threads, each job once ----------------------------------------

MANY_JOBS = 10_000
MANY_PROCESSES = 4
MANY_THREADS = 4
# Four workers and four heartbeats, each of which may hold two connections at once
# (see test_a_pool_of_one_connection_claims_a_job).
MANY_POOL = 10


def test_four_processes_of_four_threads_run_each_job_once(
    postgres_schema: tuple[str, str], postgres_processes: WorkerProcesses
) -> None:
    dsn, schema = postgres_schema
    processes = postgres_processes
    ids = [f"many-{i:05d}" for i in range(MANY_JOBS)]
    began = time.monotonic()
    with jw.PostgresQueue(dsn, schema=schema, migrate=True, notify=False, pool_size=2) as queue:
        # All jobs first: a producer competing for the 2 cores with 16 busy
        # workers takes minutes, instead of seconds, to create them.
        create_jobs(dsn, queue, [jw.new_job("ledger", {}, id=job_id) for job_id in ids])
        created = time.monotonic()
        processes.spawn_many(
            MANY_PROCESSES, f"--threads={MANY_THREADS}", f"--pool-size={MANY_POOL}", "--poll=0.5"
        )
        started = time.monotonic()

        def unfinished() -> int:
            stats = queue.get_stats()
            return stats["pending"] + stats["running"]

        assert watch(lambda: unfinished() == 0, timeout=300, every=0.25), (
            f"{queue.get_stats()}\n{processes.tail()}"
        )
        ran = time.monotonic()
        reports = processes.terminate_all()
        stats = queue.get_stats()
        jobs = queue.list_jobs(limit=MANY_JOBS + 1)

    # None lost, none left running, none retried.
    assert stats == {"pending": 0, "running": 0, "complete": MANY_JOBS, "failed": 0, "cancelled": 0}
    assert sorted(job.metadata.id for job in jobs) == ids
    assert all(job.metadata.retry_count == 0 for job in jobs)

    # The ledger: every execution ended, and no job was held by two claims at
    # once (the intervals of one job never overlap)...
    executions = read_ledger(processes.ledger)
    assert all(e.end is not None and e.start <= e.end for e in executions)
    by_job: dict[str, list[Execution]] = collections.defaultdict(list)
    for e in executions:
        by_job[e.job_id].append(e)
    for job_id, runs_of_job in by_job.items():
        ordered = sorted(runs_of_job, key=lambda e: e.start)
        for first, second in itertools.pairwise(ordered):
            assert first.end is not None and first.end < second.start, job_id
    # ...nor even one after the other: nothing was killed, so each ran exactly once.
    runs = collections.Counter(e.job_id for e in executions)
    assert set(runs) == set(ids)
    assert max(runs.values()) == 1, [job_id for job_id, n in runs.items() if n > 1][:10]

    # Each stored result names the execution on record, and the process that ran it.
    on_record = {(e.job_id, e.token): e.pid for e in executions}
    for job in jobs:
        assert jw.is_complete_job(job)
        assert on_record[job.metadata.id, job.result["token"]] == job.result["pid"]

    # Every process took part; their counters agree with the ledger.
    pids = collections.Counter(e.pid for e in executions)
    assert sorted(pids) == sorted(r["pid"] for r in reports)
    assert sum(r["processed"] for r in reports) == MANY_JOBS
    for report in reports:
        assert report["processed"] == pids[report["pid"]]
        assert report["errors"] == report["lost"] == 0
    print(
        f"{MANY_JOBS} jobs, {MANY_PROCESSES} processes x {MANY_THREADS} threads: "
        f"created in {created - began:.1f} s, processes started in {started - created:.1f} s, "
        f"run in {ran - started:.1f} s "
        f"({MANY_JOBS / (ran - started):.0f} jobs/s); per process {dict(pids)}; "
        f"loop errors {[r['loop_errors'] for r in reports]}"
    )


# -- in-process workers ------------------------------------------------------------------------


def advisory_lock_waiters(conn: psycopg.Connection[Any], app: str) -> int:
    """How many connections named *app* wait for an advisory lock."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = %s",
        (app,),
    ).fetchone()
    assert row is not None
    return int(row[0])


class RecordingWorker(jw.JobWorker):
    """Records each execution (job id, claim token); sleeps for the job's ``ms`` param."""

    def __init__(self, queue: jw.JobQueue, **kw: Any) -> None:
        kw.setdefault("retry_policy", jw.RetryPolicy.immediate())
        super().__init__(queue, **kw)
        self.executions: list[tuple[str, str]] = []  # list.append is atomic

    def get_worker_name(self) -> str:
        return "recording"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        self.executions.append((job.metadata.id, job.claim.token))
        ms = job.params.get("ms", 0) if isinstance(job.params, dict) else 0
        if ms:
            time.sleep(ms / 1000)  # the job's own work, not a wait for a thread
        return {"token": job.claim.token}


# -- 2. transactional enqueue ------------------------------------------------------------------


def test_create_job_joins_the_callers_transaction(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    with jw.PostgresQueue(dsn, schema=schema, migrate=True, pool_size=4) as queue:
        worker = RecordingWorker(queue, poll_interval=0.2)
        thread = worker.start_in_thread()
        try:
            with psycopg.connect(dsn) as conn:
                # Rolled back by an exception: the job never existed.
                with pytest.raises(RuntimeError, match="roll back"), conn.transaction():
                    queue.create_job(jw.new_job("t", {}, id="rolled-back"), connection=conn)
                    # Visible inside the transaction, to nobody else.
                    inside = conn.execute(
                        f"SELECT status FROM {jobs_table(schema)} WHERE id = 'rolled-back'"
                    ).fetchall()
                    assert inside == [("pending",)]
                    assert queue.get_job("rolled-back") is None
                    raise RuntimeError("roll back")
                assert queue.get_job("rolled-back") is None

                # Rolled back by rollback() on the connection's implicit (DB-API)
                # transaction, begun by the caller's own statement.
                conn.execute("SELECT 1")
                queue.create_job(jw.new_job("t", {}, id="rolled-back-2"), connection=conn)
                conn.rollback()
                assert queue.get_job("rolled-back-2") is None

                # Committed: a worker runs it.
                with conn.transaction():
                    queue.create_job(jw.new_job("t", {}, id="committed"), connection=conn)
                    assert queue.get_job("committed") is None  # not before the commit
                done = queue.wait_for_job("committed", timeout=10)
                assert jw.is_complete_job(done)

                # A duplicate id inside the caller's transaction: DuplicateJobError, and
                # the transaction goes on (a savepoint undid only the failed insert).
                queue.create_job(jw.new_job("t", {"n": 0}, id="existing"))
                with conn.transaction():
                    queue.create_job(jw.new_job("t", {}, id="before-dup"), connection=conn)
                    with pytest.raises(jw.DuplicateJobError):
                        queue.create_job(jw.new_job("t", {"n": 1}, id="existing"), connection=conn)
                    with pytest.raises(jw.DuplicateJobError):
                        queue.create_job(jw.new_job("t", {}, id="before-dup"), connection=conn)
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                    queue.create_job(jw.new_job("t", {}, id="after-dup"), connection=conn)
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            for job_id in ("before-dup", "after-dup", "existing"):
                assert jw.is_complete_job(queue.wait_for_job(job_id, timeout=10)), job_id
            existing = queue.get_job("existing")
            assert existing is not None and existing.params == {"n": 0}
        finally:
            stopped = worker.stop(timeout=10)
        assert stopped
        thread.join(timeout=10)
        assert not thread.is_alive()
        stats = queue.get_stats()

    assert stats == {"pending": 0, "running": 0, "complete": 4, "failed": 0, "cancelled": 0}
    ran = sorted(job_id for job_id, _ in worker.executions)
    assert ran == ["after-dup", "before-dup", "committed", "existing"]


def test_create_job_first_in_an_implicit_transaction_rolls_back(
    postgres_schema: tuple[str, str],
) -> None:
    dsn, schema = postgres_schema
    with (
        jw.PostgresQueue(dsn, schema=schema, migrate=True, notify=False) as queue,
        psycopg.connect(dsn) as conn,  # not autocommit: DB-API implicit transactions
    ):
        queue.create_job(jw.new_job("t", {}, id="first"), connection=conn)
        conn.execute("SELECT 1")  # the caller's own work in the same transaction
        conn.rollback()
        assert queue.get_job("first") is None


# -- 3. connections killed under the workers --------------------------------------------------

LOSS_JOBS = 400
LOSS_KILLS = 5
LOSS_LEASE = 2.0


def terminate_backends(dsn: str, app: str) -> int:
    """Terminate every server connection named *app*; return how many."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = %s",
            (app,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def count_listeners(dsn: str, app: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND query LIKE 'LISTEN %%'",
            (app,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_workers_survive_killed_connections(
    postgres_schema: tuple[str, str], postgres_processes: WorkerProcesses
) -> None:
    dsn, schema = postgres_schema
    processes = postgres_processes
    app = f"jwloss_{uuid.uuid4().hex[:10]}"
    conninfo = with_app(dsn, app)
    ids = [f"loss-{i:03d}" for i in range(LOSS_JOBS)]
    observer = jw.PostgresQueue(
        with_app(dsn, f"{app}_observer"), schema=schema, migrate=True, notify=False, pool_size=2
    )
    queue = jw.PostgresQueue(
        conninfo,
        schema=schema,
        pool_size=8,
        lease_duration=LOSS_LEASE,
        retry_policy=jw.RetryPolicy.immediate(),
    )
    workers = [
        RecordingWorker(queue, poll_interval=0.5, error_backoff=0.05, heartbeat_interval=0.5)
        for _ in range(3)
    ]
    try:
        threads = [worker.start_in_thread() for worker in workers]
        proc = processes.spawn(
            "--threads=2",
            f"--lease={LOSS_LEASE}",
            "--heartbeat=0.5",
            "--poll=0.5",
            "--pool-size=8",
            name=app,
        )
        create_jobs(
            dsn,
            observer,
            [jw.new_job("ledger", {"ms": 10}, id=job_id, max_retries=50) for job_id in ids],
        )

        def completed() -> int:
            return observer.get_stats()["complete"]

        # Kill every connection of the workers (pools and LISTEN) as the jobs progress.
        killed = []
        for n in range(1, LOSS_KILLS + 1):
            mark = LOSS_JOBS * n // (LOSS_KILLS + 2)
            assert watch(lambda mark=mark: completed() >= mark, timeout=60), observer.get_stats()
            killed.append(terminate_backends(dsn, app))
        assert completed() < LOSS_JOBS, "the jobs ended before the last kill"

        assert watch(lambda: completed() == LOSS_JOBS, timeout=90), (
            f"{observer.get_stats()}\n{processes.tail()}"
        )
        # Both LISTEN connections came back, and the workers still take new work.
        assert watch(lambda: count_listeners(dsn, app) == 2, timeout=20)
        observer.create_job(jw.new_job("ledger", {}, id="after-kills"))
        assert jw.is_complete_job(observer.wait_for_job("after-kills", timeout=20))
        assert all(thread.is_alive() for thread in threads)
        assert all(worker.stop(timeout=10) for worker in workers)
        report = processes.terminate(proc)
        jobs = observer.list_jobs(limit=LOSS_JOBS + 10)
    finally:
        for worker in workers:
            worker.stop(timeout=10)
        queue.close()
        observer.close()

    # Every job ended complete; none is left running.
    assert len(jobs) == LOSS_JOBS + 1
    assert all(jw.is_complete_job(job) for job in jobs), [j for j in jobs if j.status != "complete"]
    # Each kill found connections to end.
    assert all(n >= 1 for n in killed), killed

    # Executions: one per claim; a job ran again only after a lost attempt.
    in_process = [e for worker in workers for e in worker.executions]
    in_ledger = [(e.job_id, e.token) for e in read_ledger(processes.ledger)]
    executions = in_process + in_ledger
    assert len({token for _, token in executions}) == len(executions)
    runs = collections.Counter(job_id for job_id, _ in executions)
    retries = {job.metadata.id: job.metadata.retry_count for job in jobs}
    assert set(runs) == set(retries)
    assert all(runs[job_id] <= retries[job_id] + 1 for job_id in runs)

    # No connection of this test's queues is left open.
    assert watch(lambda: count_backends(dsn, f"{app}%") == 0, timeout=15)

    loop_errors = sum(w.get_metrics().loop_errors for w in workers) + report["loop_errors"]
    print(
        f"kills {killed} connections; loop errors {loop_errors}; "
        f"recoveries {sum(retries.values())}; executions {len(executions)} for {len(runs)} jobs"
    )


# -- 4. a worker whose own clock is a day ahead ----------------------------------------------

DAY = dt.timedelta(days=1)


def server_now(dsn: str) -> dt.datetime:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    value: dt.datetime = row[0]
    return value


def skew_clock(monkeypatch: pytest.MonkeyPatch, by: dt.timedelta) -> None:
    """Make this process's own clock (what jobworker reads as the time) *by* ahead."""
    real = jobworker.clock.utcnow
    monkeypatch.setattr(jobworker.clock, "utcnow", lambda: real() + by)


def test_a_skewed_clock_does_not_recover_a_live_lease(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = postgres_schema
    with jw.PostgresQueue(dsn, schema=schema, migrate=True, lease_duration=30) as holder:
        holder.create_job(jw.new_job("t", {}, id="held"))
        claimed = holder.poll_next_pending_job(worker="holder", timeout=0)
        assert claimed is not None

        with monkeypatch.context() as patch:
            skew_clock(patch, DAY)
            assert jobworker.clock.utcnow() - dt.datetime.now(dt.timezone.utc) > DAY * 0.99
            with jw.PostgresQueue(dsn, schema=schema, lease_duration=30) as skewed:
                # Calibrated away: the queue reads the server's time.
                assert abs(skewed.clock.now() - server_now(dsn)) < dt.timedelta(seconds=5)
                assert skewed.poll_next_pending_job(worker="skewed", timeout=0) is None
                assert (
                    skewed.poll_next_pending_job(
                        worker="skewed", predicate=lambda job: True, timeout=0
                    )
                    is None
                )
                seen = skewed.get_job("held")
                assert seen is not None and jw.is_running_job(seen)
                assert seen.claim == claimed.claim
                assert seen.metadata.retry_count == 0
                assert skewed.get_stats()["running"] == 1
                assert [job.status for job in skewed.list_jobs()] == ["running"]

        # The holder's claim is still the current one: its result is stored.
        done = holder.update_job(
            complete(claimed, "held to the end", now=holder.clock.now()),
            "running",
            claim=claimed.claim,
        )
        assert jw.is_complete_job(done) and done.result == "held to the end"
        assert done.metadata.retry_count == 0


def test_a_skewed_clock_does_not_claim_a_job_before_its_run_after(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = postgres_schema
    skew_clock(monkeypatch, DAY)
    with jw.PostgresQueue(dsn, schema=schema, migrate=True) as skewed:
        now = server_now(dsn)
        skewed.create_job(jw.new_job("t", {}, id="later", run_after=now + dt.timedelta(seconds=60)))
        assert skewed.poll_next_pending_job(timeout=0) is None
        assert skewed.poll_next_pending_job(predicate=lambda job: True, timeout=0) is None
        assert skewed.poll_next_pending_job(timeout=0.3) is None

        # A job due now is claimed: the instance works, it only waits for the due one.
        skewed.create_job(jw.new_job("t", {}, id="due", run_after=now - dt.timedelta(seconds=1)))
        claimed = skewed.poll_next_pending_job(timeout=0)
        assert claimed is not None and claimed.metadata.id == "due"
        later = skewed.get_job("later")
        assert later is not None and later.status == "pending"
        assert later.metadata.run_after == now + dt.timedelta(seconds=60)


def test_a_skewed_clock_recovers_a_lease_that_really_expired(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = postgres_schema
    lease = 1.0
    with jw.PostgresQueue(dsn, schema=schema, migrate=True, lease_duration=lease) as holder:
        holder.create_job(jw.new_job("t", {}, id="abandoned", max_retries=3))
        before_claim = time.monotonic()
        claimed = holder.poll_next_pending_job(worker="holder", timeout=0)
        assert claimed is not None  # and never renewed: the holder "died"

        skew_clock(monkeypatch, DAY)
        with jw.PostgresQueue(dsn, schema=schema) as skewed:

            def recovered() -> bool:
                job = skewed.get_job("abandoned")
                return job is not None and job.status != "running"

            assert watch(recovered, timeout=10)
            seen_at = time.monotonic()
            job = skewed.get_job("abandoned")

    assert job is not None and job.status == "pending"
    assert job.metadata.retry_count == 1
    # Not before the lease ran out (up to the calibration's error), and soon after.
    assert lease - 0.2 <= seen_at - before_claim <= lease + 5


def test_a_step_of_the_local_clock_does_not_recover_a_live_lease(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = postgres_schema
    with (
        jw.PostgresQueue(dsn, schema=schema, migrate=True, lease_duration=30) as holder,
        jw.PostgresQueue(dsn, schema=schema) as observer,
    ):
        holder.create_job(jw.new_job("t", {}, id="held"))
        claimed = holder.poll_next_pending_job(worker="holder", timeout=0)
        assert claimed is not None
        assert observer.get_stats()["running"] == 1  # the observer's clock is calibrated
        # Then this machine's clock steps a day ahead (an NTP step, a resumed VM).
        skew_clock(monkeypatch, DAY)
        seen = observer.get_job("held")
        assert seen is not None and jw.is_running_job(seen), seen
        assert seen.claim == claimed.claim


def test_a_wait_for_a_pooled_connection_does_not_skew_the_clock(
    postgres_schema: tuple[str, str],
) -> None:
    dsn, schema = postgres_schema
    app = f"jwcalib_{uuid.uuid4().hex[:10]}"
    key = f"jobworker:{Names(schema=schema, prefix='jobworker_').jobs}"
    with (
        jw.PostgresQueue(
            with_app(dsn, app), schema=schema, migrate=True, notify=False, pool_size=1
        ) as queue,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        # The pool's one connection waits for a lock the test holds...
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        holder = threading.Thread(target=queue.migrate)
        holder.start()

        assert watch(lambda: advisory_lock_waiters(conn, app) == 1, timeout=10)
        # ...so the clock's first read waits for it, for as long as the lock is held.
        reader = threading.Thread(target=queue.clock.now)
        reader.start()
        threading.Event().wait(2.0)  # how long the read waits: the condition under test
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        holder.join(timeout=10)
        reader.join(timeout=10)
        assert not holder.is_alive() and not reader.is_alive()
        error = queue.clock.now() - server_now(dsn)
    assert abs(error) < dt.timedelta(seconds=0.25), error


# -- 6. NOTIFY wakes an idle worker in another process -----------------------------------------


def backends_idle_for(dsn: str, app: str, seconds: float) -> bool:
    """Whether every connection named *app* has been idle for *seconds*, LISTEN among them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE query LIKE 'LISTEN %%'), "
            "bool_and(state = 'idle'), "
            "extract(epoch FROM clock_timestamp() - max(state_change)) "
            "FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        ).fetchone()
    assert row is not None
    total, listening, idle, quiet = row
    return bool(total >= 2 and listening == 1 and idle and quiet >= seconds)


def test_notify_wakes_an_idle_worker_in_another_process(
    postgres_schema: tuple[str, str], postgres_processes: WorkerProcesses
) -> None:
    dsn, schema = postgres_schema
    processes = postgres_processes
    app = f"jwnotify_{uuid.uuid4().hex[:10]}"
    quiet = jw.PostgresQueue(dsn, schema=schema, migrate=True, notify=False, pool_size=2)
    loud = jw.PostgresQueue(dsn, schema=schema, notify=True, pool_size=2)
    try:
        # Polls every 30 s: only a notification can wake it sooner.
        proc = processes.spawn("--threads=1", "--poll=30", name=app)
        latencies = []
        for round_ in range(2):
            # The worker is idle: its connections have been quiet for a while.
            assert watch(lambda: backends_idle_for(dsn, app, 0.5), timeout=20)

            # A job created without a notification stays pending.
            silent = quiet.create_job(jw.new_job("ledger", {}, id=f"silent-{round_}"))
            assert not watch(
                lambda silent=silent: quiet.get_job(silent.metadata.id).status != "pending",
                timeout=1.5,
            ), "the worker took a job nobody announced: was it idle?"

            # One created with a notification wakes it: it takes both at once.
            created = time.monotonic()
            loud.create_job(jw.new_job("ledger", {}, id=f"loud-{round_}"))
            done = loud.wait_for_job(f"loud-{round_}", timeout=10)
            latencies.append(time.monotonic() - created)
            assert jw.is_complete_job(done)
            assert jw.is_complete_job(loud.wait_for_job(f"silent-{round_}", timeout=1))
        # A stop wakes the idle worker too: it exits well before its 30 s poll.
        stopping = time.monotonic()
        processes.terminate(proc, timeout=15)
        stop_time = time.monotonic() - stopping
    finally:
        quiet.close()
        loud.close()
    assert max(latencies) < 5, latencies
    assert stop_time < 10, stop_time
    print(f"woken in {[f'{s:.3f}' for s in latencies]} s; stopped in {stop_time:.2f} s")


# -- 7. schema and migrations ------------------------------------------------------------------


def tables_in(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s ORDER BY c.relname",
            (schema,),
        ).fetchall()
    return [name for (name,) in rows]


def schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return row == (1,)


def test_missing_tables_ask_for_jobworker_migrate(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    # No schema at all: nothing is created.
    with pytest.raises(jw.BackendError, match="jobworker migrate"):
        jw.PostgresQueue(dsn, schema=schema, notify=False)
    assert not schema_exists(dsn, schema)
    # An empty schema: still no DDL.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    with pytest.raises(jw.BackendError, match="jobworker migrate"):
        jw.PostgresQueue(dsn, schema=schema)
    assert tables_in(dsn, schema) == []


def test_migrating_twice_changes_nothing(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    with jw.PostgresQueue(dsn, schema=schema, migrate=True) as queue:
        tables = tables_in(dsn, schema)
        assert "jobworker_jobs" in tables and "jobworker_meta" in tables
        queue.create_job(jw.new_job("t", {"kept": True}, id="kept"))
        assert queue.migrate() == SCHEMA_VERSION  # the version found: already current
    with jw.PostgresQueue(dsn, schema=schema, migrate=True) as again:
        assert again.migrate() == SCHEMA_VERSION
        kept = again.get_job("kept")
        assert kept is not None and kept.params == {"kept": True}
    assert tables_in(dsn, schema) == tables


def migrate_command(url: str, schema: str, *more: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobworker", "migrate", url, "--schema", schema, *more],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_migrate_command_creates_the_tables(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    proc = migrate_command(dsn, schema)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "created the tables" in out and schema in out
    assert {"jobworker_jobs", "jobworker_meta"} <= set(tables_in(dsn, schema))
    again = migrate_command(dsn, schema)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "already at the current schema version" in out
    with jw.PostgresQueue(dsn, schema=schema) as queue:  # no migrate=True needed now
        queue.create_job(jw.new_job("t", {}, id="works"))
        assert queue.get_stats()["pending"] == 1

    bad = migrate_command(dsn, 'x"; DROP SCHEMA public; --')
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2  # a bad argument
    assert "schema must be a plain identifier" in err


def test_two_processes_migrating_at_once_both_succeed(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    app = f"jwmigrate_{uuid.uuid4().hex[:10]}"
    # Hold the migration's advisory lock, so both processes are inside migrate() at once.
    key = f"jobworker:{Names(schema=schema, prefix='jobworker_').jobs}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        procs = [migrate_command(with_app(dsn, app), schema) for _ in range(2)]
        try:
            assert watch(lambda: advisory_lock_waiters(conn, app) == 2, timeout=30)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        results = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    with jw.PostgresQueue(dsn, schema=schema) as queue:
        assert queue.migrate() == SCHEMA_VERSION
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT key, value FROM "{schema}"."jobworker_meta"').fetchall()
    assert rows == [("schema_version", str(SCHEMA_VERSION))]


UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("schema", "x; drop"),
        ("schema", 'a"b'),
        ("schema", ""),
        ("schema", "1x"),
        ("schema", "s" * 41),
        ("prefix", "x; drop"),
        ("prefix", 'a"b'),
        ("prefix", "p-"),
    ],
)
def test_bad_names_are_refused_before_connecting(option: str, value: str) -> None:
    # The server is unreachable: a ValueError proves no connection was tried.
    with pytest.raises(ValueError, match=option):
        jw.PostgresQueue(UNREACHABLE, **{option: value})


def test_an_empty_prefix_is_allowed(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    with jw.PostgresQueue(dsn, schema=schema, prefix="", migrate=True) as queue:
        queue.create_job(jw.new_job("t", {}, id="plain"))
        assert queue.get_stats()["pending"] == 1
    assert {"jobs", "meta"} <= set(tables_in(dsn, schema))


def test_the_longest_accepted_names_work() -> None:
    dsn = require_postgres()
    schema = new_schema().ljust(40, "x")
    prefix = "p" * 30
    try:
        with jw.PostgresQueue(dsn, schema=schema, prefix=prefix, migrate=True) as queue:
            queue.create_job(jw.new_job("t", {}, id="long"))
            assert queue.get_stats()["pending"] == 1
    finally:
        drop_schema(schema)


# -- the connection pool -----------------------------------------------------------------------


def test_a_pool_of_one_connection_claims_a_job(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    with jw.PostgresQueue(dsn, schema=schema, migrate=True, pool_size=1, notify=False) as queue:
        queue.create_job(jw.new_job("t", {}, id="one"))
        began = time.monotonic()
        try:
            claimed = queue.poll_next_pending_job(timeout=0)
        finally:
            took = time.monotonic() - began
        assert claimed is not None and claimed.metadata.id == "one"
        assert took < 5, took


def test_a_job_stored_too_deep_to_read_is_failed_as_malformed(
    postgres_schema: tuple[str, str],
) -> None:
    dsn, schema = postgres_schema
    with jw.PostgresQueue(dsn, schema=schema, migrate=True) as queue:
        for job_id in ("claimed", "listed", "sound"):
            queue.create_job(jw.new_job("t", {}, id=job_id))
        deep = "[" * 100_000 + "]" * 100_000
        with psycopg.connect(dsn) as conn:  # as another program might write it
            conn.execute(
                f"UPDATE {jobs_table(schema)} SET params = %s WHERE id = 'listed'", (deep,)
            )
        statuses = {job.metadata.id: job.status for job in queue.list_jobs()}
        assert statuses == {"claimed": "pending", "listed": "failed", "sound": "pending"}
        with psycopg.connect(dsn) as conn:
            conn.execute(
                f"UPDATE {jobs_table(schema)} SET params = %s WHERE id = 'claimed'", (deep,)
            )
        running = queue.poll_next_pending_job(worker="w", timeout=0)
        assert running is not None and running.metadata.id == "sound"
        for job_id in ("claimed", "listed"):
            job = queue.get_job(job_id)
            assert job is not None and jw.is_failed_job(job)
            assert job.error.startswith("MalformedJob:")
            assert "nests too deeply" in job.error
        assert queue.get_stats()["running"] == 1
