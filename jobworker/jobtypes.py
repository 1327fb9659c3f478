"""Job types: which classes a job type's params, progress and result use.

A job type that is not registered carries plain JSON values (dicts, lists,
strings, numbers, booleans, ``None``). Registering a type with attrs classes
lets its values round-trip through the package's converter, on every backend
alike. A strict registry refuses jobs of unregistered types at ``create_job``.
A registry also holds the concurrency and rate limits of job types
(:meth:`JobTypeRegistry.set_limits`), which the queues enforce at claim time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .errors import UnknownJobTypeError, safe_repr
from .model import check_time_limit
from .throttling import TypeLimits

__all__ = ["JobType", "JobTypeRegistry"]


@attrs.frozen
class JobType:
    """The value classes of one job type (``None`` means plain JSON values) and its time limits.

    ``time_limit`` and ``soft_time_limit`` are seconds, ``None`` for none:
    they apply to jobs of this type that carry no limit of their own (see
    :meth:`JobWorker.get_time_limit <jobworker.JobWorker.get_time_limit>`).
    """

    name: str
    params: Any = None
    progress: Any = None
    result: Any = None
    time_limit: float | None = None
    soft_time_limit: float | None = None


_PLAIN = JobType(name="")


class JobTypeRegistry:
    """A set of :class:`JobType` s, shared by a queue and the workers that use it.

    Thread-safe: registration takes a lock; look-ups read an immutable dict.

    >>> import attrs
    >>> @attrs.frozen
    ... class Greeting:
    ...     name: str
    >>> types = JobTypeRegistry(strict=True)
    >>> types.register("greet", params=Greeting).params is Greeting
    True
    >>> "greet" in types, "other" in types
    (True, False)
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self._lock = threading.Lock()
        # Replaced whole under _lock, never mutated: readers need no lock.
        self._types: dict[str, JobType] = {}
        # Replaced whole under _lock, never mutated: a claim reads it without a lock.
        self._limits: Mapping[str, TypeLimits] = MappingProxyType({})
        #: Whether a registered type has a time limit (so workers with none of
        #: their own can skip looking one up for every job).
        self.has_time_limits = False

    def register(
        self,
        name: str,
        *,
        params: Any = None,
        progress: Any = None,
        result: Any = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> JobType:
        """Register job type *name* with its value classes and time limits, and return it.

        :raises ValueError: *name* is empty or already registered differently,
            or a limit is not a finite number of seconds above 0.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a job type name must be a non-empty string, got {safe_repr(name)}")
        check_time_limit("time_limit", time_limit)
        check_time_limit("soft_time_limit", soft_time_limit)
        job_type = JobType(
            name=name,
            params=params,
            progress=progress,
            result=result,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
        )
        with self._lock:
            existing = self._types.get(name)
            if existing is not None and existing != job_type:
                raise ValueError(
                    f"job type {safe_repr(name)} is already registered as {safe_repr(existing)}"
                )
            self._types = {**self._types, name: job_type}
            if time_limit is not None or soft_time_limit is not None:
                self.has_time_limits = True
        return job_type

    def get(self, name: str) -> JobType:
        """Return the job type *name*; a plain one if unknown and not strict.

        :raises UnknownJobTypeError: *name* is unknown and the registry is strict.
        """
        job_type = self._types.get(name)
        if job_type is not None:
            return job_type
        if self.strict:
            raise UnknownJobTypeError(name)
        return _PLAIN

    def set_limits(self, name: str, limits: TypeLimits | None = None, **options: Any) -> None:
        """Set (or with neither *limits* nor options, clear) the limits of job type *name*.

        *options* are those of :class:`~jobworker.throttling.TypeLimits`
        (``concurrency``, ``key``, ``rate``, ``period``). Every queue that
        shares this registry enforces them at its next claim; every process
        that claims jobs of the type must declare the same limits.

        >>> types = JobTypeRegistry()
        >>> types.set_limits("export", concurrency=2)
        >>> types.limits_of("export").concurrency
        2

        :raises ValueError: *name* is empty, or an option is out of range.
        :raises TypeError: both *limits* and options are given.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a job type name must be a non-empty string, got {safe_repr(name)}")
        if limits is not None and options:
            raise TypeError("give a TypeLimits or options, not both")
        if limits is None and options:
            limits = TypeLimits(**options)
        if limits is not None and not isinstance(limits, TypeLimits):
            raise TypeError(f"limits must be a TypeLimits, got {safe_repr(limits)}")
        with self._lock:
            updated = dict(self._limits)
            if limits is None or limits == TypeLimits():
                updated.pop(name, None)
            else:
                updated[name] = limits
            self._limits = MappingProxyType(updated)

    def limits_of(self, name: str) -> TypeLimits | None:
        """Return the limits of job type *name*, or ``None`` if it has none."""
        return self._limits.get(name)

    @property
    def limits(self) -> Mapping[str, TypeLimits]:
        """Every job type's limits, as a read-only mapping (a snapshot)."""
        return self._limits

    def find(self, name: str) -> JobType | None:
        """Return the registered job type *name*, or ``None``; never raises."""
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[JobType]:
        return iter(list(self._types.values()))

    def __repr__(self) -> str:
        return f"JobTypeRegistry(strict={self.strict}, types={sorted(self._types)})"
