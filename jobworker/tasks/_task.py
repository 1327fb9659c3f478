"""Task: a plain function that runs as a job, and the ``@task`` decorator."""

from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Callable
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Final,
    Generic,
    Literal,
    overload,
)
from uuid import uuid4

import cattrs

from .._limits import MAX_TEXT_LENGTH
from ..default import get_job_queue
from ..errors import JobCancelledError, PermanentJobError, safe_repr
from ..model import (
    JobId,
    JobMetadata,
    PendingJob,
    RunningJob,
    UserId,
    describe_error,
    new_job,
)
from ..observe import task_headers
from ..queues.base import JobQueue
from ..retry import RetryPolicy
from ..serialization import DEFAULT_MAX_PAYLOAD, converter, roundtrip_value
from ._handle import JobFailedError, JobHandle
from ._plan import ArgsPlan
from ._registry import TaskRegistry
from ._types import TaskParams, TaskReturn

if TYPE_CHECKING:
    from ..worker import JobWorker

__all__ = ["TASK_TYPE_PREFIX", "Task", "TaskCall", "TaskContext", "default_registry", "task"]


#: A task named ``n`` makes jobs of type ``TASK_TYPE_PREFIX + n``.
TASK_TYPE_PREFIX: Final = "fn:"

_NO_USER: Final = UserId("")

#: The process's one task registry: ``@task`` fills it unless given another,
#: and the Django Tasks backend registers its ``@task`` functions in it too
#: (under their module paths), so a name is one task's in the whole process.
#: Each user looks up its own kind (:meth:`TaskRegistry.get_as`).
default_registry: Final[TaskRegistry[Any]] = TaskRegistry()


def _add_headers(params: dict[str, Any]) -> None:
    """Store the telemetry headers of this enqueue (a trace context) beside the arguments."""
    headers = task_headers()
    if headers is not None:
        params["headers"] = headers


class TaskContext:
    """What a task that asks for it (``takes_context=True``) gets as its first argument.

    Made per attempt, used from the task's own thread.

    :ivar job: the running job, with the last progress reported.
    """

    __slots__ = ("_worker", "job")

    def __init__(self, worker: JobWorker | None, job: RunningJob[Any, Any] | None) -> None:
        self._worker = worker
        self.job = job

    @property
    def job_id(self) -> str | None:
        """The job's id (``None`` when the function is called directly)."""
        return None if self.job is None else self.job.metadata.id

    @property
    def attempt(self) -> int:
        """The attempt this is: 1 for the first run, 2 for the first retry..."""
        return 1 if self.job is None else self.job.metadata.retry_count + 1

    def report_progress(self, progress: Any, *, force: bool = False) -> None:
        """Record *progress* (a JSON value), at most once per the worker's ``progress_interval``.

        Never raises for a failed write; see :meth:`JobWorker.report_progress`.
        """
        if self._worker is not None and self.job is not None:
            self.job = self._worker.report_progress(self.job, progress, force=force)

    def is_cancelled(self) -> bool:
        """Return whether the job was cancelled (or its claim lost): the task should stop."""
        if self._worker is None or self.job is None:
            return False
        return self._worker.is_cancelled(self.job)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~jobworker.JobCancelledError` if :meth:`is_cancelled`."""
        if self.is_cancelled():
            raise JobCancelledError(f"job {safe_repr(self.job_id)} was cancelled")


class Task(Generic[TaskParams, TaskReturn]):
    """A function that runs as a job; made by :func:`task`.

    Call it to run the function here and now; :meth:`enqueue` to run it in a
    worker. ``TaskParams`` is the function's parameters (without the context, if it
    takes one) and ``TaskReturn`` its return type, so a type checker checks
    :meth:`enqueue` calls and :meth:`JobHandle.result`.

    :ivar name: the task's name, unique in its registry.
    :ivar job_type: the type of its jobs, ``TASK_TYPE_PREFIX + name``.
    """

    def __init__(
        self,
        function: Callable[..., TaskReturn],
        *,
        name: str,
        max_retries: int,
        priority: int,
        retry_policy: RetryPolicy | None,
        takes_context: bool,
    ) -> None:
        self.function = function
        self.name = name
        self.job_type = TASK_TYPE_PREFIX + name
        self.max_retries = max_retries
        self.priority = priority
        self.retry_policy = retry_policy
        self.takes_context = takes_context
        signature = inspect.signature(function)
        if takes_context:
            parameters = list(signature.parameters.values())
            if not parameters or parameters[0].kind not in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                raise TypeError(
                    f"task {name!r} takes_context=True: its first parameter must take the "
                    f"TaskContext by position"
                )
            signature = signature.replace(parameters=parameters[1:])
        # Each enqueue binds its arguments, so a wrong call fails where it is
        # made; a call giving every parameter by position, the usual one, is
        # checked by its length alone when the signature has no */** catch-alls.
        self._bind = signature.bind
        self._arity = (
            len(signature.parameters)
            if all(
                parameter.kind
                in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for parameter in signature.parameters.values()
            )
            else -1
        )
        self._signature = signature
        self._args_plan: ArgsPlan | None = None
        # Whether an argument or the result needs the converter; None until the plan is made.
        self._converts: bool | None = None
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", name)
        self.__qualname__ = getattr(function, "__qualname__", name)
        self.__module__ = getattr(function, "__module__", "")

    def _plan(self) -> ArgsPlan:
        # Built on first use, when annotations defined after the task resolve.
        plan = self._args_plan
        if plan is None:
            plan = self._args_plan = ArgsPlan(self._signature, self.function)
            self._converts = plan.converts or plan.result is not None
        return plan

    def __call__(self, *args: TaskParams.args, **kwargs: TaskParams.kwargs) -> TaskReturn:
        """Call the function here, as if it were not a task (with an empty context)."""
        if self.takes_context:
            return self.function(TaskContext(None, None), *args, **kwargs)
        return self.function(*args, **kwargs)

    def enqueue(self, *args: TaskParams.args, **kwargs: TaskParams.kwargs) -> JobHandle[TaskReturn]:
        """Enqueue a job running this task with these arguments on the default queue.

        The default queue is :func:`~jobworker.get_job_queue`'s.

        :raises TypeError: the arguments do not fit the function's signature.
        :raises SerializationError: an argument cannot be stored.
        """
        return self.enqueue_on(get_job_queue(), *args, **kwargs)

    def enqueue_on(
        self, queue: JobQueue, *args: TaskParams.args, **kwargs: TaskParams.kwargs
    ) -> JobHandle[TaskReturn]:
        """Enqueue a job running this task with these arguments on *queue*.

        :raises TypeError: the arguments do not fit the function's signature.
        :raises SerializationError: an argument cannot be stored.
        """
        if kwargs or len(args) != self._arity or self._converts is not False:
            params = self._params(args, kwargs)
        else:
            # The usual call, inlined: every parameter by position, all plain JSON.
            params = {"args": list(args), "kwargs": kwargs}
        _add_headers(params)
        # new_job's work, without its keyword handling: this runs once per job.
        id = JobId(uuid4().hex)
        queue.create_job(
            PendingJob(
                JobMetadata(
                    id,
                    self.job_type,
                    _NO_USER,
                    _dt.datetime.now(_dt.timezone.utc),
                    0,
                    self.max_retries,
                    self.priority,
                ),
                params,
            )
        )
        return JobHandle(id, queue, self)

    def using(
        self,
        *,
        delay: float | None = None,
        run_after: _dt.datetime | None = None,
        priority: int | None = None,
        id: str | None = None,
        user_id: str = "",
    ) -> TaskCall[TaskParams, TaskReturn]:
        """Return this task with options for the jobs its ``enqueue`` calls make.

        ``task.using(delay=60).enqueue(...)`` runs no sooner than a minute
        from now (by the queue's clock); ``run_after`` gives the time itself.
        ``priority`` replaces the task's; ``id`` and ``user_id`` are the job's.

        :raises ValueError: *delay* is negative or not finite, or both *delay*
            and *run_after* are given.
        """
        if delay is not None:
            if run_after is not None:
                raise ValueError("give delay or run_after, not both")
            if isinstance(delay, bool) or not (0 <= delay < float("inf")):
                raise ValueError(f"delay must be seconds >= 0, got {safe_repr(delay)}")
        options = {
            "delay": delay,
            "run_after": run_after,
            "priority": self.priority if priority is None else priority,
            "id": id,
            "user_id": user_id,
        }
        return TaskCall(self, options)

    def _enqueue_with(
        self,
        queue: JobQueue,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> JobHandle[TaskReturn]:
        """Enqueue with the options of :meth:`using` (not the fast path: options vary)."""
        run_after = options["run_after"]
        if options["delay"] is not None:
            run_after = queue.clock.now() + _dt.timedelta(seconds=options["delay"])
        params = self._params(args, kwargs)
        _add_headers(params)
        job = new_job(
            self.job_type,
            params,
            id=options["id"],
            user_id=options["user_id"],
            max_retries=self.max_retries,
            priority=options["priority"],
            run_after=run_after,
        )
        queue.create_job(job)
        return JobHandle(job.metadata.id, queue=queue, task=self)

    def handle(self, id: str, *, queue: JobQueue | None = None) -> JobHandle[TaskReturn]:
        """Return a handle on this task's job *id*, in *queue* (default: the default queue)."""
        return JobHandle(id, queue=get_job_queue() if queue is None else queue, task=self)

    def run_eagerly(self, *args: TaskParams.args, **kwargs: TaskParams.kwargs) -> TaskReturn:
        """Run the task in this thread, with the round trip a queue would make.

        For tests: the arguments are checked and stored as JSON and read back
        as a worker reads them, then the result likewise, so what a real
        queue refuses (an argument or result that cannot be stored, or is
        over the default size cap) is refused here too. A raising task
        raises :class:`JobFailedError`, as :meth:`JobHandle.result` does;
        retries are not made.

        :raises TypeError: the arguments do not fit the function's signature.
        :raises SerializationError: an argument or the result cannot be stored.
        :raises PayloadTooLargeError: one is over the default payload cap.
        """
        params, _ = roundtrip_value(
            self._params(args, kwargs), None, what="params", limit=DEFAULT_MAX_PAYLOAD
        )
        job_id = f"eager-{self.name}"
        try:
            stored = self._run(None, None, params)
        except JobCancelledError:
            raise
        except Exception as exc:  # broad: any error of the task fails the job
            raise JobFailedError(job_id, describe_error(exc)) from exc
        result, _ = roundtrip_value(stored, None, what="result", limit=DEFAULT_MAX_PAYLOAD)
        plan = self._plan()
        if plan.result is not None and result is not None:
            result = converter.structure(result, plan.result)
        return result  # type: ignore[no-any-return]

    def _params(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return the stored params of a call: ``{"args": [...], "kwargs": {...}}``."""
        if kwargs or len(args) != self._arity:
            try:
                self._bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"task {self.name}: {exc}") from None
        plan = self._args_plan or self._plan()
        if plan.converts:
            stored, named = plan.dump_args(args, kwargs)
            return {"args": stored, "kwargs": named}
        return {"args": list(args), "kwargs": kwargs}

    def _run(self, worker: JobWorker | None, job: RunningJob[Any, Any] | None, params: Any) -> Any:
        """Run the function on stored *params*; return its result as stored."""
        try:
            args = params["args"]
            kwargs = params["kwargs"]
            if type(args) is not list or type(kwargs) is not dict:
                raise TypeError
        except (TypeError, KeyError):
            raise PermanentJobError(
                f"task {self.name}: params must be {{'args': [...], 'kwargs': {{...}}}}, "
                f"got {safe_repr(params)[:200]}"
            ) from None
        if self._converts is False and not self.takes_context:
            return self.function(*args, **kwargs)  # plain JSON in, plain JSON out
        plan = self._args_plan or self._plan()
        if plan.converts:
            try:
                args, kwargs = plan.load_args(args, kwargs)
            except (
                TypeError,
                ValueError,
                KeyError,
                AttributeError,
                cattrs.BaseValidationError,
            ) as exc:
                # Stored arguments that do not fit the signature never will: no retry.
                raise PermanentJobError(
                    f"task {self.name}: stored arguments do not fit its parameters: {exc}"
                ) from None
        if self.takes_context:
            result = self.function(TaskContext(worker, job), *args, **kwargs)
        else:
            result = self.function(*args, **kwargs)
        if plan.result is not None and result is not None:
            return converter.unstructure(result, plan.result)
        return result

    def __repr__(self) -> str:
        return f"<Task {self.name!r}>"


class TaskCall(Generic[TaskParams, TaskReturn]):
    """A task with options for its next jobs; made by :meth:`Task.using`."""

    __slots__ = ("_options", "task")

    def __init__(self, task: Task[TaskParams, TaskReturn], options: dict[str, Any]) -> None:
        self.task = task
        self._options = options

    def enqueue(self, *args: TaskParams.args, **kwargs: TaskParams.kwargs) -> JobHandle[TaskReturn]:
        """As :meth:`Task.enqueue`, with these options."""
        return self.task._enqueue_with(get_job_queue(), args, kwargs, self._options)

    def enqueue_on(
        self, queue: JobQueue, *args: TaskParams.args, **kwargs: TaskParams.kwargs
    ) -> JobHandle[TaskReturn]:
        """As :meth:`Task.enqueue_on`, with these options."""
        return self.task._enqueue_with(queue, args, kwargs, self._options)

    def __repr__(self) -> str:
        given = ", ".join(f"{key}={value!r}" for key, value in self._options.items() if value)
        return f"<TaskCall {self.task.name!r} {given}>"


@overload
def task(
    function: Callable[TaskParams, TaskReturn],
    /,
) -> Task[TaskParams, TaskReturn]: ...


@overload
def task(
    *,
    name: str | None = ...,
    max_retries: int = ...,
    priority: int = ...,
    retry_policy: RetryPolicy | None = ...,
    takes_context: Literal[False] = ...,
    registry: TaskRegistry[Any] | None = ...,
) -> Callable[[Callable[TaskParams, TaskReturn]], Task[TaskParams, TaskReturn]]: ...


@overload
def task(
    *,
    name: str | None = ...,
    max_retries: int = ...,
    priority: int = ...,
    retry_policy: RetryPolicy | None = ...,
    takes_context: Literal[True],
    registry: TaskRegistry[Any] | None = ...,
) -> Callable[
    [Callable[Concatenate[TaskContext, TaskParams], TaskReturn]], Task[TaskParams, TaskReturn]
]: ...


def task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    priority: int = 0,
    retry_policy: RetryPolicy | None = None,
    takes_context: bool = False,
    registry: TaskRegistry[Any] | None = None,
) -> Any:
    """Make a plain function a :class:`Task`, registered under its name.

    Use it bare (``@task``) or with options (``@task(max_retries=5)``).

    :param name: the task's name (default: ``module.qualname`` of the
        function); its jobs have type ``TASK_TYPE_PREFIX + name``.
    :param max_retries: retries after a failed attempt, as a job's
        ``max_retries``.
    :param priority: the jobs' priority (higher runs first).
    :param retry_policy: the delay before a retry (default: the worker's).
    :param takes_context: pass a :class:`TaskContext` as the first argument,
        for progress and cancellation.
    :param registry: where to register it (default:
        :data:`jobworker.tasks.default_registry`).
    :raises ValueError: the name is taken by another function, or is not a
        valid job type, or an option is out of range.
    """
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {safe_repr(max_retries)}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority must be an int, got {safe_repr(priority)}")

    def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
        if not callable(function):
            raise TypeError(f"@task needs a function, got {safe_repr(function)}")
        origin = f"{function.__module__}.{function.__qualname__}"
        task_name = origin if name is None else name
        if not task_name or len(TASK_TYPE_PREFIX + task_name) > MAX_TEXT_LENGTH:
            most = MAX_TEXT_LENGTH - len(TASK_TYPE_PREFIX)
            raise ValueError(f"task name must be 1 to {most} characters, got {task_name!r}")
        made: Task[Any, Any] = Task(
            function,
            name=task_name,
            max_retries=max_retries,
            priority=priority,
            retry_policy=retry_policy,
            takes_context=takes_context,
        )
        (default_registry if registry is None else registry).register(
            task_name, made, origin=origin
        )
        return made

    if function is not None:
        return decorate(function)
    return decorate
