"""The load benchmark: a Django site under gunicorn, worker processes, a load client.

For SQLite and PostgreSQL, each from a freshly migrated database, in one run:

- ``drain``: the workers' jobs/s on a backlog, without web load and then
  during web load (the ``/insert/`` endpoint, 8 concurrent clients), and the
  p50 / p99 / max of their outcome writes in both;
- ``insert`` / ``enqueue``: requests/s of two endpoints that differ in one
  write (an INSERT of their own, or an enqueue), workers running;
- ``latency``: enqueue -> complete p50 / p99 of jobs enqueued at a pace well
  below saturation;
- PostgreSQL only: the server's transactions per job (``pg_stat_database``
  deltas, read once every connection of the phase closed) and the peak of
  server connections (``pg_stat_activity``).

Every request's status is checked and every job is accounted for at the end
of each phase (errors, lost jobs). Ratios compare phases of the same run.

    python bench/web/run.py [--seconds 10] [--backends sqlite,postgresql] [--out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PY = sys.executable
PORT = 8765
DSN = os.environ.get("JOBWORKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CLIENTS = 8
THREADS = 4
BACKLOG = 1500
LOOK = threading.Event()  # never set: its wait is the harness's bounded pause


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def until(condition: Callable[[], bool], timeout: float, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        LOOK.wait(every)
    return True


class Site:
    """The database of one backend and the processes that use it."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.path = tmp / "site.sqlite3"
            self.bench_db = f"sqlite:{self.path}"
        else:
            self.dbname = f"jwweb_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
            self.bench_db = f"postgresql:{self.dbname}"
        self.env = {
            **os.environ,
            "BENCH_DB": self.bench_db,
            "DJANGO_SETTINGS_MODULE": "benchsite.settings",
            "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}",
        }

    def drop(self) -> None:
        if self.kind != "sqlite":
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    def conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(DSN, dbname=self.dbname)

    def migrate(self) -> None:
        subprocess.run(
            [PY, "manage.py", "migrate", "-v0"], cwd=HERE, env=self.env, check=True, timeout=120
        )

    # -- reading the database ------------------------------------------------------------

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.path, timeout=30)
            try:
                return list(conn.execute(sql).fetchall())
            finally:
                conn.close()
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())

    def counts(self) -> dict[str, int]:
        return dict(self.query("SELECT status, count(*) FROM jobworker_jobs GROUP BY status"))

    def prefill(self, n: int) -> None:
        import jobworker as jw

        queue: jw.JobQueue
        if self.kind == "sqlite":
            queue = jw.SQLiteQueue(self.path)
        else:
            queue = jw.PostgresQueue(self.conninfo(), notify=False)
        with queue:
            for _ in range(n):
                queue.create_job(jw.new_job("bench", {"sent": time.time()}))

    def committed(self) -> int:
        """The database's committed transactions, once no client of it is connected."""
        with psycopg.connect(DSN, autocommit=True) as conn:

            def alone() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.dbname,)
                ).fetchone()
                return row is not None and row[0] == 0

            assert until(alone, 30)
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    # -- processes -------------------------------------------------------------------------

    @contextmanager
    def gunicorn(self) -> Iterator[None]:
        proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "-w", "3", "-b", f"127.0.0.1:{PORT}", "benchsite.wsgi"],
            cwd=HERE,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert until(_answers, 30), "gunicorn did not start"
            yield
        finally:
            proc.terminate()
            proc.wait(60)

    @contextmanager
    def workers(self, result: dict[str, Any]) -> Iterator[None]:
        proc = subprocess.Popen(
            [PY, str(HERE / "worker.py"), str(THREADS)],
            cwd=HERE,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline() == "ready\n"
            yield
        finally:
            proc.stdin.close()
            line = proc.stdout.readline()
            proc.wait(60)
            proc.stdout.close()
            result.update(json.loads(line))


def _answers() -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
        conn.request("GET", "/nothing/")
        conn.getresponse().read()
        conn.close()
    except OSError:
        return False
    return True


def post(path: str) -> tuple[int, float]:
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    try:
        conn.request("POST", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - began
    except OSError:
        return 0, time.perf_counter() - began
    finally:
        conn.close()


def hammer(path: str, seconds: float, clients: int = CLIENTS) -> dict[str, Any]:
    """POST *path* from *clients* threads for *seconds*; count and time the answers."""
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    times: list[float] = []
    errors = [0]

    def client() -> None:
        while time.monotonic() < stop:
            status, took = post(path)
            with lock:
                if status == 200:
                    times.append(took)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    return {
        "requests": len(times),
        "errors": errors[0],
        "rps": len(times) / elapsed,
        "p50_ms": quantile(times, 0.5) * 1000,
        "p99_ms": quantile(times, 0.99) * 1000,
    }


def in_background(body: Callable[[], dict[str, Any]]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(body()))
    thread.start()
    return thread, out


class Peak:
    """Samples the server connections to one database every 50 ms."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                    (self.site.dbname,),
                ).fetchone()
                assert row is not None
                self.peak = max(self.peak, int(row[0]))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def writes(result: dict[str, Any]) -> dict[str, float]:
    values = result.get("writes", [])
    return {
        "outcome_p50_ms": quantile(values, 0.5) * 1000,
        "outcome_p99_ms": quantile(values, 0.99) * 1000,
        "outcome_max_ms": max(values, default=float("nan")) * 1000,
    }


def drain(site: Site, seconds: float, load: bool) -> dict[str, Any]:
    """Workers' jobs/s on a backlog, with or without web load; their outcome writes."""
    site.prefill(BACKLOG)
    done_before = site.counts().get("complete", 0)
    result: dict[str, Any] = {}
    web: dict[str, Any] = {}
    with site.gunicorn():
        thread = None
        if load:
            thread, web = in_background(lambda: hammer("/insert/", seconds))
        began = time.monotonic()
        with site.workers(result):
            until(lambda: site.counts().get("pending", 0) == 0, seconds, every=0.1)
            elapsed = time.monotonic() - began
            done = site.counts().get("complete", 0) - done_before
        if thread is not None:
            thread.join()
    until(lambda: site.counts().get("running", 0) == 0, 60)
    return {"jobs_per_s": done / elapsed, "jobs": done, "web": web, **writes(result)}


def endpoint(site: Site, path: str, seconds: float) -> dict[str, Any]:
    """Requests/s of *path* with workers running; jobs lost; transactions and connections."""
    before_jobs = sum(site.counts().values())
    before_x = site.committed() if site.kind != "sqlite" else 0
    result: dict[str, Any] = {}
    peak = 0
    with site.gunicorn(), site.workers(result):
        if site.kind != "sqlite":
            with Peak(site) as sampler:
                web = hammer(path, seconds)
            peak = sampler.peak
        else:
            web = hammer(path, seconds)
        enqueued = sum(site.counts().values()) - before_jobs
        until(lambda: site.counts().get("pending", 0) == 0, 60)
        until(lambda: site.counts().get("running", 0) == 0, 60)
    counts = site.counts()
    out = {**web, "jobs": enqueued, "peak_connections": peak, **writes(result)}
    out["not_complete"] = sum(v for k, v in counts.items() if k != "complete")
    if site.kind != "sqlite":
        out["transactions"] = site.committed() - before_x
    return out


def latency(site: Site, seconds: float, rate: float) -> dict[str, Any]:
    """Enqueue -> complete of jobs enqueued at *rate* per second (below saturation)."""
    since = time.time()
    result: dict[str, Any] = {}
    errors = 0
    with site.gunicorn(), site.workers(result):
        step = 1.0 / rate
        next_at = time.monotonic()
        stop = next_at + seconds
        while next_at < stop:
            status, _ = post("/enqueue/")
            errors += status != 200
            next_at += step
            LOOK.wait(max(0.0, next_at - time.monotonic()))
        until(lambda: site.counts().get("pending", 0) == 0, 60)
        until(lambda: site.counts().get("running", 0) == 0, 60)
    rows = site.query(
        "SELECT created_us, completed_us FROM jobworker_jobs "
        f"WHERE status = 'complete' AND created_us >= {int(since * 1_000_000)}"
    )
    waits = [(done - made) / 1000 for made, done in rows]
    return {
        "jobs": len(waits),
        "errors": errors,
        "p50_ms": quantile(waits, 0.5),
        "p99_ms": quantile(waits, 0.99),
    }


def run_backend(kind: str, seconds: float, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jwweb-") as tmp:
        site = Site(kind, Path(tmp))
        try:
            site.migrate()
            out: dict[str, Any] = {}
            for name, phase in (
                ("drain_idle", lambda: drain(site, seconds, load=False)),
                ("drain_load", lambda: drain(site, seconds, load=True)),
                ("insert", lambda: endpoint(site, "/insert/", seconds)),
                ("enqueue", lambda: endpoint(site, "/enqueue/", seconds)),
                ("latency", lambda: latency(site, seconds, rate)),
            ):
                print(f"{kind} {name} ...", file=sys.stderr, flush=True)
                out[name] = phase()
                print(f"  {json.dumps(out[name])}", file=sys.stderr, flush=True)
            return out
        finally:
            site.drop()


def summarize(kind: str, r: dict[str, Any]) -> list[str]:
    ins, enq = r["insert"], r["enqueue"]
    errors = (
        ins["errors"]
        + enq["errors"]
        + r["latency"]["errors"]
        + r["drain_load"]["web"].get("errors", 0)
    )
    lines = [
        f"## {kind}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| workers' jobs/s, no web load | {r['drain_idle']['jobs_per_s']:.0f} |",
        f"| workers' jobs/s, during web load | {r['drain_load']['jobs_per_s']:.0f} |",
        f"| ratio (target >= 0.7 on SQLite) | "
        f"{r['drain_load']['jobs_per_s'] / r['drain_idle']['jobs_per_s']:.2f} |",
        f"| outcome write p50 / p99 / max, no load (ms) | {r['drain_idle']['outcome_p50_ms']:.2f}"
        f" / {r['drain_idle']['outcome_p99_ms']:.2f} / {r['drain_idle']['outcome_max_ms']:.1f} |",
        f"| outcome write p50 / p99 / max, under load (ms; target p99 <= 10 on SQLite) | "
        f"{r['drain_load']['outcome_p50_ms']:.2f} / {r['drain_load']['outcome_p99_ms']:.2f}"
        f" / {r['drain_load']['outcome_max_ms']:.1f} |",
        f"| requests/s during the drain under load (/insert/) | "
        f"{r['drain_load']['web'].get('rps', float('nan')):.0f} |",
        f"| requests/s /insert/ (workers running) | {ins['rps']:.0f} |",
        f"| requests/s /enqueue/ (workers running) | {enq['rps']:.0f} |",
        f"| ratio enqueue / insert (target >= 0.85 on PostgreSQL) | "
        f"{enq['rps'] / ins['rps']:.2f} |",
        f"| request p50 / p99, /enqueue/ (ms) | {enq['p50_ms']:.1f} / {enq['p99_ms']:.1f} |",
        f"| enqueue -> complete p50 / p99 at {r['latency']['jobs']} jobs (ms) | "
        f"{r['latency']['p50_ms']:.1f} / {r['latency']['p99_ms']:.1f} |",
        f"| errors (all phases) | {errors} |",
        f"| jobs not complete at the end of /enqueue/ | {enq['not_complete']} |",
    ]
    if "transactions" in enq:
        per_request = ins["transactions"] / max(1, ins["requests"])
        extra = (enq["transactions"] - per_request * enq["requests"]) / max(1, enq["jobs"])
        lines += [
            f"| server transactions per request, /insert/ | {per_request:.2f} |",
            f"| server transactions per request, /enqueue/ | "
            f"{enq['transactions'] / max(1, enq['requests']):.2f} |",
            f"| transactions per job beyond the request's own (target <= 3) | {extra:.2f} |",
            f"| peak server connections, /insert/ / /enqueue/ | "
            f"{ins['peak_connections']} / {enq['peak_connections']} |",
        ]
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="latency phase: jobs/s")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    kinds = args.backends.split(",")
    results = {kind: run_backend(kind, args.seconds, args.rate) for kind in kinds}
    args.out.write_text(json.dumps(results, indent=1))
    report = [line for kind, r in results.items() for line in summarize(kind, r)]
    args.out.with_suffix(".md").write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
