"""Claim throughput of the memory queue with no limits declared, against a baseline commit.

Limits and pauses must cost nothing to a queue that uses neither. This
script claims the same backlog with the working tree's jobworker and with
the ``jobworker`` package of a baseline commit (``main`` by default,
exported with ``git archive``), each run in a fresh process, the variants
interleaved in every repetition so a busy spell hits them alike, and
prints the median claims a second of each and their ratio. A third variant,
the working tree with a limit declared on a type the backlog does not
have, shows the cost of the limited path (figures, not a target).

    .venv/bin/python bench/limits.py                 # 7 repetitions of 5 x 20,000 claims
    .venv/bin/python bench/limits.py --baseline HEAD~3 --jobs 20000 --repeat 5

The claims run in one thread with ``poll_next_pending_job(timeout=0)``,
after the jobs are created (creation is not timed); each process drains
five backlogs and keeps its fastest, so a busy spell on a shared machine
costs a round, not the figure.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
import jobworker as jw

jobs, limited = int(sys.argv[1]), sys.argv[2] == "limited"
options = {}
if limited:
    registry = jw.JobTypeRegistry()
    registry.set_limits("elsewhere", concurrency=2)
    options["registry"] = registry
best = float("inf")
for _ in range(5):
    queue = jw.MemoryQueue(**options)
    for n in range(jobs):
        queue.create_job(jw.new_job("bench", {"n": n}))
    began = time.perf_counter()
    claimed = 0
    while queue.poll_next_pending_job(timeout=0) is not None:
        claimed += 1
    best = min(best, time.perf_counter() - began)
    assert claimed == jobs, claimed
print(json.dumps({"per_second": jobs / best}))
"""


def export(ref: str, into: pathlib.Path) -> pathlib.Path:
    """Write the ``jobworker`` package of commit *ref* under *into*; return the directory."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "jobworker"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run(path: pathlib.Path, jobs: int, mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(jobs), mode],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(path), "PATH": ""},
        cwd=path,
    ).stdout
    return float(json.loads(out)["per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="the commit to compare with")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = export(args.baseline, pathlib.Path(tmp))
        variants = {
            f"{args.baseline} (no limits)": (baseline, "plain"),
            "this tree (no limits)": (ROOT, "plain"),
            "this tree (a limit on another type)": (ROOT, "limited"),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for rep in range(args.repeat):
            for name, (path, mode) in variants.items():
                samples[name].append(run(path, args.jobs, mode))
            print(f"repetition {rep + 1}/{args.repeat} done", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians[f"{args.baseline} (no limits)"]
    print(f"claims a second, median of {args.repeat} processes, best of 5 x {args.jobs:,}:")
    for name, value in medians.items():
        low, high = min(samples[name]), max(samples[name])
        print(f"  {name:40} {value:>10,.0f} [{low:,.0f}-{high:,.0f}]  ratio {value / base:.3f}")


if __name__ == "__main__":
    main()
