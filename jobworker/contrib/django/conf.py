"""The ``JOBWORKER`` setting, read and checked each time it is needed.

Every key is optional::

    JOBWORKER = {
        "DATABASE": "default",   # the database alias that holds the queue
        "WORKERS": ["shop.workers.ShipWorker"],   # DjangoJobWorker subclasses
        "CONCURRENCY": 1,        # threads per worker class
        "START_WORKERS": False,  # start the workers in the web process
        "QUEUE_OPTIONS": {},     # keyword arguments of SQLiteQueue / PostgresQueue
        "WORKER_OPTIONS": {},    # keyword arguments of every worker
        "STOP_TIMEOUT": 60.0,    # seconds the workers get to finish on stop
        "LIMITS": {},            # job type -> {"concurrency", "key", "rate", "period"}
        "SCHEDULES": [],         # jobworker.schedules.Schedule objects, or dicts of their arguments
    }

It is read at call time, never cached, so ``override_settings`` and Django's
test databases apply at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS

from ...schedules import Schedule, schedules_from_config
from ...throttling import TypeLimits, limits_from_mapping

__all__ = ["JobworkerSettings", "get_settings"]

_KEYS: Final = frozenset(
    {
        "DATABASE",
        "WORKERS",
        "CONCURRENCY",
        "START_WORKERS",
        "QUEUE_OPTIONS",
        "WORKER_OPTIONS",
        "STOP_TIMEOUT",
        "LIMITS",
        "SCHEDULES",
    }
)


@attrs.frozen
class JobworkerSettings:
    """The ``JOBWORKER`` setting, checked, with defaults filled in."""

    database: str = DEFAULT_DB_ALIAS
    workers: tuple[str, ...] = ()
    concurrency: int = 1
    start_workers: bool = False
    queue_options: Mapping[str, Any] = attrs.field(factory=dict)
    worker_options: Mapping[str, Any] = attrs.field(factory=dict)
    stop_timeout: float | None = 60.0
    limits: Mapping[str, TypeLimits] = attrs.field(factory=dict)
    schedules: tuple[Schedule, ...] = ()


def _fail(message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"JOBWORKER: {message}")


def get_settings() -> JobworkerSettings:
    """Return the project's ``JOBWORKER`` setting, checked.

    :raises ImproperlyConfigured: an unknown key or a value of the wrong kind.
    """
    raw = getattr(settings, "JOBWORKER", None) or {}
    if not isinstance(raw, Mapping):
        raise _fail(f"must be a dict, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(f"unknown key(s) {', '.join(map(repr, unknown))}; known: {sorted(_KEYS)}")
    database = raw.get("DATABASE", DEFAULT_DB_ALIAS)
    if not isinstance(database, str) or database not in settings.DATABASES:
        raise _fail(f"DATABASE must name an alias of DATABASES, got {database!r}")
    workers = raw.get("WORKERS", ())
    if isinstance(workers, str) or not all(isinstance(w, str) for w in workers):
        raise _fail(f"WORKERS must be a list of dotted paths, got {workers!r}")
    concurrency = raw.get("CONCURRENCY", 1)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise _fail(f"CONCURRENCY must be an int >= 1, got {concurrency!r}")
    start = raw.get("START_WORKERS", False)
    if not isinstance(start, bool):
        raise _fail(f"START_WORKERS must be True or False, got {start!r}")
    for key in ("QUEUE_OPTIONS", "WORKER_OPTIONS"):
        if not isinstance(raw.get(key, {}), Mapping):
            raise _fail(f"{key} must be a dict, got {raw[key]!r}")
    stop_timeout = raw.get("STOP_TIMEOUT", 60.0)
    if stop_timeout is not None and (
        not isinstance(stop_timeout, (int, float)) or not stop_timeout >= 0
    ):
        raise _fail(f"STOP_TIMEOUT must be a number >= 0 or None, got {stop_timeout!r}")
    try:
        limits = limits_from_mapping(raw.get("LIMITS", {}))
    except ValueError as exc:
        raise _fail(f"LIMITS: {exc}") from None
    try:
        schedules = schedules_from_config(raw.get("SCHEDULES", ()))
    except ValueError as exc:
        raise _fail(f"SCHEDULES {exc}") from None
    return JobworkerSettings(
        database=database,
        workers=tuple(workers),
        concurrency=concurrency,
        start_workers=start,
        queue_options=dict(raw.get("QUEUE_OPTIONS", {})),
        worker_options=dict(raw.get("WORKER_OPTIONS", {})),
        stop_timeout=None if stop_timeout is None else float(stop_timeout),
        limits=limits,
        schedules=schedules,
    )
