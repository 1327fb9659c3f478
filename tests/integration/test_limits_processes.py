"""Limits across real worker processes on SQLite and PostgreSQL, some killed with SIGKILL.

A concurrency limit of 2 holds for 4 processes x 4 threads while a watcher
samples the jobs table with a connection of its own; processes killed
mid-job hold their slot until their lease is recovered, and never let a
third job run. A rate limit of 50 a second holds across 4 processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jobworker as jw
from tests.conftest import drop_schema, new_schema, require_postgres
from tests.integration.crash_harness import wait_for_ready, watch

HELPER = pathlib.Path(__file__).with_name("limited_worker.py")
ROOT = pathlib.Path(__file__).parents[2]
PROCESSES = 4
THREADS = 4
LEASE = 1.5

pytestmark = pytest.mark.slow


class Store:
    """A queue's location: the config a worker process opens it with, and plain reads."""

    def __init__(self, config: dict[str, Any], one: Callable[[str], Any]) -> None:
        self.config = config
        self.one = one

    def count(self, sql: str) -> int:
        return int(self.one(sql))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Store]:
    """A new queue on the backend, and reads of it on a plain connection per thread."""
    local = threading.local()
    opened: list[Any] = []
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite3"
        jw.SQLiteQueue(path).close()
        table = "jobworker_jobs"
        config: dict[str, Any] = {"sqlite": str(path)}

        def connect() -> Any:
            # Used by one thread only; closed by the fixture at the end.
            return sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)

        schema = None
    else:
        dsn = require_postgres()
        import psycopg

        from jobworker.queues.postgres import PostgresQueue

        schema = new_schema()
        PostgresQueue(dsn, schema=schema, prefix="lim_", migrate=True).close()
        table = f'"{schema}"."lim_jobs"'
        config = {"postgres": dsn, "schema": schema, "prefix": "lim_"}

        def connect() -> Any:
            return psycopg.connect(dsn, autocommit=True)

    def one(sql: str) -> Any:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = connect()
            opened.append(conn)
        row = conn.execute(sql.format(t=table)).fetchone()
        return None if row is None else row[0]

    try:
        yield Store(config, one)
    finally:
        for conn in opened:
            conn.close()
        if schema is not None:
            drop_schema(schema)


def open_queue(store: Store) -> jw.JobQueue:
    if "sqlite" in store.config:
        return jw.SQLiteQueue(store.config["sqlite"])
    from jobworker.queues.postgres import PostgresQueue

    return PostgresQueue(
        store.config["postgres"], schema=store.config["schema"], prefix=store.config["prefix"]
    )


@contextlib.contextmanager
def workers(store: Store, limits: dict[str, Any]) -> Iterator[Callable[[int], bool]]:
    """Start PROCESSES worker processes; yield a function that SIGKILLs one by pid, respawned."""
    config = {**store.config, "threads": THREADS, "lease": LEASE, "poll": 0.2, "limits": limits}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def spawn() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), json.dumps(config)], stdout=subprocess.PIPE, env=env
        )
        wait_for_ready(proc)
        return proc

    procs = [spawn() for _ in range(PROCESSES)]

    def kill(pid: int) -> bool:
        pids = [proc.pid for proc in procs]
        if pid not in pids:
            return False  # killed already; its job waits for recovery
        index = pids.index(pid)
        procs[index].send_signal(signal.SIGKILL)
        procs[index].wait(30)
        assert procs[index].stdout is not None
        procs[index].stdout.close()
        procs[index] = spawn()
        return True

    try:
        yield kill
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()


def test_a_limit_of_2_holds_across_processes_some_killed(store: Store) -> None:
    queue = open_queue(store)
    try:
        for _ in range(100):
            queue.create_job(jw.new_job("export", {"ms": 80}, max_retries=20))
        for _ in range(200):
            queue.create_job(jw.new_job("mail", {"ms": 2}))
    finally:
        queue.close()
    running = "SELECT count(*) FROM {t} WHERE status = 'running' AND type = 'export'"
    left = "SELECT count(*) FROM {t} WHERE status IN ('pending', 'running')"
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(store.count(running))

    with workers(store, {"export": {"concurrency": 2}}) as kill:
        watcher = threading.Thread(target=sample)
        watcher.start()
        try:
            # Kill processes in the middle of an export: their jobs hold a
            # slot until their lease is recovered.
            holder = (
                "SELECT claim_worker FROM {t} WHERE status = 'running' AND type = 'export' "
                "ORDER BY started_us DESC"
            )

            def kill_a_holder() -> bool:
                worker = store.one(holder)
                return worker is not None and kill(int(worker.rsplit("-", 1)[1]))

            for _ in range(3):
                assert watch(kill_a_holder, 30)
            assert watch(lambda: store.count(left) == 0, 120, every=0.1)
        finally:
            stop.set()
            watcher.join(30)
    print(f"limit 2: {len(samples)} samples, most running {max(samples)}")
    assert len(samples) > 100
    assert max(samples) == 2, f"running exports seen: {sorted(set(samples))}"
    done = "SELECT count(*) FROM {t} WHERE status = 'complete'"
    assert store.count(done) == 300
    lost = "SELECT count(*) FROM {t} WHERE retry_count > 0"
    assert store.count(lost) >= 1  # a killed process's export was recovered and run again


def test_a_rate_of_50_a_second_holds_across_processes(store: Store) -> None:
    queue = open_queue(store)
    try:
        for _ in range(800):
            queue.create_job(jw.new_job("api", {}))
    finally:
        queue.close()
    with workers(store, {"api": {"rate": 50, "period": 1.0}}):
        began = time.monotonic()
        started = "SELECT count(*) FROM {t} WHERE status <> 'pending'"
        assert watch(lambda: store.count(started) > 0, 30)
        first = store.count(started)
        # Let the rate run for 10 seconds, then count the starts.
        threading.Event().wait(10.0)
        during = store.count(started) - first
        elapsed = time.monotonic() - began
    queue = open_queue(store)
    try:
        times = sorted(
            job.started_at
            for job in queue.list_jobs(limit=10_000)
            if isinstance(job, (jw.CompleteJob, jw.FailedJob))
        )
    finally:
        queue.close()
    # No window of a second ever holds more than 50 starts...
    micros = [int(t.timestamp() * 1_000_000) for t in times]
    most = max(
        sum(1 for later in micros[i : i + 60] if later - start < 1_000_000)
        for i, start in enumerate(micros)
    )
    print(f"rate 50/s: {during} starts in {elapsed:.1f} s, most in one second {most}")
    assert most <= 50
    # ...and over 10 seconds the processes keep within 10% of the rate.
    assert 450 <= during <= 550, (during, elapsed)
