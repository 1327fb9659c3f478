"""Rows of the jobs table <-> jobs in their stored form (values as JSON text).

Times are stored as integer microseconds since the Unix epoch: exact, and
ordered by the indexes. A row that does not make a valid job is turned into
a failed job that records why (:func:`sanitize_row`); it is never deleted.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Final

from ..attempts import attempts_from_json, attempts_to_json
from ..clock import from_us, to_us
from ..errors import safe_repr
from ..model import (
    STATUSES,
    AnyJob,
    CancelledJob,
    Claim,
    CompleteJob,
    FailedJob,
    JobId,
    JobMetadata,
    PendingJob,
    RunningJob,
    UserId,
)
from ..unique import states_from_text, states_to_text

__all__ = [
    "COLUMNS",
    "from_us",
    "mutable_values",
    "row_to_job",
    "sanitize_row",
    "to_us",
    "values_of",
]

#: The job's columns, in the order of :func:`values_of` and :func:`row_to_job`.
COLUMNS: Final = (
    "id, type, user_id, status, priority, created_us, retry_count, max_retries, "
    "run_after_us, params, progress, result, error, started_us, completed_us, "
    "claim_token, claim_worker, attempts, time_limit, unique_key, unique_states"
)
#: Columns a transition may change, in the order of :func:`mutable_values`.
MUTABLE: Final = (
    "status, retry_count, run_after_us, progress, result, error, "
    "started_us, completed_us, claim_token, claim_worker, attempts"
)
N_COLUMNS: Final = 21


def _us_or_none(value: _dt.datetime | None) -> int | None:
    return None if value is None else to_us(value)


def mutable_values(job: AnyJob) -> tuple[Any, ...]:
    """Return the values of :data:`MUTABLE` for a stored-form *job*."""
    meta = job.metadata
    progress = result = error = started = completed = token = worker = None
    if isinstance(job, RunningJob):
        progress, started = job.progress, job.started_at
        token, worker = job.claim.token, job.claim.worker
    elif isinstance(job, CompleteJob):
        result, started, completed = job.result, job.started_at, job.completed_at
        worker = job.worker  # the worker of the attempt that completed it
    elif isinstance(job, FailedJob):
        error, started, completed = job.error, job.started_at, job.completed_at
    elif isinstance(job, CancelledJob):
        started, completed = job.started_at, job.completed_at
    return (
        job.status,
        meta.retry_count,
        _us_or_none(meta.run_after),
        progress,
        result,
        error,
        _us_or_none(started),
        _us_or_none(completed),
        token,
        worker,
        attempts_to_json(job.attempts),
    )


def values_of(job: AnyJob) -> tuple[Any, ...]:
    """Return the values of :data:`COLUMNS` for a stored-form *job*."""
    meta = job.metadata
    (
        status, retry_count, run_after, progress, result, error, started, completed, token,
        worker, history,
    ) = mutable_values(job)  # fmt: skip
    return (
        meta.id,
        meta.type,
        meta.user_id,
        status,
        meta.priority,
        to_us(meta.created),
        retry_count,
        meta.max_retries,
        run_after,
        job.params,
        progress,
        result,
        error,
        started,
        completed,
        token,
        worker,
        history,
        meta.time_limit,
        meta.unique_key,
        None if meta.unique_key is None else states_to_text(meta.unique_states),
    )


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"column {name} holds {safe_repr(value)}, not an integer")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"column {name} holds {safe_repr(value)}, not text")
    return value


def row_to_job(row: Any) -> AnyJob:
    """Return the stored-form job of a row (extra trailing columns are ignored).

    :raises InvalidJobError, ValueError: the row is not a valid job.
    """
    (
        job_id, job_type, user, status, priority, created, retry_count, max_retries,
        run_after, params, progress, result, error, started, completed, token, worker,
        history, time_limit, unique_key, unique_states,
    ) = tuple(row)[:N_COLUMNS]  # fmt: skip
    if status not in STATUSES:
        raise ValueError(f"unknown status {safe_repr(status)}")
    meta = JobMetadata(
        id=JobId(_text(job_id, "id")),
        type=_text(job_type, "type"),
        user_id=UserId(_text(user, "user_id")),
        created=from_us(_int(created, "created_us")),
        retry_count=_int(retry_count, "retry_count"),
        max_retries=_int(max_retries, "max_retries"),
        priority=_int(priority, "priority"),
        run_after=None if run_after is None else from_us(_int(run_after, "run_after_us")),
        time_limit=None if time_limit is None else float(time_limit),
        unique_key=None if unique_key is None else _text(unique_key, "unique_key"),
        unique_states=states_from_text(unique_states),
    )
    params = _text(params, "params")
    attempts = attempts_from_json(None if history is None else _text(history, "attempts"))
    if status == "pending":
        return PendingJob(metadata=meta, params=params, attempts=attempts)
    if status == "cancelled":
        return CancelledJob(
            metadata=meta,
            params=params,
            completed_at=from_us(_int(completed, "completed_us")),
            started_at=None if started is None else from_us(_int(started, "started_us")),
            attempts=attempts,
        )
    started_at = from_us(_int(started, "started_us"))
    if status == "running":
        return RunningJob(
            metadata=meta,
            params=params,
            started_at=started_at,
            claim=Claim(token=_text(token, "claim_token"), worker=_text(worker, "claim_worker")),
            progress=None if progress is None else _text(progress, "progress"),
            attempts=attempts,
        )
    completed_at = from_us(_int(completed, "completed_us"))
    if status == "complete":
        return CompleteJob(
            metadata=meta,
            params=params,
            started_at=started_at,
            completed_at=completed_at,
            result=_text(result, "result"),
            attempts=attempts,
            worker="" if worker is None else _text(worker, "claim_worker"),
        )
    if status == "failed":
        return FailedJob(
            metadata=meta,
            params=params,
            started_at=started_at,
            completed_at=completed_at,
            error=_text(error, "error"),
            attempts=attempts,
        )
    raise AssertionError(f"unreachable: status {safe_repr(status)}")


def _is_json(value: Any) -> bool:
    try:
        json.loads(value)
    except (TypeError, ValueError):
        return False
    return True


def sanitize_row(
    row: Any, reason: str, now_us: int, *, keep_params: bool = True
) -> tuple[Any, ...]:
    """Return the values of a failed job that records why *row* was malformed.

    Keeps what is valid (id, type, user, times, params when they are JSON and
    *keep_params*); replaces the rest with safe values. The reason, and the
    params that had to be dropped, go into ``error``.
    """
    values = list(tuple(row)[:N_COLUMNS])
    (
        job_id, job_type, user, _, priority, created, retry_count, max_retries,
        _, params, _, _, _, started, _, _, _, history, _, _, _,
    ) = values  # fmt: skip

    def integer(value: Any, default: int) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok else default

    retry_count, max_retries = integer(retry_count, -1), integer(max_retries, -1)
    if not 0 <= retry_count <= max_retries:
        retry_count = max_retries = 0
    error = f"MalformedJob: {reason}"
    if not (keep_params and isinstance(params, str) and _is_json(params)):
        error += f"; original params: {safe_repr(str(params)[:500])}"
        params = "null"
    return (
        job_id,
        job_type if isinstance(job_type, str) and job_type else "unknown",
        user if isinstance(user, str) else "",
        "failed",
        integer(priority, 0),
        integer(created, now_us),
        retry_count,
        max_retries,
        None,
        params,
        None,
        None,
        error[:2000],
        integer(started, now_us),
        now_us,
        None,
        None,
        history if _is_history(history) else None,
        None,
        # A row set aside lets its unique key go: the key it held may be malformed.
        None,
        None,
    )


def _is_history(value: Any) -> bool:
    try:
        attempts_from_json(value)
    except (TypeError, ValueError):
        return False
    return True
