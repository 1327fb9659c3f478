"""Reading and checking the ``JOBWORKER_*`` keys of a Flask app's config.

Everything is checked when the extension is initialised, so that a typo
fails at ``init_app`` with the key's name, not later in a worker thread.
Nothing here opens the queue.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Mapping
from typing import Any

import attrs

from ...errors import JobworkerError
from ...queues.base import JobQueue
from ...queues.memory import MemoryQueue
from ...queues.sqlite import SQLiteQueue
from ...redact import mask_secrets
from ...schedules import Schedule, schedules_from_config
from ...throttling import TypeLimits, limits_from_mapping
from ...worker import JobWorker

__all__ = ["DEFAULTS", "ConfigurationError", "Settings", "read_settings", "redact_url"]

#: The keys the extension reads, with their defaults (``JOBWORKER_QUEUE`` has none).
DEFAULTS: Mapping[str, Any] = {
    "JOBWORKER_QUEUE_OPTIONS": {},
    "JOBWORKER_WORKERS": (),
    "JOBWORKER_CONCURRENCY": 1,
    "JOBWORKER_WORKER_OPTIONS": {},
    "JOBWORKER_START_WORKERS": False,
    "JOBWORKER_STOP_TIMEOUT": 60.0,
    "JOBWORKER_LIMITS": {},
    "JOBWORKER_SCHEDULES": (),
}

_URL_PREFIXES = ("memory:", "sqlite:///", "postgresql://", "postgres://")


class ConfigurationError(JobworkerError, ValueError):
    """A ``JOBWORKER_*`` setting is missing or not acceptable, or the extension is not set up.

    :ivar key: the config key at fault, if one is.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


@attrs.frozen
class Settings:
    """The checked settings of one app."""

    #: A queue URL, or a queue the application built itself.
    queue: str | JobQueue
    queue_options: Mapping[str, Any]
    workers: tuple[type[JobWorker], ...]
    concurrency: int
    worker_options: Mapping[str, Any]
    start_workers: bool
    stop_timeout: float | None
    #: Job type -> its concurrency and rate limits, set on the queue's registry.
    limits: Mapping[str, TypeLimits] = attrs.field(factory=dict)
    #: Run beside the workers, by ``flask jobworker worker`` and ``start_workers``.
    schedules: tuple[Schedule, ...] = ()

    @property
    def is_memory(self) -> bool:
        """Whether the queue lives in this process only (a ``memory:`` queue)."""
        if isinstance(self.queue, str):
            return self.queue == "memory:"
        return isinstance(self.queue, MemoryQueue)


def read_settings(config: Mapping[str, Any]) -> Settings:
    """Return the checked settings in *config*, defaults filled in.

    :raises ConfigurationError: a key is missing, of the wrong type, or names
        something that cannot be imported.
    """
    options = {key: config.get(key, default) for key, default in DEFAULTS.items()}
    queue = _check_queue(config.get("JOBWORKER_QUEUE"))
    queue_options = _check_mapping("JOBWORKER_QUEUE_OPTIONS", options["JOBWORKER_QUEUE_OPTIONS"])
    if queue_options and isinstance(queue, JobQueue):
        raise ConfigurationError(
            "options apply to a queue URL; JOBWORKER_QUEUE is a queue object already",
            key="JOBWORKER_QUEUE_OPTIONS",
        )
    if isinstance(queue, str):
        _check_option_names(queue, queue_options)
    concurrency = options["JOBWORKER_CONCURRENCY"]
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(
            f"must be an int >= 1, got {concurrency!r}", key="JOBWORKER_CONCURRENCY"
        )
    start = options["JOBWORKER_START_WORKERS"]
    if not isinstance(start, bool):
        raise ConfigurationError(f"must be a bool, got {start!r}", key="JOBWORKER_START_WORKERS")
    stop_timeout = options["JOBWORKER_STOP_TIMEOUT"]
    if stop_timeout is not None and (
        isinstance(stop_timeout, bool)
        or not isinstance(stop_timeout, (int, float))
        or not stop_timeout >= 0
    ):
        raise ConfigurationError(
            f"must be seconds >= 0 or None, got {stop_timeout!r}", key="JOBWORKER_STOP_TIMEOUT"
        )
    workers = _check_workers(options["JOBWORKER_WORKERS"])
    worker_options = _check_mapping("JOBWORKER_WORKER_OPTIONS", options["JOBWORKER_WORKER_OPTIONS"])
    for worker_class in workers:
        try:
            inspect.signature(worker_class).bind(None, **worker_options)
        except TypeError as exc:
            raise ConfigurationError(
                f"{worker_class.__qualname__} cannot take these options: {exc}",
                key="JOBWORKER_WORKER_OPTIONS",
            ) from exc
    if start and not workers:
        raise ConfigurationError(
            "is True, but JOBWORKER_WORKERS names no worker", key="JOBWORKER_START_WORKERS"
        )
    try:
        limits = limits_from_mapping(options["JOBWORKER_LIMITS"])
    except ValueError as exc:
        raise ConfigurationError(str(exc), key="JOBWORKER_LIMITS") from None
    try:
        schedules = schedules_from_config(options["JOBWORKER_SCHEDULES"])
    except ValueError as exc:
        raise ConfigurationError(str(exc), key="JOBWORKER_SCHEDULES") from None
    return Settings(
        limits=limits,
        schedules=schedules,
        queue=queue,
        queue_options=queue_options,
        workers=workers,
        concurrency=concurrency,
        worker_options=worker_options,
        start_workers=start,
        stop_timeout=None if stop_timeout is None else float(stop_timeout),
    )


def _check_queue(value: object) -> str | JobQueue:
    key = "JOBWORKER_QUEUE"
    if value is None:
        raise ConfigurationError(
            "not set: give a queue URL (memory:, sqlite:///PATH or postgresql://...)", key=key
        )
    if isinstance(value, JobQueue):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"must be a queue URL or a JobQueue, got {value!r}", key=key)
    if not value.startswith(_URL_PREFIXES) or value == "sqlite:///":
        raise ConfigurationError(
            f"unknown queue URL {redact_url(value)!r}: use memory:, sqlite:///PATH "
            "or postgresql://...",
            key=key,
        )
    if value.startswith("postgres") and importlib.util.find_spec("psycopg") is None:
        raise ConfigurationError(
            "a PostgreSQL queue needs psycopg: pip install 'jobworker[postgres]'", key=key
        )
    return value


def _queue_class(url: str) -> type[JobQueue]:
    if url == "memory:":
        return MemoryQueue
    if url.startswith("sqlite:"):
        return SQLiteQueue
    # Imported here: psycopg is optional, and _check_queue made sure it is installed.
    from ...queues.postgres import PostgresQueue  # noqa: PLC0415

    return PostgresQueue


def _check_option_names(url: str, options: Mapping[str, Any]) -> None:
    """Refuse an option the queue's constructor does not take (its values it checks itself)."""
    accepted: set[str] = set()
    for init in (JobQueue.__init__, _queue_class(url).__init__):
        accepted.update(
            name
            for name, parameter in inspect.signature(init).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        )
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigurationError(
            f"unknown option {', '.join(map(repr, unknown))} for this queue; "
            f"it takes {', '.join(sorted(accepted))}",
            key="JOBWORKER_QUEUE_OPTIONS",
        )


def _check_mapping(key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(name, str) for name in value):
        raise ConfigurationError(f"must be a dict of keyword arguments, got {value!r}", key=key)
    return dict(value)


def _check_workers(value: object) -> tuple[type[JobWorker], ...]:
    key = "JOBWORKER_WORKERS"
    if isinstance(value, (str, type)) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(
            f"must be a list of worker classes or 'module:Class' strings, got {value!r}", key=key
        )
    return tuple(_load_worker_class(item) for item in value)


def _load_worker_class(item: object) -> type[JobWorker]:
    key = "JOBWORKER_WORKERS"
    found: object = item
    if isinstance(item, str):
        module_name, _, qualname = item.partition(":")
        if not module_name or not qualname:
            raise ConfigurationError(f"{item!r} is not of the form 'module:Class'", key=key)
        try:
            found = importlib.import_module(module_name)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"cannot import {item!r}: {exc}", key=key) from exc
    if not (isinstance(found, type) and issubclass(found, JobWorker)):
        raise ConfigurationError(f"{item!r} is not a JobWorker subclass", key=key)
    if inspect.isabstract(found):
        raise ConfigurationError(
            f"{item!r} does not implement every abstract method of JobWorker", key=key
        )
    return found


def redact_url(url: str) -> str:
    """Return *url* without the password it may carry, for logs and messages."""
    return mask_secrets(url)
