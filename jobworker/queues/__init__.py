"""Queue backends behind one contract, :class:`~jobworker.queues.base.JobQueue`."""

from .base import JobQueue
from .memory import MemoryQueue
from .sqlite import SQLiteQueue

__all__ = ["JobQueue", "MemoryQueue", "SQLiteQueue"]
