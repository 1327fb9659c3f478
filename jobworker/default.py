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
from .queues.sqlite import SQLiteQueue

__all__ = ["get_job_queue", "initialize_job_queue"]

#: The database file ``initialize_job_queue(data_dir=...)`` uses.
DATABASE_NAME = "jobs.sqlite3"

_lock = threading.Lock()
_queue: JobQueue | None = None  # guarded by _lock


def initialize_job_queue(
    *, queue: JobQueue | None = None, data_dir: str | os.PathLike[str] | None = None
) -> JobQueue:
    """Set and return the process-wide default queue.

    With *queue*, that queue; with *data_dir*, a :class:`SQLiteQueue` in
    ``data_dir/jobs.sqlite3`` (the directory is created with mode 0700 if
    missing); with neither, a new :class:`MemoryQueue`. A previous default is
    closed and replaced.

    :raises ValueError: both *queue* and *data_dir* were given.
    """
    global _queue
    if queue is not None and data_dir is not None:
        raise ValueError("pass queue= or data_dir=, not both")
    if queue is not None:
        new = queue
    elif data_dir is not None:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        new = SQLiteQueue(os.path.join(data_dir, DATABASE_NAME))
    else:
        new = MemoryQueue()
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
