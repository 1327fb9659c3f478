"""The one cattrs converter jobworker owns, and the job <-> JSON mapping.

Values are stored as JSON: nothing is pickled, and no class is imported by a
name read from storage. A value's class comes from the job type registry.
Every backend, the in-memory one included, stores what a JSON round trip
returns, so a tuple comes back as a list everywhere alike.
"""

from __future__ import annotations

import datetime as _dt
import json
import json.encoder as json_encoder
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import attrs
import cattrs

from ._limits import MAX_NESTING
from .attempts import attempt_from_dict, attempt_to_dict
from .errors import InvalidJobError, PayloadTooLargeError, SerializationError, safe_repr
from .jobtypes import JobTypeRegistry
from .model import (
    _JOB_CLASSES,
    AnyJob,
    CancelledJob,
    Claim,
    CompleteJob,
    FailedJob,
    JobMetadata,
    PendingJob,
    RunningJob,
)
from .unique import DEFAULT_UNIQUE_STATES

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
    "with_params",
]

_J = TypeVar("_J", bound=AnyJob)
_T = TypeVar("_T")

#: Default cap on one serialized params, progress or result value: 1 MiB.
DEFAULT_MAX_PAYLOAD: Final = 1024 * 1024

converter = cattrs.Converter()
converter.register_unstructure_hook(_dt.datetime, lambda value: value.isoformat())
converter.register_structure_hook(_dt.datetime, lambda value, _: _dt.datetime.fromisoformat(value))

_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
_decoder = json.JSONDecoder()


def _make_dumps() -> Callable[[Any], str]:
    """Return the function that writes JSON text, compact and without NaN.

    Where the C encoder exists it is built once and called directly:
    ``JSONEncoder.encode`` builds a new one on every call. It is built
    without the circular-reference table, so it shares no state between
    threads; a circular value then ends in :class:`RecursionError`, which
    :func:`_dump` refuses like any other unstorable value.
    """
    make: Any = getattr(json_encoder, "c_make_encoder", None)  # not in typeshed
    if make is None:  # no C accelerator (PyPy): the pure-Python path
        return _encoder.encode
    # (markers, default, encoder, indent, key_separator, item_separator,
    #  sort_keys, skipkeys, allow_nan), as JSONEncoder.iterencode passes them.
    encode = make(
        None, _encoder.default, json_encoder.encode_basestring, None, ":", ",", False, False, False
    )
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps


_dumps = _make_dumps()
_scan = cast(Any, _decoder).scan_once  # the C scanner; not in typeshed


def _loads(text: str) -> Any:
    """Return the value of the JSON *text*, as ``json.loads`` does.

    Text jobworker wrote (compact, one value) is scanned directly; anything
    else (spaces around it, bytes, malformed text) goes through
    ``json.loads``, which accepts or refuses it with its usual errors.
    """
    try:
        value, end = _scan(text, 0)
    except (StopIteration, TypeError, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _on_fresh_stack(function: Callable[..., _T], *args: Any) -> _T:
    """Return ``function(*args)``, run again in a new thread if the caller's stack is too deep.

    Values within :data:`MAX_NESTING` take a fixed stack to encode and
    decode, but the JSON scanner and cattrs recurse on the caller's stack
    and (before Python 3.12) count the caller's own frames too. A new thread
    starts with an empty stack, so any caller at any depth gets the value.
    """
    try:
        return function(*args)
    except RecursionError:
        pass
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(function(*args))
        except BaseException as exc:  # broad: handed back to the caller's thread as is
            outcome.append(_Raised(exc))

    thread = threading.Thread(target=run, name="jobworker-deep-value")
    thread.start()
    thread.join()
    value = outcome[0]
    if isinstance(value, _Raised):
        raise value.exc
    return cast(_T, value)


@attrs.frozen
class _Raised:
    exc: BaseException


_CONTAINERS: Final = (dict, list, tuple)


def _stored_key(key: Any) -> Any:
    """Return the text the JSON encoder writes for the dict key *key* (the key itself if it
    writes none: the encoder refuses it)."""
    if isinstance(key, str):
        return str(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return float.__repr__(key)
    return key


# Up to this many containers on one level are walked as they come; more are
# deduplicated first (a value sharing containers stays linear, not exponential).
_SMALL_LEVEL: Final = 8


def check_shape(value: Any, what: str) -> None:
    """Raise :class:`SerializationError` unless the plain *value* can be stored exactly.

    It must nest at most :data:`MAX_NESTING` lists and dicts deep (a circular
    value nests forever), and no two keys of one dict may be stored as the
    same text (``{1: "a", "1": "b"}``): the JSON object would keep only one.
    Walks one level at a time, not by recursion, so any caller's stack will
    do; on a level of more than a few containers, one met twice (shared, or
    circular) is walked once.
    """
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_NESTING:
            raise SerializationError(
                f"{what} nests lists and dicts more than {MAX_NESTING} levels deep "
                "(or refers to itself)"
            )
        children: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                for key in item:
                    if type(key) is not str:
                        _check_keys(item, what)
                        break
                children += item.values()
            else:
                children += item
        level = [child for child in children if isinstance(child, _CONTAINERS)]
        if len(level) > _SMALL_LEVEL:
            # Shared containers would double a level at each step: walk each once.
            level = list({id(child): child for child in level}.values())


def _check_keys(item: dict[Any, Any], what: str) -> None:
    seen: dict[Any, Any] = {}
    for key in item:
        stored = _stored_key(key)
        try:
            other = seen.setdefault(stored, key)
        except TypeError:
            continue  # an unhashable text: the encoder refuses the key itself
        if other is not key:
            raise SerializationError(
                f"{what} has dict keys {safe_repr(other)} and {safe_repr(key)}, which are both "
                f"stored as {safe_repr(stored)}: one value would be lost"
            )


#: Types whose values the encoder takes or refuses itself: none is an attrs class.
_PLAIN_TYPES: Final = frozenset({dict, list, str, int, float, bool, type(None)})


def _dump(value: Any, cls: Any, what: str) -> str:
    """Return the JSON text of *value* stored as *cls* (``None``: plain JSON).

    ``None`` is storable whatever the class: a job without progress has none.
    """
    try:
        if cls is None or value is None:
            if type(value) not in _PLAIN_TYPES and attrs.has(type(value)):
                raise SerializationError(
                    f"{what} is a {type(value).__name__}: register the job type with "
                    f"{what}={type(value).__name__} to store attrs classes"
                )
            check_shape(value, what)
            return _on_fresh_stack(_dumps, value)
        if attrs.has(cls) and not isinstance(value, cls):
            raise SerializationError(f"{what} must be a {cls.__name__}, got {type(value).__name__}")
        plain = _on_fresh_stack(converter.unstructure, value, cls)
        check_shape(plain, what)
        return _on_fresh_stack(_dumps, plain)
    except SerializationError:
        raise
    except (
        TypeError,
        ValueError,
        AttributeError,  # a hook met a field of the wrong type: a str for a datetime
        RecursionError,
        cattrs.BaseValidationError,
    ) as exc:
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
    text = "null" if value is None else _dump(value, cls, what)
    # isascii() is O(1) in CPython; ASCII text is valid UTF-8, one byte a character.
    size = len(text) if text.isascii() else _utf8_size(text, what)
    if limit is not None and size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes, over the limit of {limit}", size=size, limit=limit
        )
    return text


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode())
    except UnicodeEncodeError as exc:
        # A lone surrogate: no UTF-8 store (SQLite text, PostgreSQL jsonb) takes it.
        raise SerializationError(f"{what} holds text that is not valid Unicode: {exc}") from exc


def roundtrip_value(value: Any, cls: Any, *, what: str, limit: int | None) -> tuple[Any, str]:
    """Return ``(copy, text)``: *value* as it comes back from storage, and its JSON.

    :raises SerializationError: *value* cannot be stored as JSON.
    :raises PayloadTooLargeError: the JSON is longer than *limit* bytes.
    """
    text = encode_value(value, cls, what=what, limit=limit)
    return load_value(text, cls, what), text


def encode_job(
    job: AnyJob, registry: JobTypeRegistry, *, limit: int | None, params: bool = True
) -> AnyJob:
    """Return *job* with its params, progress and result replaced by their JSON text.

    This is the stored form a backend keeps; :func:`decode_job` reverses it.
    A running job without progress keeps ``progress=None``. With
    ``params=False`` the params are left as they are: an update takes them
    from the stored job, so they need not be stored again.
    """
    job_type = registry.get(job.metadata.type)
    text = (
        encode_value(job.params, job_type.params, what="params", limit=limit)
        if params
        else job.params
    )
    extra: Any = None
    if isinstance(job, RunningJob):
        if job.progress is not None:
            extra = encode_value(job.progress, job_type.progress, what="progress", limit=limit)
    elif isinstance(job, CompleteJob):
        extra = encode_value(job.result, job_type.result, what="result", limit=limit)
    return _with_values(job, text, extra)


def decode_job(job: _J, registry: JobTypeRegistry) -> _J:
    """Return the job that :func:`encode_job` gave *job* for: fresh values, shared with nothing.

    Works at any depth of the caller's stack.

    :raises SerializationError: a value does not fit its registered class, or
        (written by another program) nests too deeply to be read at all.
    :raises ValueError: a value is not JSON.
    """
    try:
        return cast(_J, _on_fresh_stack(_decode_job, job, registry))
    except RecursionError as exc:
        raise SerializationError(
            f"a stored value of job {safe_repr(job.metadata.id)} nests too deeply to be read "
            f"(jobworker stores at most {MAX_NESTING} levels)"
        ) from exc


def _decode_job(job: _J, registry: JobTypeRegistry) -> _J:
    job_type = registry.get(job.metadata.type)
    # Plain JSON values (no registered class) are the text's value, as load_value gives.
    params_type = job_type.params
    if params_type is None:
        params = _loads(job.params)
    else:
        params = load_value(job.params, params_type, "params")
    new: AnyJob
    if isinstance(job, RunningJob):
        progress = job.progress
        if progress is not None:
            progress = load_value(progress, job_type.progress, "progress")
        new = RunningJob(job.metadata, params, job.started_at, job.claim, progress, job.attempts)
    elif isinstance(job, CompleteJob):
        result_type = job_type.result
        if result_type is None:
            result = _loads(job.result)
        else:
            result = load_value(job.result, result_type, "result")
        new = CompleteJob(
            job.metadata, params, job.started_at, job.completed_at, result, job.attempts, job.worker
        )
    else:
        new = _with_values(job, params, None)
    return cast(_J, new)


def with_params(job: _J, params: Any) -> _J:
    """Return *job* with *params*, every other field (progress, result) shared."""
    extra = (
        job.progress
        if isinstance(job, RunningJob)
        else job.result
        if isinstance(job, CompleteJob)
        else None
    )
    return _with_values(job, params, extra)


def _with_values(job: _J, params: Any, extra: Any) -> _J:
    """Return *job* with *params*, and *extra* as its progress or result; the rest shared.

    Several times faster than ``attrs.evolve``, which looks every field up
    by name. It passes every field of every job class by position, in the
    order checked below.
    """
    new: AnyJob
    history = job.attempts
    if isinstance(job, RunningJob):
        new = RunningJob(job.metadata, params, job.started_at, job.claim, extra, history)
    elif isinstance(job, CompleteJob):
        new = CompleteJob(
            job.metadata, params, job.started_at, job.completed_at, extra, history, job.worker
        )
    elif isinstance(job, PendingJob):
        new = PendingJob(job.metadata, params, history)
    elif isinstance(job, FailedJob):
        new = FailedJob(job.metadata, params, job.started_at, job.completed_at, job.error, history)
    else:
        new = CancelledJob(job.metadata, params, job.completed_at, job.started_at, history)
    return cast(_J, new)


# _with_values and decode_job here, and start, complete and new_claim in the model,
# pass each field by position: a field added to these classes, or moved, must be
# added or moved there too.
assert [f.name for f in attrs.fields(Claim)] == ["token", "worker"]
assert [[f.name for f in attrs.fields(cls)] for cls in _JOB_CLASSES] == [
    ["metadata", "params", "status", "attempts"],
    ["metadata", "params", "started_at", "claim", "progress", "status", "attempts"],
    ["metadata", "params", "started_at", "completed_at", "result", "status", "attempts", "worker"],
    ["metadata", "params", "started_at", "completed_at", "error", "status", "attempts"],
    ["metadata", "params", "completed_at", "started_at", "status", "attempts"],
]


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
            "time_limit": meta.time_limit,
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
        data["worker"] = job.worker
    elif isinstance(job, FailedJob):
        data["started_at"] = job.started_at.isoformat()
        data["completed_at"] = job.completed_at.isoformat()
        data["error"] = job.error
    elif isinstance(job, CancelledJob):
        data["started_at"] = _time(job.started_at)
        data["completed_at"] = job.completed_at.isoformat()
    data["attempts"] = [attempt_to_dict(attempt) for attempt in job.attempts]
    if meta.unique_key is not None:
        data["metadata"]["unique_key"] = meta.unique_key
        data["metadata"]["unique_states"] = sorted(meta.unique_states)
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
            time_limit=raw.get("time_limit"),
            unique_key=raw.get("unique_key"),
            unique_states=frozenset(raw.get("unique_states", DEFAULT_UNIQUE_STATES)),
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
            fields["worker"] = str(data.get("worker", ""))
        if cls is FailedJob:
            fields["error"] = str(data["error"])
        fields["attempts"] = tuple(attempt_from_dict(item) for item in data.get("attempts", ()))
        job: AnyJob = cls(**fields)
    except InvalidJobError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidJobError(f"not a stored job: {exc!r}") from exc
    return job


_PLAIN_REGISTRY: Final = JobTypeRegistry()
