"""Queue backends behind one contract, :class:`~jobworker.queues.base.JobQueue`."""

from .base import JobPage, JobQueue
from .memory import MemoryQueue
from .sqlite import SQLiteQueue

__all__ = ["JobPage", "JobQueue", "MemoryQueue", "SQLiteQueue"]
