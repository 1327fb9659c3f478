"""Observers: how metrics and traces watch workers without slowing them down.

A :class:`WorkerObserver` is told when an attempt starts and when it ends, in
the worker's thread. A worker holds its observers in the list
:attr:`JobWorker.observers <jobworker.JobWorker.observers>`; with none, an
attempt costs one test of an empty list. ``jobworker.metrics.prometheus``
and ``jobworker.metrics.tracing`` are observers.

This module also holds the process's one piece of telemetry state, said here
so that nobody looks for more: the observers every new worker starts with
(:func:`add_global_observer`) and the sources of the headers a function task
carries from its enqueue to its execution (:func:`add_header_source`). Both
are empty unless the application installs something; nothing in jobworker
fills them on import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .model import RunningJob
    from .worker import JobOutcome, JobWorker

__all__ = [
    "HeaderSource",
    "WorkerObserver",
    "add_global_observer",
    "add_header_source",
    "global_observers",
    "params_headers",
    "remove_global_observer",
    "remove_header_source",
    "task_headers",
]

log = logging.getLogger("jobworker.observe")


class WorkerObserver(Protocol):
    """What a worker tells about each attempt it makes.

    Both methods run in the worker's thread, :meth:`job_started` just before
    ``on_job_start`` and ``execute_job``, :meth:`job_ended` once the outcome
    is stored (or the attempt was interrupted), so code that
    :meth:`job_started` makes current (a trace span) is current while the
    job runs. An exception from either is logged and changes nothing.
    """

    def job_started(self, worker: JobWorker, job: RunningJob[Any, Any]) -> object:
        """Note that *worker* starts an attempt at *job*; return what :meth:`job_ended` gets."""

    def job_ended(
        self,
        worker: JobWorker,
        job: RunningJob[Any, Any],
        outcome: JobOutcome | None,
        duration: float,
        started: object,
    ) -> None:
        """Note the end of the attempt at *job* that took *duration* seconds.

        *outcome* is ``None`` when the attempt was interrupted (the worker
        released the job on ``KeyboardInterrupt``); *started* is what
        :meth:`job_started` returned.
        """


#: Returns headers to store with a function task's job as it is enqueued.
HeaderSource = Callable[[], "dict[str, str] | None"]

# Copy-on-write tuples: readers take the current tuple without a lock.
_lock = threading.Lock()
_global_observers: tuple[WorkerObserver, ...] = ()
_header_sources: tuple[HeaderSource, ...] = ()


def add_global_observer(observer: WorkerObserver) -> None:
    """Give *observer* to every worker constructed from now on. Thread-safe."""
    global _global_observers
    with _lock:
        if observer not in _global_observers:
            _global_observers = (*_global_observers, observer)


def remove_global_observer(observer: WorkerObserver) -> None:
    """Stop giving *observer* to new workers (those that have it keep it). Thread-safe."""
    global _global_observers
    with _lock:
        _global_observers = tuple(o for o in _global_observers if o is not observer)


def global_observers() -> tuple[WorkerObserver, ...]:
    """Return the observers new workers start with."""
    return _global_observers


def add_header_source(source: HeaderSource) -> None:
    """Call *source* as each function task is enqueued, and store the headers it returns.

    The headers travel in the job's stored params, beside the call's
    arguments (``{"args": ..., "kwargs": ..., "headers": {...}}``), never
    among them; the task's function never sees them. Thread-safe.
    """
    global _header_sources
    with _lock:
        if source not in _header_sources:
            _header_sources = (*_header_sources, source)


def remove_header_source(source: HeaderSource) -> None:
    """Stop calling *source* at enqueue. Thread-safe."""
    global _header_sources
    with _lock:
        _header_sources = tuple(s for s in _header_sources if s is not source)


def task_headers() -> dict[str, str] | None:
    """Return the headers the sources give for a task enqueued now, or ``None`` for none.

    A source that raises is logged and skipped: an enqueue never fails
    because of telemetry.
    """
    sources = _header_sources
    if not sources:
        return None
    headers: dict[str, str] = {}
    for source in sources:
        try:
            found = source()
        except Exception:  # broad: telemetry must not fail an enqueue
            log.exception("header source %r failed", source)
            continue
        if found:
            headers.update(found)
    return headers or None


def params_headers(worker: JobWorker, job: RunningJob[Any, Any]) -> dict[str, str] | None:
    """Return the headers stored with *job*, or ``None``.

    Only a worker whose class sets ``headers_in_params = True`` (the task
    workers, whose jobs' params are jobworker's own envelope) has them read
    from ``params["headers"]``; any other job's params are the
    application's, never interpreted.
    """
    params = job.params
    if not getattr(worker, "headers_in_params", False) or not isinstance(params, dict):
        return None
    headers = params.get("headers")
    if not isinstance(headers, dict):
        return None
    return {str(k): v for k, v in headers.items() if isinstance(v, str)}


def start_observers(
    observers: Sequence[WorkerObserver], worker: JobWorker, job: RunningJob[Any, Any]
) -> list[tuple[WorkerObserver, object]]:
    """Call every observer's ``job_started``; return each with what it returned."""
    started: list[tuple[WorkerObserver, object]] = []
    for observer in observers:
        try:
            started.append((observer, observer.job_started(worker, job)))
        except Exception:  # broad: an observer never changes a job's outcome
            log.exception("observer %r failed as job %s started", observer, job.metadata.id)
    return started


def end_observers(
    started: list[tuple[WorkerObserver, object]],
    worker: JobWorker,
    job: RunningJob[Any, Any],
    outcome: JobOutcome | None,
    duration: float,
) -> None:
    """Call ``job_ended`` of every observer that started, last started first."""
    for observer, token in reversed(started):
        try:
            observer.job_ended(worker, job, outcome, duration, token)
        except Exception:  # broad: an observer never changes a job's outcome
            log.exception("observer %r failed as job %s ended", observer, job.metadata.id)
