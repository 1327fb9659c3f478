"""The contract every queue backend meets.

A backend stores jobs and claims them; what a transition means comes from
:mod:`jobworker.model`, applied the same way by every backend.
"""

from __future__ import annotations

import abc
import datetime as _dt
import threading
from collections.abc import Callable, Collection
from typing import Any, Final, TypeVar, cast

import attrs

from .._limits import MAX_OFFSET, MAX_TEXT_LENGTH
from ..clock import Clock, SystemClock, to_us
from ..errors import InvalidJobError, UniqueKeyTakenError, safe_repr
from ..jobtypes import JobTypeRegistry
from ..model import (
    _JOB_CLASSES,
    STATUSES,
    AnyJob,
    CancelledJob,
    CompleteJob,
    FailedJob,
    JobId,
    JobMetadata,
    PendingJob,
    RunningJob,
    clean_text,
    complete,
    holds_unique_key,
    text_problem,
    validate_job,
)
from ..retry import RetryPolicy
from ..serialization import DEFAULT_MAX_PAYLOAD, decode_job, encode_job

__all__ = ["JobPage", "JobPredicate", "JobQueue"]

P = TypeVar("P")
_J = TypeVar("_J", bound=AnyJob)

#: A filter on pending jobs, evaluated outside any queue lock.
JobPredicate = Callable[[PendingJob[Any]], bool]

_DEFAULT_LEASE = 30.0
_TERMINAL = ("complete", "failed", "cancelled")
# Jobs read per list_jobs call by the generic browse_jobs.
_BROWSE_CHUNK = 500


@attrs.frozen
class JobPage:
    """One page of :meth:`JobQueue.browse_jobs`: its jobs and where the next page starts."""

    #: The jobs of the page, newest ``created`` first.
    jobs: tuple[AnyJob, ...]
    #: Pass it as ``cursor`` for the next (older) page; ``None`` on the last page.
    next_cursor: str | None


class JobQueue(abc.ABC):
    """The queue API of the guide, with compare-and-set updates and leases.

    Every method is thread-safe. Blocking methods take a ``timeout`` in
    seconds (``None``: no limit) and return early when the queue is woken
    or closed.

    :param registry: job types and their value classes; plain JSON values
        for types it does not know (unless it is strict).
    :param clock: where stored times come from.
    :param retry_policy: the delay before a job recovered from a lost
        worker runs again.
    :param lease_duration: seconds a claim lasts without renewal. A worker
        renews at a third of it; a job whose worker died is recovered after
        at most this long.
    :param max_payload: cap in bytes on one serialized params, progress or
        result value (``None``: no cap).
    """

    def __init__(
        self,
        *,
        registry: JobTypeRegistry | None = None,
        clock: Clock | None = None,
        retry_policy: RetryPolicy | None = None,
        lease_duration: float = _DEFAULT_LEASE,
        max_payload: int | None = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        if not lease_duration > 0:
            raise ValueError(f"lease_duration must be > 0, got {safe_repr(lease_duration)}")
        if max_payload is not None and not max_payload > 0:
            raise ValueError(f"max_payload must be > 0 or None, got {safe_repr(max_payload)}")
        self.registry = registry if registry is not None else JobTypeRegistry()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.lease_duration = float(lease_duration)
        self.max_payload = max_payload

    # -- the guide's API -------------------------------------------------------------

    @abc.abstractmethod
    def create_job(self, job: PendingJob[P]) -> PendingJob[P]:
        """Store a new pending job and return it as stored.

        Wakes an idle worker that can take it.

        Nothing is written unless the job can be read back exactly: the
        params are encoded and decoded again first.

        :raises DuplicateJobError: a job with this id exists.
        :raises UniqueKeyTakenError: the job has a unique key that another job
            holds (a :class:`DuplicateJobError` too); see :meth:`create_or_get_job`.
        :raises InvalidJobError: the job is not a consistent pending job, its
            id, type or user id is longer than :data:`MAX_TEXT_LENGTH`
            characters, or its type is unknown to a strict registry.
        :raises SerializationError: the params cannot be stored exactly: not
            JSON, nested deeper than :data:`MAX_NESTING`, two dict keys stored
            as the same text (``{1: "a", "1": "b"}``), or a registered class's
            value that would not come back from its JSON.
        """

    @abc.abstractmethod
    def get_job(self, job_id: JobId | str) -> AnyJob | None:
        """Return the job with *job_id*, or ``None`` if there is none."""

    @abc.abstractmethod
    def update_job(
        self, job: AnyJob, old_status: str | None = None, *, claim: Any = None
    ) -> AnyJob:
        """Store *job* if the stored one is still in *old_status*; return what was stored.

        *old_status* defaults to ``job.status`` (a progress update). A write to
        a running job must carry its claim: a :class:`RunningJob` carries it;
        for other targets pass ``claim=running_job.claim``. Cancelling needs no
        claim. Only what the transition allows is taken from *job* (progress,
        result, error, a retry's ``run_after``); the rest comes from the stored job.
        A running job updated to pending is retried (``retry_count + 1``) unless
        its ``retry_count`` is unchanged: then it is handed back unrun.

        :raises JobNotFoundError: no such job.
        :raises StaleJobError: the stored job is not in *old_status*.
        :raises LeaseLostError: the claim is no longer current.
        :raises InvalidTransitionError: the move is not allowed.
        :raises InvalidJobError: a value cannot be stored.
        """

    @abc.abstractmethod
    def poll_next_pending_job(
        self,
        *,
        types: Collection[str] | None = None,
        predicate: JobPredicate | None = None,
        worker: str = "anonymous",
        timeout: float | None = 0.0,
        stop_event: threading.Event | None = None,
    ) -> RunningJob[Any, Any] | None:
        """Claim the next pending job and return it running, or ``None``.

        Among jobs of *types* (all types if ``None``) that are due and that
        *predicate* accepts, takes the highest priority, then the oldest
        ``created``. The claim is atomic: a job goes to exactly one caller.
        Waits up to *timeout* seconds for one (``0``: do not wait, ``None``:
        until one comes); returns ``None`` at once when *stop_event* is set
        and :meth:`wake` is called, or when the queue is closed.
        """

    @abc.abstractmethod
    def renew_lease(self, job: RunningJob[Any, Any]) -> bool:
        """Extend the lease of *job*'s claim; return ``False`` if the claim is lost."""

    @abc.abstractmethod
    def list_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AnyJob]:
        """Return jobs matching every filter given, newest ``created`` first.

        :raises ValueError: *status* is not a status, or *limit* or *offset*
            is not an int from 0 to :data:`MAX_OFFSET` (``bool`` is refused).
        """

    @abc.abstractmethod
    def cancel_job(self, job_id: JobId | str) -> bool:
        """Cancel a pending or running job; ``False`` if missing or already terminal.

        A running job's worker is told cooperatively
        (:meth:`JobWorker.is_cancelled`); its late result is refused.
        """

    @abc.abstractmethod
    def cleanup_old_jobs(self, retention_hours: float = 24) -> int:
        """Delete terminal jobs that ended more than *retention_hours* ago; return how many."""

    @abc.abstractmethod
    def get_stats(self) -> dict[str, int]:
        """Return the number of jobs in each of the five statuses."""

    def get_type_stats(self) -> dict[str, dict[str, int]]:
        """Return, for each job type stored, its number of jobs in each of the five statuses.

        One query on a durable backend (a scan of the jobs table: cache it,
        as :class:`jobworker.metrics.prometheus.PrometheusMetrics` does).
        Types with no job are absent; each present type maps every status,
        zeros included.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot count jobs by type")

    # -- beyond the guide ---------------------------------------------------------------

    def create_or_get_job(self, job: PendingJob[P]) -> tuple[AnyJob, bool]:
        """Store *job*, or return the job that holds its unique key; say which.

        Returns ``(job as stored, True)``, or ``(the holder, False)`` when
        another job holds *job*'s unique key. The store decides (its unique
        constraint), never a read before the insert; a holder that lets the
        key go before it can be read is raced again, so under any number of
        concurrent callers exactly one creates and the others get that job.

        :raises DuplicateJobError: a job with *job*'s id exists.
        :raises InvalidJobError: as :meth:`create_job`.
        """
        while True:
            try:
                return self.create_job(job), True
            except UniqueKeyTakenError as exc:
                holder = None if exc.holder_id is None else self.get_job(exc.holder_id)
                if (
                    holder is not None
                    and holder.metadata.unique_key == exc.unique_key
                    and (holds_unique_key(holder))
                ):
                    return holder, False
                # The holder let the key go meanwhile: try to take it again.

    @abc.abstractmethod
    def pause_type(self, job_type: str) -> bool:
        """Stop claims of *job_type*; return ``False`` if it was already paused.

        Durable on the SQL backends (a row in the database) and effective at
        the next claim of every process that shares the queue. Running jobs
        of the type go on and finish; pending ones wait, and keep their
        place, until :meth:`resume_type`.

        :raises ValueError: *job_type* is not a valid job type name.
        """

    @abc.abstractmethod
    def resume_type(self, job_type: str) -> bool:
        """Let *job_type* be claimed again; return ``False`` if it was not paused.

        Wakes the idle workers of this queue object (and, on PostgreSQL,
        those of every process).

        :raises ValueError: *job_type* is not a valid job type name.
        """

    @abc.abstractmethod
    def paused_types(self) -> frozenset[str]:
        """Return the job types that are paused now."""

    @abc.abstractmethod
    def wait_for_job(self, job_id: JobId | str, *, timeout: float | None = None) -> AnyJob:
        """Block until the job is complete, failed or cancelled, and return it.

        :raises JobNotFoundError: no such job (or it was cleaned up).
        :raises WaitTimeoutError: it did not end within *timeout* seconds.
        """

    @abc.abstractmethod
    def wake(self, job_type: str | None = None) -> None:
        """Make every blocked :meth:`poll_next_pending_job` re-check its stop event.

        With *job_type*, wake instead one blocked poll of this process that
        takes that type, to claim a job of it that another connection just
        committed (as Django's ``enqueue_job`` does).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Wake every waiter and refuse further calls. Idempotent."""

    def __enter__(self: _Q) -> _Q:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- for the dashboard ------------------------------------------------------------------

    def browse_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        user_id: str | None = None,
        id_contains: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Return one page of the jobs matching every filter given, newest ``created`` first.

        Unlike :meth:`list_jobs`, pages are chained by a *cursor* (the
        previous page's :attr:`JobPage.next_cursor`), not an offset. On the
        built-in backends it is a keyset cursor: a SQL backend reads only the
        rows of the page from its ``created`` index, however deep the page,
        and a job created meanwhile does not shift the pages after it. (This
        default implementation, for other backends, pages by offset.)

        *id_contains* keeps the jobs whose id contains that text
        (case-sensitive); no index serves it, so a rare text reads every row.

        :raises ValueError: a bad *status*, a *limit* not from 1 to 1000, or
            a *cursor* this backend did not make.
        """
        self._check_browse_args(status, limit)
        # The generic way, for a backend without keyset pagination: a cursor
        # is the position of the next job to look at in list_jobs' order.
        position = 0 if cursor is None else _parse_offset_cursor(cursor)
        found: list[AnyJob] = []
        while True:
            chunk = self.list_jobs(
                status=status, type=type, user_id=user_id, limit=_BROWSE_CHUNK, offset=position
            )
            for job in chunk:
                if id_contains is None or id_contains in job.metadata.id:
                    if len(found) == limit:
                        return JobPage(tuple(found), f"o{position}")
                    found.append(job)
                position += 1
            if len(chunk) < _BROWSE_CHUNK:
                return JobPage(tuple(found), None)

    def count_jobs_by_type(self) -> dict[str, dict[str, int]]:
        """Return the number of jobs of each type in each status: ``{type: {status: n}}``.

        Only the statuses a type has jobs in are keys. A SQL backend answers
        with one grouped count, which reads every row: cache the answer when
        asking often.
        """
        counts: dict[str, dict[str, int]] = {}
        position = 0
        while True:
            chunk = self.list_jobs(limit=_BROWSE_CHUNK, offset=position)
            for job in chunk:
                per_status = counts.setdefault(job.metadata.type, {})
                per_status[job.status] = per_status.get(job.status, 0) + 1
            position += len(chunk)
            if len(chunk) < _BROWSE_CHUNK:
                return counts

    def count_ended_jobs(
        self, *, since: _dt.datetime, interval: float, slots: int
    ) -> dict[str, list[int]]:
        """Return how many jobs ended in each of *slots* intervals from *since*.

        The answer maps ``"complete"``, ``"failed"`` and ``"cancelled"`` to
        *slots* counts each: slot ``i`` counts the jobs whose ``completed_at``
        is from ``since + i * interval`` (included) to ``since + (i + 1) *
        interval`` (excluded). Jobs already deleted are not counted.

        :raises ValueError: *since* is naive, *interval* is not > 0, or
            *slots* is not from 1 to 10000.
        """
        start_us, step_us = _check_slots(since, interval, slots)
        counts = {status: [0] * slots for status in _TERMINAL}
        for status in _TERMINAL:
            position = 0
            while True:
                chunk = self.list_jobs(status=status, limit=_BROWSE_CHUNK, offset=position)
                for job in chunk:
                    assert isinstance(job, (CompleteJob, FailedJob, CancelledJob))
                    slot = (to_us(job.completed_at) - start_us) // step_us
                    if 0 <= slot < slots:
                        counts[status][slot] += 1
                position += len(chunk)
                if len(chunk) < _BROWSE_CHUNK:
                    break
        return counts

    def delete_job(self, job_id: JobId | str) -> bool:
        """Delete a complete, failed or cancelled job; ``False`` if missing or not ended.

        A pending or running job is never deleted: cancel it first.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete jobs")

    # -- helpers for backends -------------------------------------------------------------

    def _encode_new(self, job: PendingJob[P]) -> tuple[PendingJob[str], PendingJob[P]]:
        """Validate a job for ``create_job``; return its stored form and the caller's copy.

        The stored form holds the values as JSON text; the copy is that text
        decoded again, as every later read will decode it. So a value that
        would not come back (an attrs field of the wrong type) is refused
        here, before the backend writes anything.
        """
        validate_job(job)
        if not isinstance(job, PendingJob):
            raise InvalidJobError(f"create_job takes a PendingJob, got a {job.status} job")
        meta = job.metadata
        for name, text in (("id", meta.id), ("type", meta.type), ("user_id", meta.user_id)):
            if len(text) > MAX_TEXT_LENGTH:
                raise InvalidJobError(
                    f"metadata.{name} is {len(text)} characters long, over the limit of "
                    f"{MAX_TEXT_LENGTH}: {safe_repr(text, 60)}"
                )
        stored = encode_job(job, self.registry, limit=self.max_payload)
        assert isinstance(stored, PendingJob)
        return stored, cast("PendingJob[P]", self._decode(stored))

    def _encode_update(self, job: AnyJob, checked: JobMetadata | None = None) -> AnyJob:
        """Validate a job for ``update_job``; return its stored form (values as JSON text).

        Params are left as they are: an update takes them from the stored
        job. *checked* is metadata known to be valid (a stored job's, which
        every job this queue returns shares): the very same object is not
        checked again.
        """
        if checked is None or not isinstance(job, _JOB_CLASSES) or job.metadata is not checked:
            validate_job(job)
        if isinstance(job, FailedJob):
            if not isinstance(job.error, str):
                raise InvalidJobError(f"error must be a string, got {safe_repr(job.error)}")
            job = attrs.evolve(job, error=clean_text(job.error))
        return encode_job(job, self.registry, limit=self.max_payload, params=False)

    def _complete_job(self, job: RunningJob[Any, Any], result: Any) -> AnyJob:
        """Complete *job* with *result* under its claim and return the job as stored.

        What a worker does when ``execute_job`` returns: the same as
        ``update_job(complete(job, result, now=...), "running", claim=job.claim)``,
        which this default does, with its errors. A backend may do it with
        less copying.
        """
        done = complete(job, result, now=self.clock.now())
        return self.update_job(done, "running", claim=job.claim)

    def _decode(self, job: _J) -> _J:
        """Return the caller's copy of a stored job."""
        return decode_job(job, self.registry)

    def _recovery_delay(self, job: RunningJob[Any, Any]) -> float:
        return self.retry_policy.delay(job.metadata.retry_count)

    @staticmethod
    def _check_list_args(status: str | None, limit: int, offset: int) -> None:
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {safe_repr(status)}")
        for name, value in (("limit", limit), ("offset", offset)):
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= MAX_OFFSET
            ):
                raise ValueError(
                    f"{name} must be an int from 0 to {MAX_OFFSET} (2**63 - 1), "
                    f"got {safe_repr(value)}"
                )

    @classmethod
    def _check_browse_args(cls, status: str | None, limit: int) -> None:
        cls._check_list_args(status, limit, 0)
        if not 1 <= limit <= _MAX_PAGE:
            raise ValueError(f"limit must be from 1 to {_MAX_PAGE}, got {limit}")

    @staticmethod
    def _check_job_type(job_type: object) -> str:
        if (
            not isinstance(job_type, str)
            or not job_type
            or len(job_type) > MAX_TEXT_LENGTH
            or text_problem(job_type) is not None
        ):
            raise ValueError(f"a job type must be a non-empty text, got {safe_repr(job_type, 60)}")
        return job_type

    @staticmethod
    def _check_timeout(timeout: float | None) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, got {safe_repr(timeout)}")


_Q = TypeVar("_Q", bound=JobQueue)

#: The largest page of :meth:`JobQueue.browse_jobs`.
_MAX_PAGE: Final = 1000
_MAX_SLOTS: Final = 10_000


def _parse_offset_cursor(cursor: str) -> int:
    """Return the position that a cursor of the generic :meth:`JobQueue.browse_jobs` holds."""
    digits = cursor[1:] if isinstance(cursor, str) and cursor.startswith("o") else ""
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_OFFSET:
        raise ValueError(f"not a cursor of this queue: {safe_repr(cursor, 60)}")
    return int(digits)


_BIGINT: Final = 2**63


def keyset_cursor(created_us: int, arrival: int) -> str:
    """Return the cursor of a page that ends with the job created at *created_us*, *arrival*."""
    return f"k{created_us}.{arrival}"


def parse_keyset_cursor(cursor: str) -> tuple[int, int]:
    """Return the ``(created_us, arrival)`` that :func:`keyset_cursor` put in *cursor*.

    :raises ValueError: it is not such a cursor.
    """
    if isinstance(cursor, str) and cursor.startswith("k") and cursor.isascii():
        created, sep, arrival = cursor[1:].partition(".")
        try:
            key = (int(created), int(arrival))
        except ValueError:
            pass
        else:
            if sep and all(-_BIGINT <= part < _BIGINT for part in key):
                return key
    raise ValueError(f"not a cursor of this queue: {safe_repr(cursor, 60)}")


def _check_slots(since: _dt.datetime, interval: float, slots: int) -> tuple[int, int]:
    """Check the arguments of ``count_ended_jobs``; return its start and step in microseconds."""
    if not isinstance(since, _dt.datetime) or since.utcoffset() is None:
        raise ValueError(f"since must be an aware datetime, got {safe_repr(since)}")
    if not isinstance(interval, (int, float)) or not interval > 0 or interval > 366 * 86400:
        raise ValueError(
            f"interval must be > 0 seconds (a year at most), got {safe_repr(interval)}"
        )
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= _MAX_SLOTS:
        raise ValueError(f"slots must be an int from 1 to {_MAX_SLOTS}, got {safe_repr(slots)}")
    return to_us(since), max(1, round(interval * 1_000_000))
