"""Workers inside a Django project: database connection hygiene, and starting them.

Django opens one database connection per thread and alias, on first use. A
worker thread is not a request, so nothing would close or recycle them:
:class:`DjangoJobWorker` does, as Django does around a request, and closes
them all when its thread ends.

Threads: ``_lock`` guards ``_running`` and ``_exit_hook_registered``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string

from ...queues.base import JobQueue
from ...schedules import Scheduler
from ...worker import JobOutcome, JobWorker
from .conf import get_settings
from .queues import get_queue

__all__ = ["DjangoJobWorker", "build_workers", "start_workers", "stop_workers"]

log = logging.getLogger("jobworker.contrib.django")


class DjangoJobWorker(JobWorker):
    """A :class:`~jobworker.JobWorker` whose jobs may use Django's ORM.

    Subclass it as you would ``JobWorker``. Around each job it calls
    :func:`django.db.close_old_connections`, as Django does around a
    request: connections older than ``CONN_MAX_AGE`` (all of them, with the
    default ``0``) or broken are closed, so the next job reconnects. When the
    worker's loop ends, every connection its thread opened is closed before
    :meth:`stop` returns, so a stopped worker holds none.
    """

    def run_once(self, timeout: float | None = 0.0) -> JobOutcome | None:
        """As :meth:`JobWorker.run_once`, with Django's connections recycled around the job."""
        close_old_connections()
        try:
            return super().run_once(timeout)
        finally:
            close_old_connections()

    def on_worker_stop(self) -> None:
        """Close this thread's Django connections; runs before :meth:`stop` returns.

        (``close_all()`` closes only the calling thread's connections.)
        """
        connections.close_all()


def _worker_class(path: str) -> type[DjangoJobWorker]:
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"JOBWORKER: cannot import worker {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, DjangoJobWorker)):
        raise ImproperlyConfigured(
            f"JOBWORKER: worker {path!r} must be a subclass of "
            f"jobworker.contrib.django.DjangoJobWorker (it closes Django's database "
            f"connections around each job)"
        )
    return cls


def build_workers(
    paths: Iterable[str] | None = None,
    *,
    concurrency: int | None = None,
    queue: JobQueue | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[JobWorker]:
    """Construct *concurrency* workers of each class in *paths*, not started.

    Defaults come from ``JOBWORKER``: ``WORKERS``, ``CONCURRENCY``,
    :func:`get_queue`, ``WORKER_OPTIONS``. Each worker is built as
    ``cls(queue, **options)``.

    :raises ImproperlyConfigured: a path is not a :class:`DjangoJobWorker` subclass.
    """
    conf = get_settings()
    classes = [_worker_class(path) for path in (conf.workers if paths is None else paths)]
    count = conf.concurrency if concurrency is None else concurrency
    if count < 1:
        raise ValueError(f"concurrency must be >= 1, got {count!r}")
    if not classes:
        return []
    queue = get_queue() if queue is None else queue
    kwargs = dict(conf.worker_options if options is None else options)
    return [cls(queue, **kwargs) for cls in classes for _ in range(count)]


_lock = threading.Lock()
_running: list[JobWorker] = []  # guarded by _lock
_scheduler: Scheduler | None = None  # guarded by _lock
_exit_hook_registered = False  # guarded by _lock


def start_workers() -> list[JobWorker]:
    """Start the ``JOBWORKER["WORKERS"]`` in threads of this process, once.

    Returns the running workers, the same ones on every call until
    :func:`stop_workers`; an empty list if none is configured. At
    interpreter exit (including runserver's reload), the workers are stopped
    before Python waits for their threads. Thread-safe.
    """
    global _exit_hook_registered, _scheduler
    with _lock:
        if _running:
            return list(_running)
        workers = build_workers()
        schedules = get_settings().schedules
        if workers and schedules:
            # JOBWORKER["SCHEDULES"] run beside the workers; one job a slot however
            # many processes run them (see jobworker.schedules).
            _scheduler = Scheduler(get_queue(), schedules)
            _scheduler.start_in_thread()
        for worker in workers:
            worker.start_in_thread()
        _running.extend(workers)
        if workers and not _exit_hook_registered:
            # The hook concurrent.futures uses: it runs before the interpreter
            # joins non-daemon threads, which atexit handlers do not.
            threading._register_atexit(stop_workers)  # type: ignore[attr-defined]
            _exit_hook_registered = True
    if workers:
        log.info("started %d jobworker worker thread(s)", len(workers))
    return list(workers)


def stop_workers(timeout: float | None = None) -> bool:
    """Stop the workers :func:`start_workers` started; return whether all stopped in time.

    Each worker finishes its current job; *timeout* (default
    ``JOBWORKER["STOP_TIMEOUT"]``) is one deadline for all of them. Starts no
    thread, so it works at interpreter exit. Returns ``True`` if none were
    running. Thread-safe.
    """
    global _scheduler
    with _lock:
        workers = list(_running)
        _running.clear()
        scheduler, _scheduler = _scheduler, None
    if scheduler is not None:
        scheduler.stop(timeout)
    if not workers:
        return True
    if timeout is None:
        timeout = get_settings().stop_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    stopped = True
    for worker in workers:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        stopped = worker.stop(remaining) and stopped
    return stopped


def is_running() -> bool:
    """Return whether :func:`start_workers` started workers that are not stopped."""
    with _lock:
        return bool(_running)
