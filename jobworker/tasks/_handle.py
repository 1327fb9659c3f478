"""JobHandle: one enqueued job, read from any process by its id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic

import cattrs

from ..errors import (
    JobCancelledError,
    JobNotFoundError,
    JobworkerError,
    SerializationError,
    safe_repr,
)
from ..model import AnyJob, CompleteJob, FailedJob, JobId, JobStatus
from ..queues.base import JobQueue
from ..serialization import converter
from ._types import TaskReturn

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["JobFailedError", "JobHandle"]


class JobFailedError(JobworkerError):
    """The job failed for good; raised by :meth:`JobHandle.result`.

    :ivar job_id: the job's id.
    :ivar error_type: the name of the exception class the job's last attempt
        raised (``"ValueError"``), as stored; nothing is imported from it.
    :ivar error: the stored error, ``"Type: message"``.
    """

    def __init__(self, job_id: str, error: str) -> None:
        super().__init__(f"job {safe_repr(job_id)} failed: {error}")
        self.job_id = job_id
        self.error = error
        head, sep, _ = error.partition(":")
        self.error_type = head if sep and head.isidentifier() else ""


class JobHandle(Generic[TaskReturn]):
    """A job in a queue, by id: its status, progress and result.

    Returned by :meth:`Task.enqueue`; build one from an id in any process
    with ``JobHandle(id, queue=queue)`` or, typed, ``task.handle(id)``.
    Every property and method reads the queue afresh; nothing is cached.
    Thread-safe as the queue is.

    :param id: the job's id.
    :param queue: the queue holding it.
    :param task: the task that made it: its return annotation structures
        :meth:`result` (without it, the result is the stored JSON value).
    """

    __slots__ = ("id", "queue", "task")

    def __init__(self, id: str, queue: JobQueue, task: Task[Any, TaskReturn] | None = None) -> None:
        self.id: JobId = id  # type: ignore[assignment]  # a NewType of str: no call per handle
        self.queue = queue
        self.task = task

    def refresh(self) -> AnyJob:
        """Return the job as the queue holds it now.

        :raises JobNotFoundError: no such job (or it was cleaned up).
        """
        job = self.queue.get_job(self.id)
        if job is None:
            raise JobNotFoundError(self.id)
        return job

    @property
    def status(self) -> JobStatus:
        """The job's status, read now."""
        return self.refresh().status

    @property
    def progress(self) -> Any:
        """The progress the task last reported (``None`` if none or not running), read now."""
        return getattr(self.refresh(), "progress", None)

    def wait(self, timeout: float | None = None) -> AnyJob:
        """Block until the job ends (complete, failed or cancelled) and return it.

        :raises WaitTimeoutError: it did not end within *timeout* seconds.
        :raises JobNotFoundError: no such job.
        """
        return self.queue.wait_for_job(self.id, timeout=timeout)

    def result(self, timeout: float | None = None) -> TaskReturn:
        """Wait for the job to end and return its result.

        :raises JobFailedError: the job failed for good (retries spent, or a
            permanent error).
        :raises JobCancelledError: the job was cancelled.
        :raises WaitTimeoutError: it did not end within *timeout* seconds.
        :raises SerializationError: the stored result does not fit the task's
            return annotation.
        """
        job = self.wait(timeout)
        if isinstance(job, CompleteJob):
            result: Any = job.result
            plan = None if self.task is None else self.task._plan()
            if plan is not None and plan.result is not None and result is not None:
                try:
                    result = converter.structure(result, plan.result)
                except (TypeError, ValueError, KeyError, cattrs.BaseValidationError) as exc:
                    raise SerializationError(
                        f"job {safe_repr(self.id)}: stored result does not fit "
                        f"{plan.result!r}: {exc}"
                    ) from exc
            return result  # type: ignore[no-any-return]
        if isinstance(job, FailedJob):
            raise JobFailedError(self.id, job.error)
        raise JobCancelledError(f"job {safe_repr(self.id)} was cancelled")

    def cancel(self) -> bool:
        """Cancel the job; return whether this call cancelled it.

        A running task sees it through its context's
        :meth:`~TaskContext.is_cancelled`.
        """
        return self.queue.cancel_job(self.id)

    def __repr__(self) -> str:
        return f"<JobHandle {self.id!r}>"
