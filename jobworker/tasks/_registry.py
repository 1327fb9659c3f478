"""The task registry: task names to the task objects this process defined.

No name read from a stored job is ever imported: a job names its task, and
the task is looked up here, among those whose modules this process imported.

Threads: ``_lock`` serialises writers; readers look a name up in the plain
dict without it (one dict operation is atomic, and iteration copies the
values first), so the worker's per-job lookup is one ``dict.get``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from ..errors import PermanentJobError, safe_repr

__all__ = ["TaskRegistry", "UnknownTaskError"]

_T = TypeVar("_T")
_K = TypeVar("_K")


class UnknownTaskError(PermanentJobError, LookupError):
    """A job names a task this process never defined; nothing was imported.

    Raised in a worker, it fails the job at once (it is a
    :class:`~jobworker.PermanentJobError`): another attempt would find the
    same registry.

    :ivar name: the task name the job gave.
    """

    def __init__(self, name: object) -> None:
        super().__init__(
            f"no task {safe_repr(name)} is defined in this process: only tasks whose "
            f"modules this process imported run, and a job's task name is never imported"
        )
        self.name = name


class TaskRegistry(Generic[_T]):
    """Tasks by name, filled as their modules are imported.

    Thread-safe. Registering a second task under a name another function
    holds raises :class:`ValueError`; the same function defined again (its
    module reloaded) replaces the first. One registry may hold tasks of
    several kinds; :meth:`get_as` finds one kind's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # name -> task; written under _lock, read without it.
        self._tasks: dict[str, _T] = {}
        # name -> "module.qualname" of the function, to tell a reload from a clash.
        self._origins: dict[str, str] = {}

    def register(self, name: str, task: _T, *, origin: str) -> None:
        """Register *task* as *name*; *origin* names the code that defined it.

        :raises ValueError: *name* belongs to a task of another *origin*.
        """
        with self._lock:
            held = self._origins.get(name)
            if held is not None and held != origin:
                raise ValueError(f"task name {name!r} is already used by {held}")
            self._origins[name] = origin
            self._tasks[name] = task

    def get(self, name: object) -> _T | None:
        """Return the task registered as *name*, or ``None``. Never imports anything."""
        if not isinstance(name, str):
            return None
        return self._tasks.get(name)

    def get_as(self, name: object, kind: type[_K]) -> _K | None:
        """Return the entry registered as *name* if it is a *kind*, else ``None``.

        For a registry that holds tasks of several kinds (as
        :data:`jobworker.tasks.default_registry` holds ``@jobworker.task``
        functions and the Django Tasks backend's tasks): each user looks up
        its own kind. Never imports anything.
        """
        found = self.get(name)
        return found if isinstance(found, kind) else None

    def require(self, name: object) -> _T:
        """Return the task registered as *name*.

        :raises UnknownTaskError: no task of that name is registered.
        """
        task = self.get(name)
        if task is None:
            raise UnknownTaskError(name)
        return task

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._tasks

    def __iter__(self) -> Iterator[_T]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<TaskRegistry {len(self._tasks)} tasks>"
