"""How the demo ended: the summary, read from the queue and the workers, cross-checked, as text.

The counts are taken twice, from the jobs and from the workers' metrics, and
any disagreement or job that did not end as planned becomes a problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

import jobworker as jw

from .jobs import MAX_RETRIES, DemoWorker, _Planned

__all__ = ["DemoSummary", "WorkerSummary", "format_summary"]


@attrs.frozen
class WorkerSummary:
    """One worker's counters at the end of the run."""

    name: str
    processed: int
    errors: int
    error_rate: float
    retried: int
    failed: int
    cancelled: int


@attrs.frozen
class DemoSummary:
    """How the demo's jobs ended; ``ok`` when every job ended as planned and the counts add up."""

    jobs: int
    workers: int
    seed: int
    complete: int
    complete_after_retries: int
    failed: int
    cancelled: int
    cancelled_pending: int
    cancelled_running: int
    unfinished: int
    attempts: int
    retries: int
    elapsed: float
    jobs_per_second: float
    per_worker: tuple[WorkerSummary, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Return whether the run found no problem."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-safe dict, ``ok`` included."""
        return {
            **attrs.asdict(self, recurse=False),
            "per_worker": [attrs.asdict(worker) for worker in self.per_worker],
            "problems": list(self.problems),
            "ok": self.ok,
        }


def _summarize(
    plan: Sequence[_Planned],
    queue: jw.JobQueue,
    workers: Sequence[DemoWorker],
    *,
    seed: int,
    elapsed: float,
    ended_in_run: int,
    extra_problems: Sequence[str],
) -> DemoSummary:
    """Read the final state of every job and worker, and cross-check the counts."""
    jobs = [queue.get_job(planned.job.metadata.id) for planned in plan]
    stats = queue.get_stats()
    metrics = [worker.get_metrics() for worker in workers]
    ended = [job for job in jobs if job is not None]
    mismatches = [
        problem
        for planned, job in zip(plan, jobs, strict=True)
        if (problem := planned.problem(job)) is not None
    ]
    complete, failed = stats["complete"], stats["failed"]
    started = [job for job in ended if getattr(job, "started_at", None) is not None]
    cancelled_running = sum(isinstance(job, jw.CancelledJob) for job in started)
    retries = sum(job.metadata.retry_count for job in ended)
    attempts = sum(m.processed + m.retried + m.failed + m.cancelled + m.lost for m in metrics)
    # Each total is counted twice, from the jobs and from the workers: they must agree.
    checks = {
        "jobs ended": (complete + failed + stats["cancelled"], len(plan)),
        "complete jobs vs worker 'processed'": (complete, sum(m.processed for m in metrics)),
        "failed jobs vs worker 'failed'": (failed, sum(m.failed for m in metrics)),
        "cancelled while running vs worker 'cancelled'": (
            cancelled_running,
            sum(m.cancelled for m in metrics),
        ),
        "retries of the jobs vs worker 'retried'": (retries, sum(m.retried for m in metrics)),
        "attempts of the jobs vs of the workers": (
            sum(1 + job.metadata.retry_count for job in started),
            attempts,
        ),
    }
    problems = list(extra_problems)
    problems += [f"{name}: {a} != {b}" for name, (a, b) in checks.items() if a != b]
    problems += mismatches[:5]
    if len(mismatches) > 5:
        problems.append(f"... and {len(mismatches) - 5} more jobs not as planned")
    return DemoSummary(
        jobs=len(plan),
        workers=len(workers),
        seed=seed,
        complete=complete,
        complete_after_retries=sum(
            isinstance(job, jw.CompleteJob) and job.metadata.retry_count > 0 for job in ended
        ),
        failed=failed,
        cancelled=stats["cancelled"],
        cancelled_pending=stats["cancelled"] - cancelled_running,
        cancelled_running=cancelled_running,
        unfinished=stats["pending"] + stats["running"],
        attempts=attempts,
        retries=retries,
        elapsed=round(elapsed, 3),
        jobs_per_second=round(ended_in_run / elapsed, 1) if elapsed > 0 else 0.0,
        per_worker=tuple(
            WorkerSummary(
                name=worker.get_worker_name(),
                processed=m.processed,
                errors=m.errors,
                error_rate=round(m.error_rate, 4),
                retried=m.retried,
                failed=m.failed,
                cancelled=m.cancelled,
            )
            for worker, m in zip(workers, metrics, strict=True)
        ),
        problems=tuple(problems),
    )


def format_summary(summary: DemoSummary) -> str:
    """Return the summary as a plain-text table."""
    s = summary
    total = s.complete + s.failed + s.cancelled
    rows = [
        ("complete", s.complete, f"{s.complete_after_retries} after retries"),
        ("failed after retries", s.failed, f"each ran {1 + MAX_RETRIES} times"),
        (
            "cancelled",
            s.cancelled,
            f"{s.cancelled_pending} while pending, {s.cancelled_running} while running",
        ),
        ("total", total, "adds up" if total == s.jobs else f"expected {s.jobs}"),
    ]
    lines = [f"Summary: {s.jobs} jobs, {s.workers} workers, seed {s.seed}", ""]
    lines += [f"  {name:<22}{count:>7}   {note}" for name, count, note in rows]
    if s.unfinished:
        lines.append(f"  {'not ended':<22}{s.unfinished:>7}")
    lines += [
        "",
        f"  {'attempts':<22}{s.attempts:>7}",
        f"  {'retries':<22}{s.retries:>7}",
        f"  {'elapsed':<22}{s.elapsed:>7.2f}   s",
        f"  {'throughput':<22}{s.jobs_per_second:>7.1f}   jobs/s",
        "",
        f"  {'worker':<16}{'processed':>10}{'errors':>8}{'error rate':>12}{'cancelled':>11}",
    ]
    lines += [
        f"  {w.name:<16}{w.processed:>10}{w.errors:>8}{w.error_rate:>12.1%}{w.cancelled:>11}"
        for w in s.per_worker
    ]
    lines.append("")
    if s.ok:
        lines.append("Result: OK, every job ended as planned and the counts add up.")
    else:
        lines.append("Result: PROBLEMS")
        lines += [f"  - {problem}" for problem in s.problems]
    return "\n".join(lines)
