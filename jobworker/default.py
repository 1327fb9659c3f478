"""The process-wide default queue: the guide's ``initializeJobQueue`` / ``getJobQueue``.

This is the package's one piece of global state, and only a convenience:
nothing in jobworker reads it. Explicit queue objects (``MemoryQueue()``,
passed to each worker) are the primary API.
"""

from __future__ import annotations

import os
import threading

from .errors import QueueNotInitializedError
from .queues.base import JobQueue
from .queues.memory import MemoryQueue

__all__ = ["get_job_queue", "initialize_job_queue"]

_lock = threading.Lock()
_queue: JobQueue | None = None  # guarded by _lock


def initialize_job_queue(
    *, queue: JobQueue | None = None, data_dir: str | os.PathLike[str] | None = None
) -> JobQueue:
    """Set and return the process-wide default queue.

    With *queue*, that queue; with neither argument, a new :class:`MemoryQueue`.
    A previous default is closed and replaced.

    :raises NotImplementedError: *data_dir* was given; the durable backend it
        needs is not part of this release.
    """
    global _queue
    if data_dir is not None:
        raise NotImplementedError(
            "initialize_job_queue(data_dir=...) needs the durable SQLite backend, "
            "which this release does not include yet; pass queue= or nothing"
        )
    new = queue if queue is not None else MemoryQueue()
    with _lock:
        old, _queue = _queue, new
    if old is not None and old is not new:
        old.close()
    return new


def get_job_queue() -> JobQueue:
    """Return the queue set by :func:`initialize_job_queue`.

    :raises QueueNotInitializedError: it was not called yet.
    """
    with _lock:
        if _queue is None:
            raise QueueNotInitializedError(
                "no default queue: call jobworker.initialize_job_queue() first"
            )
        return _queue
