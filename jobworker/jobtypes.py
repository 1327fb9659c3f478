"""Job types: which classes a job type's params, progress and result use.

A job type that is not registered carries plain JSON values (dicts, lists,
strings, numbers, booleans, ``None``). Registering a type with attrs classes
lets its values round-trip through the package's converter, on every backend
alike. A strict registry refuses jobs of unregistered types at ``create_job``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import attrs

from .errors import UnknownJobTypeError, safe_repr
from .model import check_time_limit

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

    def find(self, name: str) -> JobType | None:
        """Return the registered job type *name*, or ``None``; never raises."""
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[JobType]:
        return iter(list(self._types.values()))

    def __repr__(self) -> str:
        return f"JobTypeRegistry(strict={self.strict}, types={sorted(self._types)})"
