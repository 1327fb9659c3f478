"""Queue backends behind one contract, :class:`~jobworker.queues.base.JobQueue`."""

from .base import JobQueue
from .memory import MemoryQueue

__all__ = ["JobQueue", "MemoryQueue"]
