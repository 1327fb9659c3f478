"""The Flask extension: one queue per app, its workers, and ``enqueue``."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from typing import Any, TypeVar

from flask import Flask, current_app

from ...errors import QueueClosedError, WorkerStateError
from ...model import PendingJob, new_job
from ...queues.base import JobQueue
from ...runner import Runner
from ...schedules import Scheduler
from ...tasks import JobHandle, Task
from ...tasks._types import TaskParams, TaskReturn
from ...urls import open_queue
from ...worker import JobWorker
from . import _exit
from ._config import DEFAULTS, ConfigurationError, Settings, read_settings
from ._context import with_app_context

__all__ = ["EXTENSION_KEY", "AppState", "FlaskJobworker", "get_state"]

log = logging.getLogger("jobworker.contrib.flask")

P = TypeVar("P")

#: The key of the app's state in ``app.extensions``.
EXTENSION_KEY = "jobworker"


class AppState:
    """One app's queue and the workers it runs in threads. Thread-safe.

    :ivar app: the app.
    :ivar settings: its checked ``JOBWORKER_*`` settings.
    """

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.worker_classes = tuple(with_app_context(cls, app) for cls in settings.workers)
        # Held while the queue opens and while workers start, so that two
        # requests arriving together open one queue and start one set of workers.
        self._lock = threading.Lock()
        given = settings.queue if isinstance(settings.queue, JobQueue) else None
        self._queue: JobQueue | None = given  # guarded by _lock
        if given is not None:
            self._apply_limits(given)
        self._owns_queue = given is None
        self._runner: Runner | None = None  # guarded by _lock
        self._autostarted = False  # guarded by _lock (read without it on the fast path)
        self._closed = False  # guarded by _lock

    @property
    def queue_url(self) -> str | None:
        """The configured queue URL, or ``None`` if the app gave a queue object."""
        return self.settings.queue if isinstance(self.settings.queue, str) else None

    def get_queue(self) -> JobQueue:
        """Return the app's queue, opening it on first use.

        :raises QueueClosedError: :meth:`close` was called.
        :raises ConfigurationError: ``JOBWORKER_QUEUE_OPTIONS`` holds a value
            the queue refuses.
        """
        with self._lock:
            return self._get_queue_locked()

    def _get_queue_locked(self) -> JobQueue:
        if self._closed:
            raise QueueClosedError("the jobworker queue of this app was closed")
        if self._queue is None:
            url = self.settings.queue
            assert isinstance(url, str)
            try:
                self._queue = open_queue(url, **self.settings.queue_options)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(str(exc), key="JOBWORKER_QUEUE_OPTIONS") from exc
            self._apply_limits(self._queue)
        return self._queue

    def _apply_limits(self, queue: JobQueue) -> None:
        """Set ``JOBWORKER_LIMITS`` on *queue*'s registry."""
        for job_type, limits in self.settings.limits.items():
            queue.registry.set_limits(job_type, limits)

    def create_workers(self, *, concurrency: int | None = None) -> list[JobWorker]:
        """Return new, unstarted workers: *concurrency* of each configured class.

        Each runs its jobs inside an app context. *concurrency* defaults to
        ``JOBWORKER_CONCURRENCY``.
        """
        count = self.settings.concurrency if concurrency is None else concurrency
        if count < 1:
            raise ValueError(f"concurrency must be >= 1, got {count!r}")
        return self._build_workers(self.get_queue(), count)

    def _build_workers(self, queue: JobQueue, count: int) -> list[JobWorker]:
        try:
            return [
                cls(queue, **self.settings.worker_options)
                for cls in self.worker_classes
                for _ in range(count)
            ]
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc), key="JOBWORKER_WORKER_OPTIONS") from exc

    def create_scheduler(self, queue: JobQueue) -> Scheduler | None:
        """Return a scheduler of ``JOBWORKER_SCHEDULES`` on *queue* (``None``: there are none)."""
        schedules = self.settings.schedules
        return Scheduler(queue, schedules) if schedules else None

    def start_workers(self) -> bool:
        """Start the configured workers (and schedules) in threads; ``False`` if they run already.

        :raises WorkerStateError: no worker is configured, or the interpreter
            is exiting.
        :raises QueueClosedError: :meth:`close` was called.
        """
        if not self.worker_classes:
            raise WorkerStateError("JOBWORKER_WORKERS names no worker to start")
        with self._lock:
            if self._runner is not None:
                return False
            queue = self._get_queue_locked()
            workers = self._build_workers(queue, self.settings.concurrency)
            runner = Runner(
                workers,
                stop_timeout=self.settings.stop_timeout,
                scheduler=self.create_scheduler(queue),
            )
            _exit.register(self)
            try:
                runner.start()
            except BaseException:
                runner.stop()
                _exit.unregister(self)
                raise
            self._runner = runner
        log.info("started %d jobworker worker thread(s) for app %s", len(workers), self.app.name)
        return True

    def start_on_first_request(self) -> None:
        """Start the workers once, on the app's first request (``JOBWORKER_START_WORKERS``).

        If they fail to start, the request fails, and the next one tries again.
        """
        if self._autostarted:  # the fast path of every later request
            return
        with self._lock:
            if self._autostarted or self._closed:
                return
            self._autostarted = True
        try:
            self.start_workers()
        except BaseException:
            with self._lock:
                self._autostarted = False
            raise

    def get_workers(self) -> list[JobWorker]:
        """Return the workers running in threads, for metrics; empty if none run."""
        with self._lock:
            return [] if self._runner is None else list(self._runner.workers)

    def stop_workers(self, timeout: float | None = None) -> bool:
        """Stop the workers that run in threads; return whether all stopped in time.

        Each finishes its current job; *timeout* (default
        ``JOBWORKER_STOP_TIMEOUT``) bounds the wait for all of them. A job
        still running then is recovered through its lease. ``True`` when none ran.
        """
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is None:
            return True
        _exit.unregister(self)
        # Outside the lock: stopping waits for jobs, and requests must not wait on it.
        stopped = runner.stop(timeout)
        log.info("stopped the jobworker workers of app %s", self.app.name)
        return stopped

    def stop_at_exit(self) -> bool:
        """Stop the workers from the exit hook; return whether all stopped in time.

        :meth:`Runner.stop` tells every worker at once and starts no thread,
        which Python 3.12 refuses once the interpreter shuts down.
        """
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is None:
            return True
        _exit.unregister(self)
        stopped = runner.stop(self.settings.stop_timeout)
        log.info("stopped the jobworker workers of app %s at exit", self.app.name)
        return stopped

    def close(self, timeout: float | None = None) -> bool:
        """Stop the workers, then close the queue if it was opened from a URL.

        Returns whether the workers stopped in time. Idempotent.
        """
        with self._lock:
            self._closed = True
        stopped = self.stop_workers(timeout)
        with self._lock:
            queue, self._queue = self._queue, None
        if queue is not None and self._owns_queue:
            queue.close()
        return stopped


def get_state(app: Flask | None = None) -> AppState:
    """Return the jobworker state of *app* (default: the current app).

    :raises ConfigurationError: the extension was not initialised on the app.
    :raises RuntimeError: no *app* and no app context.
    """
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        assert isinstance(app, Flask)
    try:
        state = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise ConfigurationError(
            f"jobworker is not set up on app {app.name!r}: call FlaskJobworker().init_app(app)"
        ) from None
    assert isinstance(state, AppState)
    return state


class FlaskJobworker:
    """The Flask extension: a queue per app, workers, ``enqueue`` and ``flask jobworker``.

    Create one at import time and call :meth:`init_app` in the app factory,
    or pass the app here. Each method takes ``app=`` and defaults to
    :data:`flask.current_app`, so one extension object serves every app
    made by the factory; each app has its own queue and workers.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the ``JOBWORKER_*`` keys of ``app.config`` and set jobworker up on *app*.

        Fills in the defaults, checks every key (importing worker classes
        given as ``"module:Class"``), stores the app's state in
        ``app.extensions["jobworker"]`` and adds the ``flask jobworker``
        commands. The queue itself opens on first use. With
        ``JOBWORKER_START_WORKERS``, the workers start in threads on the
        app's first request.

        :raises ConfigurationError: a key is missing or wrong, or jobworker
            is set up on this app already.
        """
        # Imported here: the commands module imports this one.
        from ._cli import jobworker_commands  # noqa: PLC0415

        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError(f"jobworker is set up on app {app.name!r} already")
        for key, default in DEFAULTS.items():
            app.config.setdefault(key, default)
        state = AppState(app, read_settings(app.config))
        app.extensions[EXTENSION_KEY] = state
        app.cli.add_command(jobworker_commands)
        if state.settings.start_workers:
            app.before_request(state.start_on_first_request)

    def get_queue(self, app: Flask | None = None) -> JobQueue:
        """Return the queue of *app* (default: the current app), opening it on first use."""
        return get_state(app).get_queue()

    @property
    def queue(self) -> JobQueue:
        """The queue of the current app."""
        return self.get_queue()

    def enqueue(
        self,
        job_type: str,
        params: P,
        *,
        id: str | None = None,
        user_id: str = "",
        max_retries: int = 3,
        priority: int = 0,
        run_after: _dt.datetime | None = None,
        app: Flask | None = None,
    ) -> PendingJob[P]:
        """Create a pending job on the queue of *app* (default: the current app) and return it.

        The keyword arguments are those of :func:`jobworker.new_job`.
        Thread-safe; call it from a view, a command or a job.
        """
        job = new_job(
            job_type,
            params,
            id=id,
            user_id=user_id,
            max_retries=max_retries,
            priority=priority,
            run_after=run_after,
        )
        return self.get_queue(app).create_job(job)

    def enqueue_task(
        self,
        task: Task[TaskParams, TaskReturn],
        /,
        *args: TaskParams.args,
        **kwargs: TaskParams.kwargs,
    ) -> JobHandle[TaskReturn]:
        """Enqueue *task* with these arguments on the current app's queue; return its handle.

        The same as ``task.enqueue_on(ext.queue, *args, **kwargs)``. A
        :class:`jobworker.TaskWorker` in ``JOBWORKER_WORKERS`` runs it, inside
        an app context, looking the task up by name in the registry its
        ``@jobworker.task`` filled.

        :raises TypeError: the arguments do not fit the task's signature.
        :raises SerializationError: an argument cannot be stored.
        """
        return task.enqueue_on(self.get_queue(), *args, **kwargs)

    def handle(self, job_id: str, app: Flask | None = None) -> JobHandle[Any]:
        """Return a :class:`jobworker.JobHandle` on the job *job_id* of *app*'s queue.

        For a typed result, use ``task.handle(job_id, queue=ext.queue)``.
        """
        return JobHandle(job_id, queue=self.get_queue(app))

    def create_workers(
        self, app: Flask | None = None, *, concurrency: int | None = None
    ) -> list[JobWorker]:
        """Return new, unstarted workers as configured, each running its jobs in an app context.

        For running them yourself, as in a :class:`jobworker.Runner`.
        *concurrency* defaults to ``JOBWORKER_CONCURRENCY``.
        """
        return get_state(app).create_workers(concurrency=concurrency)

    def start_workers(self, app: Flask | None = None) -> bool:
        """Start the configured workers of *app* in threads; ``False`` if they run already.

        They stop when :meth:`stop_workers` or :meth:`close` is called, or
        when the interpreter exits (each finishing its current job within
        ``JOBWORKER_STOP_TIMEOUT``).

        :raises WorkerStateError: ``JOBWORKER_WORKERS`` is empty.
        :raises QueueClosedError: :meth:`close` was called.
        """
        return get_state(app).start_workers()

    def get_workers(self, app: Flask | None = None) -> list[JobWorker]:
        """Return the workers *app* runs in threads (empty if none), e.g. for their metrics."""
        return get_state(app).get_workers()

    def stop_workers(self, app: Flask | None = None, *, timeout: float | None = None) -> bool:
        """Stop the workers *app* runs in threads; return whether all stopped in time.

        Each finishes its current job; *timeout* defaults to
        ``JOBWORKER_STOP_TIMEOUT``. ``True`` if none ran. They can be
        started again.
        """
        return get_state(app).stop_workers(timeout)

    def close(self, app: Flask | None = None, *, timeout: float | None = None) -> bool:
        """Stop the workers of *app*, then close its queue if it was opened from a URL.

        A queue object given as ``JOBWORKER_QUEUE`` is left open for its
        owner. Returns whether the workers stopped in time.
        """
        return get_state(app).close(timeout)
