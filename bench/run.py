"""Benchmark jobworker beside its baselines and peers, every system on the same workloads.

One invocation runs each selected system and workload in a fresh process,
``--repeat`` times (the repetitions interleave the systems, so drift on a
busy machine hits them alike), and writes into ``--out``:

- ``results.json``: the machine, the options and every sample of every run;
- ``results.md``: the tables, and each target of issue 5 as measured, met or not;
- ``results.png``: drain throughput and enqueue -> start latency per system.

See ``bench/README.md`` for what each measurement means.

Usage::

    python bench/run.py [--quick] [--systems a,b] [--workloads w,x] [--repeat R] [--out DIR]
    python bench/run.py --profile memory|sqlite|postgres [--jobs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import attrs
from _report import chart, figures, render, target_rows, to_rst
from _services import DEFAULT_DSN, DEFAULT_REDIS_URL
from _systems import SYSTEMS, WORKLOADS, sizes_of

HERE = os.path.dirname(os.path.abspath(__file__))
#: Where --docs writes: the Performance page includes these two files.
DOCS = os.path.join(os.path.dirname(HERE), "docs", "discussions")
#: The distributions whose versions the results record.
PACKAGES = (
    "jobworker", "huey", "dramatiq", "rq", "redis", "procrastinate", "psycopg", "matplotlib",
)  # fmt: skip
#: Bytes per pending job come out the same to a few bytes on every run, and
#: filling 100,000 jobs is most of a run's time: the memory workload runs once.
MEMORY_REPEAT = 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _servers(dsn: str, redis_url: str) -> dict[str, str]:
    out = {}
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            out["postgresql"] = str(row[0]).split()[0] if row else "?"
    except Exception as exc:  # broad: a missing server is reported, the run goes on
        out["postgresql"] = f"unavailable ({type(exc).__name__})"
    try:
        import redis

        out["redis"] = str(redis.Redis.from_url(redis_url).info("server")["redis_version"])
    except Exception as exc:  # broad: as above
        out["redis"] = f"unavailable ({type(exc).__name__})"
    return out


def machine(dsn: str, redis_url: str) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "servers": _servers(dsn, redis_url),
    }


@attrs.frozen
class Job:
    system: str
    workload: str
    rep: int


def plan(systems: Sequence[str], workloads: Sequence[str], repeat: int) -> list[Job]:
    """Return the runs in order: by repetition, then workload, then system.

    Each repetition runs every workload of every system before the next one
    starts, so drift on a busy machine hits every system and workload of a
    repetition alike, and the ratios within one (4 workers / 1, jobworker /
    a peer) compare runs made minutes apart at most.
    """
    jobs = []
    for rep in range(repeat):
        for workload in workloads:
            if workload == "memory" and rep >= MEMORY_REPEAT:
                continue
            for name in systems:
                if workload not in SYSTEMS[name].na:
                    jobs.append(Job(name, workload, rep))
    return jobs


def run_one(job: Job, args: argparse.Namespace, workdir: str, timeout: float) -> dict[str, Any]:
    """Run *job* in a fresh process; return its result (``ok`` False and the error if it failed)."""
    result_path = os.path.join(workdir, f"{job.system}-{job.workload}-{job.rep}.json")
    config = {
        "system": job.system,
        "workload": job.workload,
        "sizes": sizes_of(SYSTEMS[job.system], args.quick),
        "dsn": args.dsn,
        "redis_url": args.redis_url,
        "result_path": result_path,
    }
    base = {"system": job.system, "workload": job.workload, "rep": job.rep}
    stderr_path = result_path + ".err"
    try:
        with open(stderr_path, "w", encoding="utf-8") as err:
            proc = subprocess.run(
                [sys.executable, os.path.join(HERE, "_child.py")],
                input=json.dumps(config),
                text=True,
                stdout=err,
                stderr=err,
                timeout=timeout,
                check=False,
            )
    except subprocess.TimeoutExpired:
        return {**base, "ok": False, "error": f"timed out after {timeout:.0f} s"}
    try:
        with open(result_path, encoding="utf-8") as f:
            result: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        with open(stderr_path, encoding="utf-8") as f:
            tail = f.read()[-500:]
        result = {"ok": False, "error": f"exit status {proc.returncode}: {tail}"}
    return {**base, **result}


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument(
        "--systems",
        type=lambda t: _names(t, list(SYSTEMS), "systems"),
        default=list(SYSTEMS),
        help=f"comma-separated, from: {', '.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument(
        "--workloads",
        type=lambda t: _names(t, WORKLOADS, "workloads"),
        default=list(WORKLOADS),
        help=f"comma-separated, from: {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--repeat", type=int, help="repetitions (3; --quick: 1)")
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results"), help="output directory (bench/results)"
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("JOBWORKER_TEST_POSTGRES", DEFAULT_DSN),
        help="PostgreSQL server; each run uses a schema of its own and drops it "
        "(default: $JOBWORKER_TEST_POSTGRES or the local server, database test)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="Redis database the runs own and flush (default: local Redis, database 11)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds one run may take (600)"
    )
    parser.add_argument(
        "--docs",
        action="store_true",
        help="also write the chart and the tables into the docs' Performance page files",
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="run nothing: write the table and chart (and with --docs the docs' files) "
        "again from the results.json of an earlier run",
    )
    parser.add_argument(
        "--profile",
        choices=["memory", "sqlite", "postgres"],
        help="only profile a one-worker drain of a jobworker queue with pyinstrument",
    )
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs for --profile (5000)")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    return args


def profile(args: argparse.Namespace) -> int:
    from _services import services
    from sys_jobworker import profile_drain

    with services(args.dsn, args.redis_url) as s:
        print(profile_drain(s, args.profile, args.jobs))
    return 0


def write(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the JSON, the Markdown and the chart into --out, and with --docs the docs' files."""
    report["targets"] = target_rows(figures(report))
    paths = {ext: os.path.join(args.out, f"results.{ext}") for ext in ("json", "md", "png")}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    markdown = render(report)
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown)
    chart(report, paths["png"])
    if args.docs:
        shutil.copyfile(paths["png"], os.path.join(DOCS, "performance.png"))
        with open(os.path.join(DOCS, "performance-results.txt"), "w", encoding="utf-8") as f:
            f.write(to_rst(markdown))
    print(markdown)
    print(f"wrote {', '.join(paths.values())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        return profile(args)
    if args.render:
        with open(args.render, encoding="utf-8") as f:
            report = json.load(f)
        os.makedirs(args.out, exist_ok=True)
        write(report, args)
        return 0
    os.makedirs(args.out, exist_ok=True)
    jobs = plan(args.systems, args.workloads, args.repeat)
    report: dict[str, Any] = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(args.dsn, args.redis_url),
        "options": {
            "quick": args.quick,
            "repeat": args.repeat,
            "memory_repeat": min(args.repeat, MEMORY_REPEAT),
            "workloads": args.workloads,
        },
        "systems": {
            name: {
                **attrs.asdict(SYSTEMS[name], filter=lambda a, _: a.name != "sizes"),
                "sizes": sizes_of(SYSTEMS[name], args.quick),
            }
            for name in args.systems
        },
        "runs": [],
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jobworker-bench-runs-") as workdir:
        for k, job in enumerate(jobs, 1):
            t = time.perf_counter()
            result = run_one(job, args, workdir, args.timeout)
            report["runs"].append(result)
            status = "ok" if result["ok"] else f"FAILED: {result['error'][:200]}"
            print(
                f"[{k}/{len(jobs)}] {job.workload} #{job.rep + 1} {job.system}: "
                f"{time.perf_counter() - t:.1f} s {status}",
                file=sys.stderr,
                flush=True,
            )
    report["seconds"] = time.perf_counter() - t0
    write(report, args)
    return 0 if all(r["ok"] for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
