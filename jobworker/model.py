"""Job states, metadata, type guards and the transition functions.

This module is the state machine. Every backend stores what these pure
functions return, so no backend can invent its own semantics::

    pending --claim--> running --complete--> complete
       |                  |  \\--fail------> failed
       |                  |   \\--retry----> pending   (retry_count + 1)
       +----cancel--------+----cancel-----> cancelled

    failed --requeue--> pending   (an operator's retry: retry_count reset to 0)

``complete``, ``failed`` and ``cancelled`` are terminal: a terminal job never
changes again on its own. The one way back is :func:`requeue`, which an
operator asks for (``jobworker retry``); a cancelled job stays cancelled.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import os
import uuid
from typing import (
    Any,
    Final,
    Generic,
    Literal,
    NewType,
    TypeGuard,
    TypeVar,
    get_args,
)

import attrs

from .attempts import Attempt, AttemptError, append, clean_text
from .errors import (
    InvalidJobError,
    InvalidTransitionError,
    LeaseLostError,
    StaleJobError,
    safe_repr,
    safe_str,
)
from .unique import DEFAULT_UNIQUE_STATES, Unique, check_unique, holds_key

__all__ = [
    "STATUSES",
    "TERMINAL_STATUSES",
    "WORKER_LOST",
    "AnyJob",
    "Attempt",
    "AttemptError",
    "CancelledJob",
    "Claim",
    "CompleteJob",
    "FailedJob",
    "JobId",
    "JobMetadata",
    "JobStatus",
    "PendingJob",
    "RunningJob",
    "UserId",
    "apply_update",
    "cancel",
    "check_time_limit",
    "clean_text",
    "complete",
    "describe_error",
    "fail",
    "fail_or_retry",
    "is_cancelled_job",
    "is_complete_job",
    "is_failed_job",
    "is_pending_job",
    "is_running_job",
    "holds_unique_key",
    "is_terminal",
    "job_id",
    "new_claim",
    "new_job",
    "release",
    "requeue",
    "start",
    "text_problem",
    "user_id",
    "validate_job",
]

JobId = NewType("JobId", str)
UserId = NewType("UserId", str)

JobStatus = Literal["pending", "running", "complete", "failed", "cancelled"]
STATUSES: Final[tuple[JobStatus, ...]] = get_args(JobStatus)
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"complete", "failed", "cancelled"})

#: The error recorded on an attempt whose lease expired.
WORKER_LOST: Final = "WorkerLost: the worker stopped renewing its lease"

#: Stored error messages are cut to this many characters.
MAX_ERROR_LENGTH: Final = 2000

P = TypeVar("P")
G = TypeVar("G")
R = TypeVar("R")

_ALLOWED: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("pending", "running"),
        ("running", "running"),
        ("running", "complete"),
        ("running", "pending"),
        ("running", "failed"),
        ("pending", "cancelled"),
        ("running", "cancelled"),
        ("failed", "pending"),
    }
)


def job_id(value: str) -> JobId:
    """Return *value* as a :data:`JobId`; refuse an empty or non-string id."""
    if not isinstance(value, str) or not value:
        raise InvalidJobError(f"a job id must be a non-empty string, got {safe_repr(value)}")
    return JobId(value)


def user_id(value: str) -> UserId:
    """Return *value* as a :data:`UserId`; refuse a non-string id."""
    if not isinstance(value, str):
        raise InvalidJobError(f"a user id must be a string, got {safe_repr(value)}")
    return UserId(value)


def _is_aware(value: object) -> bool:
    return isinstance(value, _dt.datetime) and value.utcoffset() is not None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Integers a job carries (counts, priority) fit a 32-bit signed column.
INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1


def text_problem(value: str) -> str | None:
    """Return why no store could hold the text *value*, or ``None`` if every one can.

    Every store takes UTF-8 text without NUL characters: SQLite and
    PostgreSQL refuse the rest, so metadata must not carry it.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode()
    except UnicodeEncodeError:
        return f"is not valid Unicode: {safe_repr(value)}"
    return None


def _check_text(name: str, value: object, *, empty: bool) -> None:
    if not isinstance(value, str) or (not empty and not value):
        kind = "a string" if empty else "a non-empty string"
        raise InvalidJobError(f"metadata.{name} must be {kind}, got {safe_repr(value)}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidJobError(f"metadata.{name} {problem}")


def _check_metadata(meta: JobMetadata) -> None:
    """Raise :class:`InvalidJobError` unless *meta* is consistent."""
    _check_text("id", meta.id, empty=False)
    _check_text("type", meta.type, empty=False)
    _check_text("user_id", meta.user_id, empty=True)
    if not _is_aware(meta.created):
        raise InvalidJobError(
            f"metadata.created must be a timezone-aware datetime, got {safe_repr(meta.created)}"
        )
    for name in ("retry_count", "max_retries"):
        value = getattr(meta, name)
        if not _is_int(value) or not 0 <= value <= INT_MAX:
            raise InvalidJobError(
                f"metadata.{name} must be an int from 0 to {INT_MAX}, got {safe_repr(value)}"
            )
    if meta.retry_count > meta.max_retries:
        raise InvalidJobError(
            f"metadata.retry_count ({meta.retry_count}) exceeds "
            f"metadata.max_retries ({meta.max_retries})"
        )
    if not _is_int(meta.priority) or not INT_MIN <= meta.priority <= INT_MAX:
        raise InvalidJobError(
            f"metadata.priority must be an int from {INT_MIN} to {INT_MAX}, "
            f"got {safe_repr(meta.priority)}"
        )
    if meta.run_after is not None and not _is_aware(meta.run_after):
        raise InvalidJobError(
            "metadata.run_after must be a timezone-aware datetime or None, "
            f"got {safe_repr(meta.run_after)}"
        )
    check_time_limit("metadata.time_limit", meta.time_limit, error=InvalidJobError)
    check_unique(meta.unique_key, meta.unique_states)


def check_time_limit(name: str, value: object, *, error: type[Exception] = ValueError) -> None:
    """Raise *error* unless *value* is ``None`` or a finite number of seconds above 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        ok = False
    else:
        ok = math.isfinite(value) and value > 0
    if not ok:
        raise error(
            f"{name} must be a finite number of seconds > 0 or None, got {safe_repr(value)}"
        )


def _validate_metadata(instance: JobMetadata, attribute: object, value: Any) -> None:
    _check_metadata(instance)


@attrs.frozen
class JobMetadata:
    """What identifies a job and how often it may run.

    The constructor checks every field and raises :class:`InvalidJobError`;
    ``create_job`` checks again, so a value built with validators disabled is
    still refused before it is stored.

    A job runs at most ``1 + max_retries`` times. ``priority`` orders jobs
    (higher first, then oldest ``created``); a job is not claimed before
    ``run_after``. ``time_limit`` is the most seconds one attempt may run
    (``None``: the job type's or the worker's limit applies, if any; see
    :meth:`JobWorker.get_time_limit <jobworker.JobWorker.get_time_limit>`).
    A job with a ``unique_key`` holds it while its status is in
    ``unique_states`` (see :mod:`jobworker.unique`); no two jobs hold one key.
    """

    id: JobId
    type: str
    user_id: UserId
    created: _dt.datetime
    retry_count: int = 0
    max_retries: int = 3
    priority: int = 0
    run_after: _dt.datetime | None = None
    time_limit: float | None = None
    unique_key: str | None = None
    unique_states: frozenset[str] = attrs.field(
        default=DEFAULT_UNIQUE_STATES, validator=_validate_metadata
    )


@attrs.frozen
class Claim:
    """The lease token of one attempt at a running job.

    A write to a running job applies only under the claim it was started
    with; once the lease is lost, the old claim's writes are refused.
    """

    token: str
    worker: str


class _TokenSource:
    """Claim tokens: a random per-process prefix and a counter.

    Unique across processes and machines (64 random bits per process, made
    anew in a forked child) without a system call per claim, which uuid4
    would make, releasing the GIL on every claim.
    """

    def __init__(self) -> None:
        self.reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        # next() on itertools.count is atomic under the GIL.
        return f"{self.prefix}-{next(self.counter):x}"


_tokens = _TokenSource()


def new_claim(worker: str) -> Claim:
    """Return a fresh claim for an attempt by *worker*, with a token never issued before."""
    return Claim(_tokens.next(), clean_text(worker))  # (token, worker)


@attrs.frozen
class PendingJob(Generic[P]):
    """A job waiting to be claimed."""

    metadata: JobMetadata
    params: P
    status: Literal["pending"] = attrs.field(default="pending", init=False)
    #: The attempts made so far (a job waiting to retry: its last error is in ``attempts[-1]``).
    attempts: tuple[Attempt, ...] = ()


@attrs.frozen
class RunningJob(Generic[P, G]):
    """A job claimed by a worker; ``claim`` fences every write of this attempt."""

    metadata: JobMetadata
    params: P
    started_at: _dt.datetime
    claim: Claim
    progress: G | None = None
    status: Literal["running"] = attrs.field(default="running", init=False)
    #: The earlier attempts, which have ended; this one is not among them yet.
    attempts: tuple[Attempt, ...] = ()


@attrs.frozen
class CompleteJob(Generic[P, R]):
    """A job whose last attempt returned ``result``.

    That attempt is ``started_at``, ``completed_at`` and ``worker``;
    ``attempts`` holds the ones before it, which failed.
    """

    metadata: JobMetadata
    params: P
    started_at: _dt.datetime
    completed_at: _dt.datetime
    result: R
    status: Literal["complete"] = attrs.field(default="complete", init=False)
    #: The attempts before the one that completed.
    attempts: tuple[Attempt, ...] = ()
    #: The name of the worker whose attempt completed the job.
    worker: str = ""


@attrs.frozen
class FailedJob(Generic[P]):
    """A job that failed its last allowed attempt.

    ``error`` is the last attempt's error in one line (``"Type: message"``,
    cut to a bounded length); ``attempts`` keeps every attempt's error whole.
    """

    metadata: JobMetadata
    params: P
    started_at: _dt.datetime
    completed_at: _dt.datetime
    error: str
    status: Literal["failed"] = attrs.field(default="failed", init=False)
    #: Every attempt, each with its error (type, message and traceback).
    attempts: tuple[Attempt, ...] = ()


@attrs.frozen
class CancelledJob(Generic[P]):
    """A job cancelled before it finished; ``started_at`` is set if it had started."""

    metadata: JobMetadata
    params: P
    completed_at: _dt.datetime
    started_at: _dt.datetime | None = None
    status: Literal["cancelled"] = attrs.field(default="cancelled", init=False)
    #: The attempts that ended before the job was cancelled.
    attempts: tuple[Attempt, ...] = ()


#: Any job, in any state. Params, progress and result are untyped here; narrow
#: with the type guards and, for typed params, with ``cast``.
AnyJob = (
    PendingJob[Any]
    | RunningJob[Any, Any]
    | CompleteJob[Any, Any]
    | FailedJob[Any]
    | CancelledJob[Any]
)

_JOB_CLASSES: Final = (PendingJob, RunningJob, CompleteJob, FailedJob, CancelledJob)


def is_pending_job(job: AnyJob) -> TypeGuard[PendingJob[Any]]:
    """Return whether *job* is pending."""
    return job.status == "pending"


def is_running_job(job: AnyJob) -> TypeGuard[RunningJob[Any, Any]]:
    """Return whether *job* is running."""
    return job.status == "running"


def is_complete_job(job: AnyJob) -> TypeGuard[CompleteJob[Any, Any]]:
    """Return whether *job* is complete."""
    return job.status == "complete"


def is_failed_job(job: AnyJob) -> TypeGuard[FailedJob[Any]]:
    """Return whether *job* is failed."""
    return job.status == "failed"


def is_cancelled_job(job: AnyJob) -> TypeGuard[CancelledJob[Any]]:
    """Return whether *job* is cancelled."""
    return job.status == "cancelled"


def is_terminal(job: AnyJob) -> bool:
    """Return whether *job* is complete, failed or cancelled."""
    return job.status in TERMINAL_STATUSES


def validate_job(job: object) -> AnyJob:
    """Return *job* if it is a consistent job value, else raise :class:`InvalidJobError`."""
    if not isinstance(job, _JOB_CLASSES):
        raise InvalidJobError(f"expected a job, got {type(job).__name__}")
    if not isinstance(job.metadata, JobMetadata):
        raise InvalidJobError(
            f"job.metadata must be JobMetadata, got {type(job.metadata).__name__}"
        )
    _check_metadata(job.metadata)
    return job


def new_job(
    type: str,
    params: P,
    *,
    id: str | None = None,
    user_id: str = "",
    max_retries: int = 3,
    priority: int = 0,
    run_after: _dt.datetime | None = None,
    created: _dt.datetime | None = None,
    time_limit: float | None = None,
    unique: Unique | None = None,
) -> PendingJob[P]:
    """Return a new pending job, with a random id and ``created`` now unless given.

    With *unique*, the job carries the unique key and scope it describes.

    >>> job = new_job("generation", {"title": "Test Article"}, max_retries=2)
    >>> job.status, job.metadata.retry_count, job.metadata.max_retries
    ('pending', 0, 2)
    """
    if created is None:
        created = _dt.datetime.now(_dt.timezone.utc)
    return PendingJob(
        metadata=JobMetadata(
            id=JobId(uuid.uuid4().hex if id is None else id),
            type=type,
            user_id=UserId(user_id),
            created=created,
            max_retries=max_retries,
            priority=priority,
            run_after=run_after,
            time_limit=time_limit,
            unique_key=None if unique is None else unique.key_for(type, params, created),
            unique_states=DEFAULT_UNIQUE_STATES if unique is None else unique.states,
        ),
        params=params,
    )


def holds_unique_key(job: AnyJob) -> bool:
    """Return whether *job* holds its unique key (it has one, and its status is in scope)."""
    meta = job.metadata
    return holds_key(job.status, meta.unique_key, meta.unique_states)


def describe_error(exc: BaseException) -> str:
    """Return ``"Type: message"`` for *exc*, cut to a bounded length, storable anywhere."""
    text = clean_text(f"{type(exc).__name__}: {safe_str(exc)}")
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 3] + "..."
    return text


# -- transitions ------------------------------------------------------------------------
# Each returns a new value and leaves its argument unchanged.


def start(job: PendingJob[P], *, claim: Claim, now: _dt.datetime) -> RunningJob[P, Any]:
    """Claim a pending job: pending -> running."""
    # By position (metadata, params, started_at, claim, progress, attempts): start
    # and complete run once per job, and a keyword call to an attrs __init__ costs more.
    return RunningJob(job.metadata, job.params, now, claim, None, job.attempts)


def _ended(
    job: RunningJob[Any, Any], now: _dt.datetime, error: AttemptError | None
) -> tuple[Attempt, ...]:
    """Return *job*'s history with its current attempt added, ended at *now*."""
    history = job.attempts
    if not history:
        # The usual case, on every job's completion: one attempt, one tuple.
        return (
            Attempt(job.metadata.retry_count + 1, job.claim.worker, job.started_at, now, error),
        )
    attempt = Attempt(history[-1].number + 1, job.claim.worker, job.started_at, now, error)
    return append(history, attempt)


def _as_error(error: str | AttemptError) -> AttemptError:
    return AttemptError.from_text(error) if isinstance(error, str) else error


def _one_line(error: str | AttemptError) -> str:
    """Return the ``FailedJob.error`` text of *error*: one bounded line."""
    text = error if isinstance(error, str) else error.describe()
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 3] + "..."
    return text


def complete(job: RunningJob[P, Any], result: R, *, now: _dt.datetime) -> CompleteJob[P, R]:
    """Finish a running job with *result*: running -> complete."""
    # (metadata, params, started_at, completed_at, result, attempts, worker), by
    # position as in start. The completing attempt is the job's own fields, not
    # an Attempt of its own: nothing more is allocated on the path every job takes.
    return CompleteJob(
        job.metadata, job.params, job.started_at, now, result, job.attempts, job.claim.worker
    )


def fail(job: RunningJob[P, Any], error: str | AttemptError, *, now: _dt.datetime) -> FailedJob[P]:
    """Fail a running job for good: running -> failed.

    *error* is the attempt's error: an :class:`AttemptError`, or a one-line
    ``"Type: message"``.
    """
    return FailedJob(
        metadata=job.metadata,
        params=job.params,
        started_at=job.started_at,
        completed_at=now,
        error=_one_line(error),
        attempts=_ended(job, now, _as_error(error)),
    )


def fail_or_retry(
    job: RunningJob[P, Any], error: str | AttemptError, *, now: _dt.datetime, delay: float
) -> PendingJob[P] | FailedJob[P]:
    """Apply the guide's retry rule to a failed attempt.

    If ``retry_count < max_retries`` the job returns to pending with
    ``retry_count + 1``, not to be claimed for *delay* seconds; otherwise it
    fails with *error*. Either way the attempt and its error join
    ``attempts``.
    """
    meta = job.metadata
    if meta.retry_count < meta.max_retries:
        run_after = now + _dt.timedelta(seconds=delay) if delay > 0 else None
        return PendingJob(
            metadata=attrs.evolve(meta, retry_count=meta.retry_count + 1, run_after=run_after),
            params=job.params,
            attempts=_ended(job, now, _as_error(error)),
        )
    return fail(job, error, now=now)


def release(job: RunningJob[P, Any]) -> PendingJob[P]:
    """Give a running job back unrun: running -> pending, ``retry_count`` unchanged.

    Used when the worker itself is interrupted (``KeyboardInterrupt``),
    which is not a failure of the job; no attempt is recorded.
    """
    return PendingJob(job.metadata, job.params, job.attempts)


def requeue(job: FailedJob[P]) -> PendingJob[P]:
    """Give a failed job another full set of attempts: failed -> pending.

    ``retry_count`` goes back to 0 and the error is dropped; ``created``,
    ``priority``, params and the history of attempts are kept, and the job
    is due at once. An
    operator's decision (``jobworker retry``), never the worker's. Cancelled
    jobs cannot be requeued: a cancelled attempt may still be running.
    """
    if job.status != "failed":
        raise InvalidTransitionError(job.status, "pending", "only a failed job can be requeued")
    return PendingJob(
        metadata=attrs.evolve(job.metadata, retry_count=0, run_after=None),
        params=job.params,
        attempts=job.attempts,
    )


def cancel(job: PendingJob[P] | RunningJob[P, Any], *, now: _dt.datetime) -> CancelledJob[P]:
    """Cancel a pending or running job: -> cancelled."""
    if job.status not in ("pending", "running"):
        raise InvalidTransitionError(job.status, "cancelled")
    if isinstance(job, RunningJob):
        # The running attempt ends here, without an error of its own.
        started, history = job.started_at, _ended(job, now, None)
    else:
        started, history = None, job.attempts
    return CancelledJob(
        metadata=job.metadata,
        params=job.params,
        completed_at=now,
        started_at=started,
        attempts=history,
    )


def apply_update(
    stored: AnyJob,
    submitted: AnyJob,
    old_status: str,
    *,
    now: _dt.datetime,
    claim: Claim | None = None,
) -> AnyJob:
    """Return what ``update_job(submitted, old_status)`` stores over *stored*.

    The update is compare-and-set: it applies only if *stored* is still in
    *old_status* and, for a running job, still held by the same claim (taken
    from *submitted* when it is running, else from *claim*). A running job
    submitted as pending is a retry (``retry_count + 1``, if a retry is left)
    unless its ``retry_count`` is unchanged, which hands the attempt back
    unrun (:func:`release`). A failed job submitted as pending is requeued
    (:func:`requeue`). The new value is derived from *stored* by the
    transition functions, so a caller can report progress, a result or an
    error, but cannot rewrite metadata, params or timestamps.

    :raises StaleJobError: *stored* is not in *old_status*.
    :raises LeaseLostError: the claim is not the current one.
    :raises InvalidTransitionError: the move is not allowed.
    """
    new_status = submitted.status
    if stored.status != old_status:
        raise StaleJobError(stored.metadata.id, old_status, stored.status)
    if (old_status, new_status) not in _ALLOWED:
        if old_status == new_status == "pending":
            reason = "a pending job changes only by being claimed or cancelled"
        else:
            reason = ""
        raise InvalidTransitionError(old_status, new_status, reason)
    if new_status == "running" and old_status == "pending":
        raise InvalidTransitionError(
            "pending", "running", "claim jobs with poll_next_pending_job()"
        )
    if isinstance(stored, PendingJob):
        assert isinstance(submitted, CancelledJob)
        return cancel(stored, now=now)
    if isinstance(stored, FailedJob):
        # failed -> pending: an operator's requeue; it needs no claim.
        return requeue(stored)
    assert isinstance(stored, RunningJob)
    if isinstance(submitted, RunningJob):
        claim = submitted.claim
    # An operator cancels without a claim; an attempt's own writes carry one.
    if new_status != "cancelled" or claim is not None:
        if claim is None:
            raise InvalidJobError(
                "a write to a running job must carry its claim: submit a RunningJob "
                "or pass claim=running_job.claim"
            )
        if claim.token != stored.claim.token:
            raise LeaseLostError(
                stored.metadata.id, "running", "running", "the claim is no longer current"
            )
    if isinstance(submitted, RunningJob):
        return attrs.evolve(stored, progress=submitted.progress)
    if isinstance(submitted, CompleteJob):
        return complete(stored, submitted.result, now=now)
    if isinstance(submitted, FailedJob):
        return fail(stored, _submitted_error(stored, submitted) or submitted.error, now=now)
    if isinstance(submitted, CancelledJob):
        return cancel(stored, now=now)
    meta = stored.metadata
    if submitted.metadata.retry_count == meta.retry_count:
        # running -> pending with the count unchanged: the attempt is handed
        # back unrun (see release), not failed.
        return release(stored)
    # running -> pending with a new count: a retry asked for by the caller.
    if meta.retry_count >= meta.max_retries:
        raise InvalidTransitionError(
            "running", "pending", f"no retry left ({meta.retry_count}/{meta.max_retries})"
        )
    return PendingJob(
        metadata=attrs.evolve(
            meta, retry_count=meta.retry_count + 1, run_after=submitted.metadata.run_after
        ),
        params=stored.params,
        attempts=_ended(stored, now, _submitted_error(stored, submitted)),
    )


def _submitted_error(stored: RunningJob[Any, Any], submitted: AnyJob) -> AttemptError | None:
    """Return the error of the attempt that *submitted* ends, if it carries one.

    A worker's :func:`fail_or_retry` adds the attempt (with the whole
    error) to the job it submits; the stored job has one attempt fewer.
    """
    if not submitted.attempts:
        return None
    last = submitted.attempts[-1]
    if stored.attempts and last.number <= stored.attempts[-1].number:
        return None
    return last.error
