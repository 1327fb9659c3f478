"""Function tasks: ``@task`` on a plain function, run by a :class:`TaskWorker`.

A task's jobs have type ``TASK_TYPE_PREFIX + name`` and params
``{"args": [...], "kwargs": {...}}``; a worker finds the task by name in a
:class:`TaskRegistry` of tasks this process defined, never by importing a
name read from a job.
"""

from ._handle import JobFailedError, JobHandle
from ._registry import TaskRegistry, UnknownTaskError
from ._task import TASK_TYPE_PREFIX, Task, TaskCall, TaskContext, default_registry, task
from ._worker import TaskWorker

__all__ = [
    "TASK_TYPE_PREFIX",
    "JobFailedError",
    "JobHandle",
    "Task",
    "TaskCall",
    "TaskContext",
    "TaskRegistry",
    "TaskWorker",
    "UnknownTaskError",
    "default_registry",
    "task",
]
