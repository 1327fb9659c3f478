"""TaskWorker: a JobWorker that runs task jobs by looking their names up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ..model import AnyJob, RunningJob
from ..queues.base import JobQueue
from ..worker import JobWorker
from ._registry import TaskRegistry, UnknownTaskError
from ._task import TASK_TYPE_PREFIX, Task, default_registry

__all__ = ["TaskWorker"]

_PREFIX_LENGTH = len(TASK_TYPE_PREFIX)


class TaskWorker(JobWorker):
    """Run the jobs of tasks: each job's task is looked up by name, never imported.

    :param queue: the queue to take jobs from.
    :param tasks: the tasks this worker runs. ``None`` (the default): every
        task of *registry*, including those registered later.
    :param registry: where task names are looked up.
    :param name: the worker's name, in logs and claims.

    The other keyword options are :class:`~jobworker.JobWorker`'s. Given
    *tasks*, the worker takes the jobs of those tasks only, through the
    queue's type index. Without, it takes every task job (type
    ``TASK_TYPE_PREFIX + name``): one whose name *registry* lacks fails at
    once with :class:`UnknownTaskError`, and nothing is imported. Tasks and
    class workers run side by side on one queue.
    """

    #: Its jobs' params are jobworker's envelope, which may carry headers
    #: (see :func:`jobworker.observe.params_headers`).
    headers_in_params: ClassVar[bool] = True

    def __init__(
        self,
        queue: JobQueue,
        tasks: Iterable[Task[Any, Any]] | None = None,
        *,
        registry: TaskRegistry[Any] | None = None,
        name: str = "TaskWorker",
        **options: Any,
    ) -> None:
        # job type -> task, for the tasks given; None: look names up in the registry.
        own: dict[str, Task[Any, Any]] | None = None
        if tasks is not None:
            if isinstance(tasks, Task):
                raise TypeError("tasks must be a collection of tasks, not one task")
            own = {}
            for task in tasks:
                if not isinstance(task, Task):
                    raise TypeError(f"tasks must be Task objects, got {type(task).__name__}")
                own[task.job_type] = task
            if "job_types" in options:
                raise TypeError("job_types is set by tasks: give one or the other")
            # Claimed through the queue's type index, as a class worker's types are.
            options["job_types"] = own
        super().__init__(queue, **options)
        self.registry = default_registry if registry is None else registry
        self.name = name
        self._own = own

    def get_worker_name(self) -> str:
        return self.name

    def _task(self, job_type: str) -> Task[Any, Any] | None:
        own = self._own
        if own is not None:
            return own.get(job_type)
        # A Django task of the same registry is not ours to run: unknown here.
        found = self.registry._tasks.get(job_type[_PREFIX_LENGTH:])
        return found if isinstance(found, Task) else None

    def can_process_job(self, job: AnyJob) -> bool:
        job_type = job.metadata.type
        own = self._own
        if own is not None:
            return job_type in own
        # Every task job: one whose name the registry lacks is claimed, to be failed.
        return job_type.startswith(TASK_TYPE_PREFIX)

    def execute_job(self, job: AnyJob) -> Any:
        own = self._own
        task = own.get(job.metadata.type) if own is not None else self._task(job.metadata.type)
        if task is None:
            raise UnknownTaskError(job.metadata.type[_PREFIX_LENGTH:])
        return task._run(self, job, job.params)  # type: ignore[arg-type]  # a running job

    def get_retry_delay(self, job: RunningJob[Any, Any], error: BaseException) -> float:
        task = self._task(job.metadata.type)
        if task is not None and task.retry_policy is not None:
            return task.retry_policy.delay(job.metadata.retry_count, self._rng)
        return super().get_retry_delay(job, error)
