"""The demo's jobs: two typed job types, their workers, and the seeded plan.

``generation`` and ``detection`` jobs have frozen attrs params, progress and
results, registered in a strict registry by :func:`build_registry`. Their
workers simulate I/O, report progress, check for cancellation and fail on
purpose as the plan says. The plan decides, from the seed alone, which job
fails, how often, and which is cancelled.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final, Literal

import attrs

import jobworker as jw

__all__ = [
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
    "build_registry",
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
