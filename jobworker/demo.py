"""The demo: a few hundred typed jobs, two kinds of worker, live progress.

Run it with ``python -m jobworker demo``. In a few seconds it shows what the
library does under load: jobs of two registered types (``generation`` and
``detection``) whose params, progress and results are frozen attrs classes;
workers that report progress and check for cancellation; retries with backoff
that end complete or, past ``max_retries``, failed; and jobs cancelled while
pending and while running. It ends with a summary and checks that every job
ended as planned and that the counts add up.

The seed decides everything but the timings: which jobs fail and how often,
and which are cancelled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, ClassVar, Final, Literal, TextIO

import attrs

import jobworker as jw

__all__ = [
    "DemoSummary",
    "DemoWorker",
    "DetectionParams",
    "DetectionProgress",
    "DetectionResult",
    "DetectionWorker",
    "GenerationParams",
    "GenerationProgress",
    "GenerationResult",
    "GenerationWorker",
    "SimulatedOutageError",
    "WorkerSummary",
    "build_registry",
    "format_summary",
    "run_demo",
]

MAX_RETRIES: Final = 3
#: Small delays, so that a job failing four times costs a third of a second.
RETRY_POLICY: Final = jw.RetryPolicy(base=0.05, max_delay=0.2)
#: Simulated latency of one step of a job (a model call, a service request).
STEP_LATENCY: Final = 0.002
#: Steps of a job that is to be cancelled while it runs: seconds of work, so
#: the cancel lands long before it could finish.
LONG_STEPS: Final = 1000

Scenario = Literal["ok", "flaky", "fail", "cancel_pending", "cancel_running"]
#: Share of the jobs per scenario; the rest succeed at the first attempt.
_QUOTAS: Final[tuple[tuple[Scenario, float], ...]] = (
    ("flaky", 0.15),
    ("fail", 0.05),
    ("cancel_pending", 0.05),
    ("cancel_running", 0.03),
)
_WORDS_PER_STEP: Final = 8
_CANDIDATES_PER_STEP: Final = 4
_USER: Final = "demo@example.com"
_TOPICS: Final = ("tide pools", "bridges", "sourdough", "comets", "typesetting", "lichens", "jazz")
_VOCABULARY: Final = ("the", "a", "river", "light", "slowly", "stone", "under", "old", "sings")
_ENTITY_TYPES: Final = ("Person", "Place", "Organization", "Date", "Event")
#: Seconds the workers get to finish their current jobs once the run is over.
_STOP_TIMEOUT: Final = 30.0


# -- the two job types ---------------------------------------------------------------------


@attrs.frozen
class GenerationParams:
    """What to write; the attempts that fail first make the demo's retries."""

    title: str
    prompt: str
    words: int
    flaky_attempts: int = 0


@attrs.frozen
class GenerationProgress:
    """The guide's generation progress: a stage, a percentage and a message."""

    stage: str
    percentage: int
    message: str


@attrs.frozen
class GenerationResult:
    """The resource a generation job wrote."""

    resource_name: str
    words: int


@attrs.frozen
class DetectionParams:
    """Which resource to scan, for which entity types, over how many candidate spans."""

    resource_id: str
    entity_types: tuple[str, ...]
    candidates: int
    flaky_attempts: int = 0


@attrs.frozen
class DetectionProgress:
    """The guide's detection progress."""

    processed_entities: int
    total_entities: int
    percentage: int


@attrs.frozen
class DetectionResult:
    """The entities found, as ``"Type:id"`` strings."""

    entities: tuple[str, ...]


def build_registry() -> jw.JobTypeRegistry:
    """Return a strict registry of the demo's two job types."""
    registry = jw.JobTypeRegistry(strict=True)
    registry.register(
        "generation", params=GenerationParams, progress=GenerationProgress, result=GenerationResult
    )
    registry.register(
        "detection", params=DetectionParams, progress=DetectionProgress, result=DetectionResult
    )
    return registry


# -- the workers -----------------------------------------------------------------------------


class SimulatedOutageError(Exception):
    """The planned failure of an attempt: a service that is down, for a while or for good."""


class DemoWorker(jw.JobWorker):
    """What both demo workers share: a name, one job type, a start hook, simulated I/O.

    :param on_start: called in the worker thread as each attempt starts.
    :param hangup: set when the demo is cut short; simulated I/O then returns at once.
    """

    job_type: ClassVar[str]

    def __init__(
        self,
        queue: jw.JobQueue,
        number: int,
        *,
        on_start: Callable[[jw.JobId], None],
        hangup: threading.Event,
    ) -> None:
        self._name = f"{self.job_type}-{number}"
        self._on_start = on_start
        self._hangup = hangup
        super().__init__(
            queue,
            job_types={self.job_type},
            retry_policy=RETRY_POLICY,
            progress_interval=0.01,
        )

    def get_worker_name(self) -> str:
        """Return ``<job type>-<number>``."""
        return self._name

    def can_process_job(self, job: jw.AnyJob) -> bool:
        """Take jobs of this worker's type only."""
        return job.metadata.type == self.job_type

    def on_job_start(self, job: jw.RunningJob[Any, Any]) -> None:
        """Tell the demo which job started (the operator cancels some of them)."""
        self._on_start(job.metadata.id)

    def wait_for_io(self) -> None:
        """Stand in for a network call: block for one step's latency."""
        self._hangup.wait(STEP_LATENCY)


class GenerationWorker(DemoWorker):
    """Write an article of ``words`` words, reporting the guide's stages."""

    job_type = "generation"

    def execute_job(self, job: jw.AnyJob) -> GenerationResult:
        """Outline, draft word by word (checking for cancellation), then save."""
        if not (jw.is_running_job(job) and isinstance(job.params, GenerationParams)):
            raise jw.PermanentJobError(f"not a running generation job: {job.metadata.id}")
        running: jw.RunningJob[GenerationParams, GenerationProgress] = job
        params = running.params
        attempt = running.metadata.retry_count + 1
        running = self.report_progress(
            running, GenerationProgress("outlining", 0, f"attempt {attempt}"), force=True
        )
        self.wait_for_io()
        if running.metadata.retry_count < params.flaky_attempts:
            raise SimulatedOutageError(f"model endpoint unavailable (attempt {attempt})")
        words: list[str] = []
        digest = hashlib.sha256(params.prompt.encode()).digest()
        while len(words) < params.words:
            if self.is_cancelled(running):
                # Stop early: the queue already holds the job as cancelled.
                raise jw.JobCancelledError(f"cancelled after {len(words)} words")
            digest = hashlib.sha256(digest).digest()
            words.extend(_VOCABULARY[byte % len(_VOCABULARY)] for byte in digest[:_WORDS_PER_STEP])
            self.wait_for_io()
            done = min(len(words), params.words)
            running = self.report_progress(
                running,
                GenerationProgress("drafting", 100 * done // params.words, f"{done} words"),
            )
        self.report_progress(running, GenerationProgress("saving", 100, "saving"), force=True)
        self.wait_for_io()
        return GenerationResult(resource_name=params.title, words=params.words)


class DetectionWorker(DemoWorker):
    """Scan a resource's candidate spans for entities of the requested types."""

    job_type = "detection"

    def execute_job(self, job: jw.AnyJob) -> DetectionResult:
        """Scan in batches, reporting progress and checking for cancellation."""
        if not (jw.is_running_job(job) and isinstance(job.params, DetectionParams)):
            raise jw.PermanentJobError(f"not a running detection job: {job.metadata.id}")
        running: jw.RunningJob[DetectionParams, DetectionProgress] = job
        params = running.params
        total = params.candidates
        entities: list[str] = []
        for first in range(0, total, _CANDIDATES_PER_STEP):
            if self.is_cancelled(running):
                raise jw.JobCancelledError(f"cancelled after {first} of {total} candidates")
            # Fail halfway through, so that a failed attempt has cost something.
            if first >= total // 2 and running.metadata.retry_count < params.flaky_attempts:
                attempt = running.metadata.retry_count + 1
                raise SimulatedOutageError(f"entity service rate-limited us (attempt {attempt})")
            self.wait_for_io()
            last = min(total, first + _CANDIDATES_PER_STEP)
            for span in range(first, last):
                digest = hashlib.sha256(f"{params.resource_id}:{span}".encode()).digest()
                if digest[0] < 64:  # about one candidate in four is an entity
                    kind = params.entity_types[digest[1] % len(params.entity_types)]
                    entities.append(f"{kind}:{digest[2:5].hex()}")
            running = self.report_progress(
                running, DetectionProgress(last, total, 100 * last // total)
            )
        return DetectionResult(entities=tuple(entities))


# -- the plan: which job does what, decided by the seed --------------------------------------


@attrs.frozen
class _Planned:
    job: jw.PendingJob[Any]
    scenario: Scenario

    def problem(self, job: jw.AnyJob | None) -> str | None:
        """Return how *job* (as it ended) differs from the plan, or ``None``."""
        if self.scenario in ("cancel_pending", "cancel_running"):
            started = self.scenario == "cancel_running"
            expected = f"cancelled while {'running' if started else 'pending'}"
            ok = isinstance(job, jw.CancelledJob) and (job.started_at is not None) == started
        elif self.scenario == "fail":
            expected = f"failed after {MAX_RETRIES} retries"
            ok = isinstance(job, jw.FailedJob) and job.metadata.retry_count == MAX_RETRIES
        else:
            retries = self.job.params.flaky_attempts
            expected = f"complete after {retries} retries"
            ok = isinstance(job, jw.CompleteJob) and job.metadata.retry_count == retries
        if ok:
            return None
        got = "missing" if job is None else f"{job.status}, retry_count {job.metadata.retry_count}"
        return f"job {self.job.metadata.id}: expected {expected}, got {got}"


def _plan(jobs: int, rng: random.Random) -> list[_Planned]:
    """Return *jobs* jobs with at least one of each scenario (as far as *jobs* allows)."""
    scenarios: list[Scenario] = []
    for scenario, share in _QUOTAS:
        scenarios += [scenario] * min(jobs - len(scenarios), max(1, round(jobs * share)))
    scenarios += ["ok"] * (jobs - len(scenarios))
    rng.shuffle(scenarios)
    planned = []
    for index, scenario in enumerate(scenarios):
        # Attempts that fail before one succeeds: past max_retries, none does.
        flaky = 0
        if scenario == "flaky":
            flaky = rng.randint(1, MAX_RETRIES)
        elif scenario == "fail":
            flaky = MAX_RETRIES + 1
        steps = LONG_STEPS if scenario == "cancel_running" else rng.randint(5, 20)
        if rng.random() < 0.5:
            topic = rng.choice(_TOPICS)
            job_type, job_id = "generation", f"gen-{index:04d}"
            params: Any = GenerationParams(
                title=topic.title(),
                prompt=f"Write a short article about {topic}.",
                words=steps * _WORDS_PER_STEP,
                flaky_attempts=flaky,
            )
        else:
            job_type, job_id = "detection", f"det-{index:04d}"
            params = DetectionParams(
                resource_id=f"doc-{rng.randrange(10_000):04d}",
                entity_types=tuple(rng.sample(_ENTITY_TYPES, k=rng.randint(1, 3))),
                candidates=steps * _CANDIDATES_PER_STEP,
                flaky_attempts=flaky,
            )
        job = jw.new_job(job_type, params, id=job_id, user_id=_USER, max_retries=MAX_RETRIES)
        planned.append(_Planned(job, scenario))
    return planned


# -- the threads around the workers ---------------------------------------------------------


class _Operator:
    """Cancel the planned jobs as they start, from a thread of its own, like a user would."""

    def __init__(self, queue: jw.JobQueue, targets: Collection[str]) -> None:
        self._queue = queue
        self._targets = frozenset(targets)
        self._cond = threading.Condition()
        self._due: deque[str] = deque()  # guarded by _cond
        self._closed = False  # guarded by _cond
        self._thread = threading.Thread(target=self._run, name="jobworker-demo-operator")

    def start(self) -> None:
        self._thread.start()

    def job_started(self, job_id: jw.JobId) -> None:
        """Queue a cancel if the plan says so; called from worker threads."""
        if job_id in self._targets:
            with self._cond:
                self._due.append(job_id)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job_id = self._due.popleft()
            # Not under _cond: cancel_job takes the queue's lock.
            try:
                self._queue.cancel_job(job_id)
            except jw.QueueClosedError:
                return


class _Watcher:
    """Set ``done`` once every job has ended and ``get_stats`` shows none left."""

    def __init__(self, queue: jw.JobQueue, job_ids: Sequence[str]) -> None:
        self._queue = queue
        self._job_ids = job_ids
        self.done = threading.Event()
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="jobworker-demo-watcher")

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            for job_id in self._job_ids:
                # Blocks on the queue's Condition until the job ends: no polling.
                self._queue.wait_for_job(job_id)
            stats = self._queue.get_stats()
        except jw.QueueClosedError:
            return  # the demo was cut short and closed the queue
        if stats["pending"] + stats["running"] == 0:
            self.finished_at = time.monotonic()
            self.done.set()


class _LastWarning(logging.Handler):
    """Keep the library's latest warning (usually a failed attempt) for the display."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


# -- the display -------------------------------------------------------------------------------

_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_COLORS: Final = {"running": "36", "complete": "32", "failed": "31", "cancelled": "33"}
_MAX_WORKER_LINES: Final = 8


def _fit(line: str, width: int) -> str:
    """Cut *line* to *width* visible characters, keeping its escape codes whole."""
    texts, codes = _ANSI.split(line), _ANSI.findall(line)
    pieces = []
    for index, text in enumerate(texts):
        pieces.append(text[: max(0, width)])
        width -= len(pieces[-1])
        if index < len(codes):
            pieces.append(codes[index])
    return "".join(pieces)


def _describe(progress: object) -> str:
    if isinstance(progress, GenerationProgress):
        return f"{progress.stage:<9} {progress.percentage:3d}%  {progress.message}"
    if isinstance(progress, DetectionProgress):
        return (
            f"detecting {progress.percentage:3d}%  "
            f"{progress.processed_entities}/{progress.total_entities} candidates"
        )
    return "starting"


class _Display:
    """Live progress: a block redrawn in place on a terminal, a line a second otherwise."""

    def __init__(
        self,
        out: TextIO,
        queue: jw.JobQueue,
        team: Sequence[DemoWorker],
        warnings: _LastWarning,
        *,
        live: bool,
    ) -> None:
        self.out = out
        self.live = live
        self.interval = 0.1 if live else 1.0
        self._queue = queue
        self._team = team
        self._warnings = warnings
        stats = queue.get_stats()
        self._total = sum(stats.values())
        # Jobs that ended before the workers started do not count towards the rate.
        self._settled = self._total - stats["pending"] - stats["running"]
        self._color = live and "NO_COLOR" not in os.environ
        utf8 = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
        self._bar = ("█", "░") if utf8 else ("#", "-")
        self._drawn = 0  # lines of the block on screen

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._color else text

    def _counts(self, stats: dict[str, int]) -> str:
        return "  ".join(
            self._paint(f"{status} {stats[status]}", _COLORS.get(status, "2"))
            for status in jw.STATUSES
        )

    def show(self, elapsed: float) -> None:
        """Draw the current state once, *elapsed* seconds after the workers started."""
        stats = self._queue.get_stats()
        ended = self._total - stats["pending"] - stats["running"]
        rate = (ended - self._settled) / elapsed if elapsed > 0 else 0.0
        share = ended / self._total
        if not self.live:
            print(
                f"{elapsed:6.1f}s  {ended}/{self._total} ended ({share:.0%})  "
                f"{self._counts(stats)}  {rate:.1f} jobs/s",
                file=self.out,
                flush=True,
            )
            return
        width = shutil.get_terminal_size().columns - 1
        bar_width = max(10, min(40, width - 40))
        filled = round(bar_width * share)
        bar = self._paint(self._bar[0] * filled, "32") + self._bar[1] * (bar_width - filled)
        activity = [_activity(self._queue, worker) for worker in self._team]
        lines = [
            f"[{bar}] {share:4.0%}  {ended}/{self._total}  {rate:6.1f} jobs/s  {elapsed:5.1f} s",
            self._counts(stats),
            *(f"  {line}" for line in activity[:_MAX_WORKER_LINES]),
        ]
        if len(activity) > _MAX_WORKER_LINES:
            lines.append(f"  ... and {len(activity) - _MAX_WORKER_LINES} more workers")
        last = self._warnings.message or "none yet"
        lines.append(self._paint(f"last warning: {last}", "2"))
        # Back to the top of the block, clear to the end of the screen, redraw in one write.
        home = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else "\x1b[?25l"
        self.out.write(home + "".join(_fit(line, width) + "\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        if self.live:
            self.out.write("\x1b[?25h")  # show the cursor again
            self.out.flush()


def _activity(queue: jw.JobQueue, worker: jw.JobWorker) -> str:
    """Return what *worker* is doing: its current job and that job's progress."""
    current = worker.get_metrics().current_job
    job = None if current is None else queue.get_job(current)
    if not isinstance(job, jw.RunningJob):
        return f"{worker.get_worker_name():<14} idle"
    return f"{worker.get_worker_name():<14} {job.metadata.id}  {_describe(job.progress)}"


# -- the summary --------------------------------------------------------------------------------


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


def _ended(queue: jw.JobQueue) -> int:
    stats = queue.get_stats()
    return sum(stats.values()) - stats["pending"] - stats["running"]


# -- the run ----------------------------------------------------------------------------------


def run_demo(
    *,
    jobs: int = 300,
    workers: int = 4,
    seed: int | None = None,
    out: TextIO | None = None,
    quiet: bool = False,
    as_json: bool = False,
    live: bool | None = None,
    timeout: float = 300.0,
) -> DemoSummary:
    """Run the demo and return its summary, printing progress and the summary to *out*.

    :param jobs: how many jobs to create (at least 1).
    :param workers: how many workers, split between the two job types (at least 2).
    :param seed: decides which jobs fail and which are cancelled; random if ``None``.
    :param out: where to print; ``sys.stdout`` by default.
    :param quiet: print the summary only, no live progress.
    :param as_json: print the summary as one JSON line instead of the table.
    :param live: redraw in place with ANSI codes; by default, when *out* is a terminal.
    :param timeout: seconds to wait for every job to end before giving up.

    Blocks until the jobs end or *timeout* passes. Every worker is stopped and
    the queue closed before it returns, also when it raises
    (``KeyboardInterrupt`` included).

    :raises ValueError: *jobs*, *workers* or *timeout* is out of range.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs!r}")
    if workers < 2:
        raise ValueError(f"workers must be >= 2 (one per job type), got {workers!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout!r}")
    out = sys.stdout if out is None else out
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    plan = _plan(jobs, random.Random(seed))
    queue = jw.MemoryQueue(registry=build_registry())
    operator = _Operator(queue, [p.job.metadata.id for p in plan if p.scenario == "cancel_running"])
    hangup = threading.Event()
    team: list[DemoWorker] = [
        (GenerationWorker if number % 2 else DetectionWorker)(
            queue, (number + 1) // 2, on_start=operator.job_started, hangup=hangup
        )
        for number in range(1, workers + 1)
    ]
    runner = jw.Runner(team, stop_timeout=_STOP_TIMEOUT)
    watcher = _Watcher(queue, [p.job.metadata.id for p in plan])
    last_warning = _LastWarning()
    library_log = logging.getLogger("jobworker")
    # Failed attempts are logged as warnings: show them in the display rather
    # than let logging's last-resort handler print them over it.
    library_log.addHandler(last_warning)
    display: _Display | None = None
    try:
        for planned in plan:
            queue.create_job(planned.job)
        # Cancelled before any worker starts, so these never run, whatever the timing.
        for planned in plan:
            if planned.scenario == "cancel_pending":
                queue.cancel_job(planned.job.metadata.id)
        settled = _ended(queue)
        if not quiet:
            live = out.isatty() if live is None else live
            display = _Display(out, queue, team, last_warning, live=live)
            kinds = sum(p.job.metadata.type == "generation" for p in plan)
            print(
                f"jobworker demo: {jobs} jobs ({kinds} generation, {jobs - kinds} detection), "
                f"{workers} workers, seed {seed}",
                file=out,
                flush=True,
            )
        operator.start()
        started = time.monotonic()
        runner.start()
        watcher.start()
        deadline = started + timeout
        interval = display.interval if display is not None else timeout
        # Wakes at once when the last job ends, else once per frame.
        while not watcher.done.wait(max(0.0, min(interval, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            if display is not None:
                display.show(time.monotonic() - started)
        finished = watcher.finished_at if watcher.finished_at is not None else time.monotonic()
        if display is not None:
            display.show(finished - started)
        # Counted before the workers stop: what ends while they stop is not in the rate.
        ended_in_run = _ended(queue) - settled
        problems = [] if watcher.done.is_set() else [f"timed out after {timeout:g} s"]
        hangup.set()
        if not runner.stop():
            problems.append(f"some workers did not stop within {_STOP_TIMEOUT:g} s")
        summary = _summarize(
            plan,
            queue,
            team,
            seed=seed,
            elapsed=finished - started,
            ended_in_run=ended_in_run,
            extra_problems=problems,
        )
    finally:
        hangup.set()
        runner.stop()
        operator.close()
        queue.close()  # releases the watcher if the run was cut short
        watcher.join()
        operator.join()
        library_log.removeHandler(last_warning)
        if display is not None:
            display.close()
    if as_json:
        print(json.dumps(summary.to_dict(), separators=(",", ":")), file=out, flush=True)
    else:
        if not quiet:
            print(file=out)
        print(format_summary(summary), file=out, flush=True)
    return summary
