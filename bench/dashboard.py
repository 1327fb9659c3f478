"""The dashboard's job list with a million jobs, in SQLite and in PostgreSQL.

Fills a queue with ``--jobs`` jobs (a mix of statuses, types and users, made
by copying a few real jobs in SQL), serves the dashboard over HTTP on
loopback and times whole GET requests of the list page: the first page, a
page deep in the list (by its keyset cursor), each filter, and the overview.
Baselines in the same run: ``list_jobs`` at the same depth by offset (what
the list would cost without keyset pages), and a single job's page.

    .venv/bin/python bench/dashboard.py                     # SQLite and PostgreSQL, 1,000,000 jobs
    .venv/bin/python bench/dashboard.py --jobs 100000 --backends sqlite

Prints one line a case: median and 95th percentile of ``--repeat`` requests,
and whether the median is under the 200 ms target.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jobworker as jw
from jobworker.attempts import AttemptError
from jobworker.model import fail
from jobworker.web import Dashboard, make_dashboard_server

DEFAULT_DSN = os.environ.get("JOBWORKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 200.0
TYPES = ("mail", "thumbnail", "report", "export", "sync")
# (status, share of the jobs): most jobs in a busy store have ended.
MIX = (
    ("complete", 0.80),
    ("pending", 0.12),
    ("failed", 0.05),
    ("cancelled", 0.029),
    ("running", 0.001),
)


def _templates(queue: jw.JobQueue) -> None:
    """Create one real job of each status and type, to be copied in SQL."""
    now = queue.clock.now()
    # Pending ones last: each claim below must take the job just created.
    statuses = sorted((status for status, _ in MIX), key=lambda status: status == "pending")
    for job_type in TYPES:
        for status in statuses:
            job_id = f"tpl-{status}-{job_type}"
            queue.create_job(
                jw.new_job(
                    job_type, {"n": 1, "to": "a@example.com"}, id=job_id, max_retries=0, created=now
                )
            )
            if status == "pending":
                continue
            if status == "cancelled":
                queue.cancel_job(job_id)
                continue
            running = queue.poll_next_pending_job(types=[job_type], worker="bench")
            assert running is not None and running.metadata.id == job_id
            if status == "complete":
                queue._complete_job(running, {"ok": True})
            elif status == "failed":
                error = AttemptError("builtins.ValueError", "bench", "Traceback ...")
                queue.update_job(fail(running, error, now=now), "running", claim=running.claim)


def _fill_sql(queue: Any, execute: Callable[[str], None], total: int, series: str) -> None:
    """Copy the templates into *total* jobs with one INSERT ... SELECT per status and type."""
    _templates(queue)
    columns = [
        "type",
        "status",
        "priority",
        "retry_count",
        "max_retries",
        "run_after_us",
        "params",
        "progress",
        "result",
        "error",
        "started_us",
        "completed_us",
        "claim_token",
        "claim_worker",
        "lease_until_us",
        "attempts",
    ]
    start_us = 1_700_000_000_000_000
    per_group = [
        (status, job_type, max(1, round(total * share / len(TYPES))))
        for status, share in MIX
        for job_type in TYPES
    ]
    offset, stride = 0, len(per_group)
    for group, (status, job_type, count) in enumerate(per_group):
        # Spread each group's created times over the whole range, so that
        # statuses and types interleave in the created order as in a real store.
        select = ", ".join(columns)
        execute(
            f"""INSERT INTO {queue._table} (id, user_id, created_us, {", ".join(columns)})
            SELECT 'job-' || ({offset} + n), 'user' || (n % 100),
                   {start_us} + (n * {stride} + {group}) * 1000, {select}
            FROM {queue._table}, {series.format(count=count)}
            WHERE id = 'tpl-{status}-{job_type}'"""
        )
        offset += count
    execute(f"DELETE FROM {queue._table} WHERE id LIKE 'tpl-%'")


@contextlib.contextmanager
def sqlite_queue(total: int) -> Iterator[jw.JobQueue]:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "jobs.sqlite3")
        queue = jw.SQLiteQueue(path)
        import sqlite3

        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")

        def execute(sql: str) -> None:
            conn.execute("BEGIN")
            conn.execute(sql)
            conn.execute("COMMIT")

        series = (
            "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s "
            "WHERE n + 1 < {count}) SELECT n FROM s)"
        )
        _fill_sql(queue, execute, total, series)
        conn.execute("ANALYZE")
        conn.close()
        try:
            yield queue
        finally:
            queue.close()


@contextlib.contextmanager
def postgres_queue(total: int, dsn: str) -> Iterator[jw.JobQueue]:
    import psycopg

    schema = f"bench_dashboard_{os.getpid()}"
    queue = jw.PostgresQueue(dsn, schema=schema, migrate=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            _fill_sql(
                queue,
                conn.execute,
                total,
                "generate_series(0::bigint, {count} - 1) AS g(n)",
            )
            conn.execute(f'VACUUM ANALYZE "{schema}"."jobworker_jobs"')
        yield queue
    finally:
        queue.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _time_get(url: str, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
            assert response.status == 200, (url, response.status)
        samples.append((time.perf_counter() - start) * 1000)
    assert b'id="live"' in body, url
    return samples


def _time_call(call: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _line(backend: str, case: str, samples: list[float], bound: bool) -> None:
    median = statistics.median(samples)
    p95 = sorted(samples)[max(0, round(len(samples) * 0.95) - 1)]
    verdict = ("met" if median < TARGET_MS else "MISSED") if bound else "(no target)"
    print(
        f"{backend:9} {case:44} median {median:8.1f} ms  p95 {p95:8.1f} ms  {verdict}", flush=True
    )


def run(backend: str, queue: jw.JobQueue, repeat: int) -> None:
    app = Dashboard(queue, refresh_interval=0.1)
    server = make_dashboard_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="bench-dashboard")
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        total = sum(queue.get_stats().values())
        middle = total // 2
        # A cursor half-way down the list: follow pages there once, by keyset.
        page = queue.browse_jobs(limit=1000)
        for _ in range(middle // 1000 - 1):
            assert page.next_cursor is not None
            page = queue.browse_jobs(limit=1000, cursor=page.next_cursor)
        deep = page.next_cursor
        assert deep is not None
        cases = [
            ("list: first page", "/jobs"),
            (f"list: page at job {middle:,} (keyset)", f"/jobs?cursor={deep}"),
            ("list: status=failed (5%)", "/jobs?status=failed"),
            ("list: status=running (0.1%)", "/jobs?status=running"),
            ("list: status=pending (12%)", "/jobs?status=pending"),
            ("list: type=report (20%)", "/jobs?type=report"),
            ("list: user=user42 (1%)", "/jobs?user=user42"),
            ("list: status=failed&type=sync (1%)", "/jobs?status=failed&type=sync"),
            ("list: id contains '-4242' (rare)", "/jobs?q=-4242"),
            ("job page", "/job?id=job-12345"),
        ]
        for case, path in cases:
            _time_get(base + path, 2)  # warm caches and connections
            _line(backend, case, _time_get(base + path, repeat), bound=case.startswith("list"))
        _line(
            backend,
            "baseline: list_jobs(offset=middle)",
            _time_call(lambda: queue.list_jobs(limit=50, offset=middle), max(3, repeat // 4)),
            bound=False,
        )
        _line(
            backend,
            "overview (counts by type: every row)",
            _time_get(base + "/", max(3, repeat // 4)),
            bound=False,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args()
    for backend in args.backends.split(","):
        start = time.perf_counter()
        opened = (
            sqlite_queue(args.jobs) if backend == "sqlite" else postgres_queue(args.jobs, args.dsn)
        )
        with opened as queue:
            filled = sum(queue.get_stats().values())
            print(
                f"{backend}: {filled:,} jobs filled in {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            run(backend, queue, args.repeat)


if __name__ == "__main__":
    main()
