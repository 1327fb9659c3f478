"""A backend for Django's Tasks framework that runs ``@task`` functions on jobworker.

``django.tasks`` on Django 6, the ``django_tasks`` backport on Django 5.2::

    TASKS = {
        "default": {
            "BACKEND": "jobworker.contrib.django.tasks.JobworkerBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"max_retries": 2},
        }
    }

A task becomes a job in the project's queue (:func:`~jobworker.contrib.django.get_queue`)
of type ``"task:<queue_name>"``, with the task's priority and ``run_after``;
enqueued inside ``transaction.atomic()``, it exists only if the transaction
commits. A :class:`TaskWorker` runs it; the result id is the job id.

No name stored in a job is ever imported: a job names its task, and the task
is looked up among those this process defined (each ``@task`` function of
this backend is registered when its module is imported; the app imports the
``tasks`` module of every installed app at startup). A job naming any other
task fails at once with :class:`~jobworker.UnknownTaskError`. The registry
is :data:`jobworker.tasks.default_registry`, the one :func:`jobworker.task`
fills: a name belongs to one task in the whole process, Django's or
jobworker's, and defining a second under it raises :class:`ValueError`.
:meth:`JobworkerBackend.get_handle` gives the :class:`~jobworker.JobHandle`
of a task's job, as :meth:`jobworker.Task.enqueue` does.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import traceback
from typing import Any, ClassVar, Final, NoReturn

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from ...attempts import AttemptError
from ...errors import JobworkerError
from ...model import (
    MAX_ERROR_LENGTH,
    AnyJob,
    CancelledJob,
    CompleteJob,
    FailedJob,
    PendingJob,
    RunningJob,
    new_job,
)
from ...observe import task_headers
from ...queues.base import JobQueue
from ...tasks import JobHandle, UnknownTaskError, default_registry
from ._tasks_api import (
    DEFAULT_TASK_BACKEND_ALIAS,
    BaseTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from .queues import enqueue_job, get_queue, read_job
from .workers import DjangoJobWorker

__all__ = [
    "JOB_TYPE_PREFIX",
    "JobworkerBackend",
    "TaskFailedError",
    "TaskWorker",
    "UnknownTaskError",
    "get_registered_task",
    "unknown_task",
]

#: A task on queue ``q`` is a job of type ``JOB_TYPE_PREFIX + q``.
JOB_TYPE_PREFIX: Final = "task:"

_STATUS: Final[dict[str, TaskResultStatus]] = {
    "pending": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "complete": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
}
_OPTIONS: Final = frozenset({"max_retries"})
_ERROR: Final = re.compile(r"TaskFailedError: ([\w.]+)")
_LIMIT: Final = MAX_ERROR_LENGTH - len("TaskFailedError: ")
_UNKNOWN_ERROR: Final = "jobworker.errors.JobworkerError"
#: The worker of an attempt stored before attempts were kept.
_UNKNOWN_WORKER: Final = "jobworker"


class TaskFailedError(JobworkerError):
    """A task function raised: what jobs of earlier releases stored as their error.

    No longer raised: a task's exception now fails its attempt as it is, and
    the job's ``attempts`` keep its class, message and traceback apart. Kept
    so that code which imports it, and jobs stored before, still work.
    """

    def __init__(self, error: BaseException) -> None:
        kind = type(error)
        head = f"{kind.__module__}.{kind.__qualname__}"
        text = str(error)
        if text:
            head = f"{head}: {text[:500]}"
        trace = "".join(traceback.format_exception(error))
        room = _LIMIT - len(head) - 2
        if len(trace) > room:
            trace = "...\n" + trace[len(trace) - room + 4 :]
        super().__init__(f"{head}\n\n{trace}")


def _origin(task: Task[Any, Any]) -> str:
    """Return what defined *task*, as the registry records it (apart from ``@jobworker.task``)."""
    return f"{task.module_path} (a Django task)"


def get_registered_task(name: object) -> Task[Any, Any] | None:
    """Return the task this process defined with the module path *name*, or ``None``.

    Looked up in :data:`jobworker.tasks.default_registry`, which
    ``validate_task`` fills (each ``@task`` of this backend, as its module
    is imported, and again at each enqueue). Thread-safe; never imports anything.
    """
    return default_registry.get_as(name, Task)


def unknown_task(*args: Any, **kwargs: Any) -> NoReturn:
    """Stand in, in a result, for a task this process does not know; calling it raises.

    :raises UnknownTaskError: always.
    """
    raise UnknownTaskError("an unknown task")


def _local(value: _dt.datetime | None) -> _dt.datetime | None:
    """Return the stored (UTC) time *value* as Django's settings want it.

    With ``USE_TZ = False``, naive and in ``TIME_ZONE``, as Django's own
    fields are; aware otherwise.
    """
    if value is None or settings.USE_TZ:
        return value
    return timezone.make_naive(value)


def _attempt_error(error: AttemptError) -> TaskError:
    """Return the :class:`TaskError` of one attempt's error."""
    # The formatted traceback ends with the whole message, as Django's own
    # backends store it; a lost worker has no traceback, only its reason.
    trace = error.traceback or error.describe()
    return TaskError(exception_class_path=error.class_path or _UNKNOWN_ERROR, traceback=trace)


def _task_error(stored: str) -> TaskError:
    """Return the :class:`TaskError` a failed job of an earlier release stored as its error."""
    match = _ERROR.match(stored)
    if match is None:
        # Not raised by the task function: a lost worker, or jobworker's own error.
        return TaskError(exception_class_path=_UNKNOWN_ERROR, traceback=stored)
    trace = stored.partition("\n\n")[2]
    return TaskError(exception_class_path=match.group(1), traceback=trace)


class JobworkerBackend(BaseTaskBackend):
    """Run ``@task`` functions as jobs in the project's jobworker queue.

    Supports priorities, ``run_after``, queue names, results from any
    process (:meth:`get_result`) and retries: ``OPTIONS = {"max_retries": n}``
    lets a failing task run up to ``1 + n`` times, with the worker's backoff
    (``0`` by default, as Django's Tasks expect). Async task functions run
    to completion in the worker's thread.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - _OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) {unknown}; "
                f"known: {sorted(_OPTIONS)}"
            )
        max_retries = self.options.get("max_retries", 0)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['max_retries'] must be an int >= 0, "
                f"got {max_retries!r}"
            )
        self.max_retries: int = max_retries

    def validate_task(self, task: Task[Any, Any]) -> None:
        """Check *task* as Django does, then register it: jobs may name it from now on."""
        super().validate_task(task)
        if task.func is not unknown_task:
            default_registry.register(task.module_path, task, origin=_origin(task))

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """Store *task* with its arguments as a job; return its result, ``READY``.

        Inside ``transaction.atomic()`` the job exists only if the transaction commits.
        """
        self.validate_task(task)
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)
        params = {
            "task": task.module_path,
            "args": normalize_json(args),
            "kwargs": normalize_json(kwargs),
            "backend": self.alias,
            "takes_context": task.takes_context,
        }
        headers = task_headers()  # a trace context, where tracing is instrumented
        if headers is not None:
            params["headers"] = headers
        job = new_job(
            JOB_TYPE_PREFIX + task.queue_name,
            params,
            max_retries=self.max_retries,
            priority=task.priority,
            run_after=run_after,
        )
        result = self._result(enqueue_job(job), task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """Return the result of the task whose id is *result_id*, as stored now.

        Inside ``transaction.atomic()`` the job is read through the
        connection that enqueued it, so a task enqueued in this transaction is
        found. Imports nothing: a job naming a task this process does not
        know gives a result whose task is :func:`unknown_task`.

        :raises TaskResultDoesNotExist: no task of this backend has that id.
        """
        job = read_job(result_id) if isinstance(result_id, str) else None
        if job is None or not self._owns(job):
            raise TaskResultDoesNotExist(result_id)
        return self._result(job)

    def get_handle(self, result_id: str) -> JobHandle[Any]:
        """Return the :class:`~jobworker.JobHandle` of the task whose id is *result_id*.

        What Django's :class:`TaskResult` lacks: :meth:`~jobworker.JobHandle.wait`,
        :meth:`~jobworker.JobHandle.cancel` and live
        :attr:`~jobworker.JobHandle.progress`. The handle reads the project's
        queue, outside any transaction; its :meth:`~jobworker.JobHandle.result`
        is the task's JSON return value.

        :raises TaskResultDoesNotExist: no task of this backend has that id.
        """
        self.get_result(result_id)  # the same checks: an id of this backend's
        return JobHandle(result_id, queue=get_queue())

    def _owns(self, job: AnyJob) -> bool:
        params = job.params
        return (
            job.metadata.type.startswith(JOB_TYPE_PREFIX)
            and isinstance(params, dict)
            and params.get("backend") == self.alias
        )

    def _task(self, job: AnyJob, *, strict: bool = False) -> Task[Any, Any]:
        """Return the :class:`Task` a job runs, as it was enqueued; never imports.

        :raises UnknownTaskError: (*strict* only) this process defined no such
            task; otherwise :func:`unknown_task` stands in for it.
        """
        name = job.params["task"]
        found = get_registered_task(name)
        if found is None:
            if strict:
                raise UnknownTaskError(name)
            found = Task(
                func=unknown_task,
                priority=job.metadata.priority,
                backend=self.alias,
                queue_name=job.metadata.type.removeprefix(JOB_TYPE_PREFIX),
                run_after=None,
                takes_context=False,
            )
        run_after = job.metadata.run_after if job.metadata.retry_count == 0 else None
        return dataclasses.replace(
            found,
            priority=job.metadata.priority,
            queue_name=job.metadata.type.removeprefix(JOB_TYPE_PREFIX),
            backend=self.alias,
            run_after=_local(run_after),
        )

    def _result(self, job: AnyJob, task: Task[Any, Any] | None = None) -> TaskResult[Any]:
        """Return the :class:`TaskResult` that *job* stands for.

        From the job's attempts: ``started_at`` is the first attempt's start,
        ``last_attempted_at`` the latest's, ``errors`` and ``worker_ids``
        have one entry per failed attempt and per attempt (the worker's
        name, as the attempt recorded it).
        """
        history = job.attempts
        errors = [_attempt_error(a.error) for a in history if a.error is not None]
        worker_ids = [attempt.worker for attempt in history]
        started = history[0].started_at if history else None
        last = history[-1].started_at if history else None
        completed = None
        if isinstance(job, (RunningJob, CompleteJob)):
            # The attempt that runs, or that completed: the job's own fields.
            worker = job.claim.worker if isinstance(job, RunningJob) else job.worker
            worker_ids.append(worker or _UNKNOWN_WORKER)
            last = job.started_at
            started = started or last
        if isinstance(job, (CompleteJob, FailedJob, CancelledJob)):
            completed = job.completed_at
            if started is None and job.started_at is not None:
                # Stored by an earlier release, without its attempts.
                started = last = job.started_at
                worker_ids.append(_UNKNOWN_WORKER)
        if isinstance(job, FailedJob) and not history:
            errors.append(_task_error(job.error))
        elif isinstance(job, CancelledJob):
            errors.append(
                TaskError(
                    exception_class_path="jobworker.errors.JobCancelledError",
                    traceback="the job was cancelled",
                )
            )
        result: TaskResult[Any] = TaskResult(
            task=self._task(job) if task is None else task,
            id=job.metadata.id,
            status=_STATUS[job.status],
            enqueued_at=_local(job.metadata.created),
            started_at=_local(started),
            finished_at=_local(completed),
            last_attempted_at=_local(last),
            args=job.params["args"],
            kwargs=job.params["kwargs"],
            backend=self.alias,
            errors=errors,
            worker_ids=worker_ids,
        )
        if isinstance(job, CompleteJob):
            object.__setattr__(result, "_return_value", job.result)
        return result


def _backend(alias: str) -> JobworkerBackend:
    backend = task_backends[alias]
    if not isinstance(backend, JobworkerBackend):
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}] is {type(backend).__name__}, not "
            f"jobworker.contrib.django.tasks.JobworkerBackend"
        )
    return backend


class TaskWorker(DjangoJobWorker):
    """Run the tasks of one Tasks backend.

    :param queue: the queue; :func:`~jobworker.contrib.django.get_queue` by default.
    :param backend: the alias in ``TASKS`` of a :class:`JobworkerBackend`.
    :param queue_names: the task queues to take; the backend's ``QUEUES``
        by default (every queue if it lists none).

    Also takes the keyword arguments of :class:`~jobworker.JobWorker`. A
    task that raises fails the attempt and is retried while the backend's
    ``max_retries`` allow.
    """

    #: Its jobs' params are the backend's envelope, which may carry headers
    #: (see :func:`jobworker.observe.params_headers`).
    headers_in_params: ClassVar[bool] = True

    def __init__(
        self,
        queue: JobQueue | None = None,
        *,
        backend: str = DEFAULT_TASK_BACKEND_ALIAS,
        queue_names: list[str] | tuple[str, ...] | None = None,
        **options: Any,
    ) -> None:
        self.backend = _backend(backend)
        names = sorted(self.backend.queues if queue_names is None else queue_names)
        self.queue_names = frozenset(names) if names else None
        types = None if self.queue_names is None else [JOB_TYPE_PREFIX + n for n in names]
        super().__init__(get_queue() if queue is None else queue, job_types=types, **options)

    def get_worker_name(self) -> str:
        """Return ``tasks-<backend alias>``."""
        return f"tasks-{self.backend.alias}"

    def can_process_job(self, job: AnyJob) -> bool:
        """Take the tasks of this worker's backend and queues."""
        if not self.backend._owns(job):
            return False
        name = job.metadata.type.removeprefix(JOB_TYPE_PREFIX)
        return self.queue_names is None or name in self.queue_names

    def execute_job(self, job: AnyJob) -> Any:
        """Call the task function; return its value, made JSON-safe.

        Whatever the task function raises (``SystemExit`` included) fails the
        attempt as it is: the job's attempts record its class, message and
        traceback.
        """
        self.backend._task(job, strict=True)  # an unknown task fails here, unimported
        result = self.backend._result(job)
        task = result.task
        task_started.send(type(self.backend), task_result=result)
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
        else:
            value = task.call(*result.args, **result.kwargs)
        return normalize_json(value)

    def on_job_complete(self, job: AnyJob) -> None:
        """Send ``task_finished`` for the finished task."""
        task_finished.send(type(self.backend), task_result=self.backend._result(job))

    def on_job_fail(self, job: AnyJob, error: BaseException) -> None:
        """Send ``task_finished`` once the task has failed for good."""
        if not isinstance(job, PendingJob):
            task_finished.send(type(self.backend), task_result=self.backend._result(job))
