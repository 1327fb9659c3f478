"""The one cattrs converter jobworker owns, and the job <-> JSON mapping.

Values are stored as JSON: nothing is pickled, and no class is imported by a
name read from storage. A value's class comes from the job type registry.
Every backend, the in-memory one included, stores what a JSON round trip
returns, so a tuple comes back as a list everywhere alike.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Final, TypeVar

import attrs
import cattrs

from .errors import InvalidJobError, PayloadTooLargeError, SerializationError
from .jobtypes import JobTypeRegistry
from .model import (
    AnyJob,
    CancelledJob,
    Claim,
    CompleteJob,
    FailedJob,
    JobMetadata,
    PendingJob,
    RunningJob,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "converter",
    "decode_job",
    "encode_job",
    "encode_value",
    "job_from_dict",
    "job_to_dict",
    "load_value",
    "roundtrip_value",
]

_J = TypeVar("_J", bound=AnyJob)

#: Default cap on one serialized params, progress or result value: 1 MiB.
DEFAULT_MAX_PAYLOAD: Final = 1024 * 1024

converter = cattrs.Converter()
converter.register_unstructure_hook(_dt.datetime, lambda value: value.isoformat())
converter.register_structure_hook(_dt.datetime, lambda value, _: _dt.datetime.fromisoformat(value))

_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


def _dump(value: Any, cls: Any, what: str) -> str:
    """Return the JSON text of *value* stored as *cls* (``None``: plain JSON).

    ``None`` is storable whatever the class: a job without progress has none.
    """
    try:
        if cls is None or value is None:
            if attrs.has(type(value)):
                raise SerializationError(
                    f"{what} is a {type(value).__name__}: register the job type with "
                    f"{what}={type(value).__name__} to store attrs classes"
                )
            return _dumps(value)
        if attrs.has(cls) and not isinstance(value, cls):
            raise SerializationError(f"{what} must be a {cls.__name__}, got {type(value).__name__}")
        return _dumps(converter.unstructure(value, unstructure_as=cls))
    except SerializationError:
        raise
    except (TypeError, ValueError, RecursionError, cattrs.BaseValidationError) as exc:
        raise SerializationError(f"{what} cannot be stored as JSON: {exc}") from exc


def load_value(text: str, cls: Any, what: str = "value") -> Any:
    """Return the value of the JSON *text*, structured as *cls* when given."""
    data = _loads(text)
    if cls is None or data is None:
        return data
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise SerializationError(f"stored {what} does not fit {cls!r}: {exc}") from exc


def encode_value(value: Any, cls: Any, *, what: str, limit: int | None) -> str:
    """Return the JSON text that stores *value* as *cls* (``None``: plain JSON).

    :raises SerializationError: *value* cannot be stored as JSON.
    :raises PayloadTooLargeError: the text is longer than *limit* bytes of UTF-8.
    """
    text = _dump(value, cls, what)
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        # A lone surrogate: no UTF-8 store (SQLite text, PostgreSQL jsonb) takes it.
        raise SerializationError(f"{what} holds text that is not valid Unicode: {exc}") from exc
    if limit is not None and size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes, over the limit of {limit}", size=size, limit=limit
        )
    return text


def roundtrip_value(value: Any, cls: Any, *, what: str, limit: int | None) -> tuple[Any, str]:
    """Return ``(copy, text)``: *value* as it comes back from storage, and its JSON.

    :raises SerializationError: *value* cannot be stored as JSON.
    :raises PayloadTooLargeError: the JSON is longer than *limit* bytes.
    """
    text = encode_value(value, cls, what=what, limit=limit)
    return load_value(text, cls, what), text


def encode_job(job: AnyJob, registry: JobTypeRegistry, *, limit: int | None) -> AnyJob:
    """Return *job* with its params, progress and result replaced by their JSON text.

    This is the stored form a backend keeps; :func:`decode_job` reverses it.
    A running job without progress keeps ``progress=None``.
    """
    job_type = registry.get(job.metadata.type)
    params = encode_value(job.params, job_type.params, what="params", limit=limit)
    if isinstance(job, RunningJob):
        progress = (
            None
            if job.progress is None
            else encode_value(job.progress, job_type.progress, what="progress", limit=limit)
        )
        return attrs.evolve(job, params=params, progress=progress)
    if isinstance(job, CompleteJob):
        result = encode_value(job.result, job_type.result, what="result", limit=limit)
        return attrs.evolve(job, params=params, result=result)
    return attrs.evolve(job, params=params)


def decode_job(job: _J, registry: JobTypeRegistry) -> _J:
    """Return the job that :func:`encode_job` gave *job* for: fresh values, shared with nothing."""
    job_type = registry.get(job.metadata.type)
    params = load_value(job.params, job_type.params, "params")
    if isinstance(job, RunningJob):
        progress = (
            None
            if job.progress is None
            else load_value(job.progress, job_type.progress, "progress")
        )
        return attrs.evolve(job, params=params, progress=progress)
    if isinstance(job, CompleteJob):
        result = load_value(job.result, job_type.result, "result")
        return attrs.evolve(job, params=params, result=result)
    return attrs.evolve(job, params=params)


# -- whole jobs, for durable backends and JSON output --------------------------------------

_CLASSES: Final[dict[str, type[Any]]] = {
    "pending": PendingJob,
    "running": RunningJob,
    "complete": CompleteJob,
    "failed": FailedJob,
    "cancelled": CancelledJob,
}


def _time(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> _dt.datetime | None:
    return None if value is None else _dt.datetime.fromisoformat(value)


def job_to_dict(job: AnyJob, registry: JobTypeRegistry | None = None) -> dict[str, Any]:
    """Return *job* as a JSON-safe dict (the inverse of :func:`job_from_dict`)."""
    job_type = (registry or _PLAIN_REGISTRY).get(job.metadata.type)
    meta = job.metadata
    data: dict[str, Any] = {
        "status": job.status,
        "metadata": {
            "id": meta.id,
            "type": meta.type,
            "user_id": meta.user_id,
            "created": meta.created.isoformat(),
            "retry_count": meta.retry_count,
            "max_retries": meta.max_retries,
            "priority": meta.priority,
            "run_after": _time(meta.run_after),
        },
        "params": _loads(_dump(job.params, job_type.params, "params")),
    }
    if isinstance(job, RunningJob):
        data["started_at"] = job.started_at.isoformat()
        data["claim"] = {"token": job.claim.token, "worker": job.claim.worker}
        data["progress"] = _loads(_dump(job.progress, job_type.progress, "progress"))
    elif isinstance(job, CompleteJob):
        data["started_at"] = job.started_at.isoformat()
        data["completed_at"] = job.completed_at.isoformat()
        data["result"] = _loads(_dump(job.result, job_type.result, "result"))
    elif isinstance(job, FailedJob):
        data["started_at"] = job.started_at.isoformat()
        data["completed_at"] = job.completed_at.isoformat()
        data["error"] = job.error
    elif isinstance(job, CancelledJob):
        data["started_at"] = _time(job.started_at)
        data["completed_at"] = job.completed_at.isoformat()
    return data


def job_from_dict(data: dict[str, Any], registry: JobTypeRegistry | None = None) -> AnyJob:
    """Return the job that :func:`job_to_dict` gave *data* for.

    :raises InvalidJobError: *data* is not a consistent job.
    """
    try:
        status = data["status"]
        cls = _CLASSES[status]
        raw = data["metadata"]
        meta = JobMetadata(
            id=raw["id"],
            type=raw["type"],
            user_id=raw["user_id"],
            created=_dt.datetime.fromisoformat(raw["created"]),
            retry_count=raw["retry_count"],
            max_retries=raw["max_retries"],
            priority=raw.get("priority", 0),
            run_after=_parse_time(raw.get("run_after")),
        )
        job_type = (registry or _PLAIN_REGISTRY).get(meta.type)

        def value(key: str, value_cls: Any) -> Any:
            return load_value(_dumps(data.get(key)), value_cls, key)

        fields: dict[str, Any] = {"metadata": meta, "params": value("params", job_type.params)}
        if cls in (RunningJob, CompleteJob, FailedJob):
            fields["started_at"] = _dt.datetime.fromisoformat(data["started_at"])
        elif cls is CancelledJob:
            fields["started_at"] = _parse_time(data.get("started_at"))
        if cls is RunningJob:
            fields["claim"] = Claim(**data["claim"])
            fields["progress"] = value("progress", job_type.progress)
        if cls in (CompleteJob, FailedJob, CancelledJob):
            fields["completed_at"] = _parse_time(data["completed_at"])
        if cls is CompleteJob:
            fields["result"] = value("result", job_type.result)
        if cls is FailedJob:
            fields["error"] = str(data["error"])
        job: AnyJob = cls(**fields)
    except InvalidJobError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidJobError(f"not a stored job: {exc!r}") from exc
    return job


_PLAIN_REGISTRY: Final = JobTypeRegistry()
