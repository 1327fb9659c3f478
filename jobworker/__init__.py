"""jobworker: a threaded, synchronous job queue and worker library.

Define a worker with three methods, create jobs, and let threads move them
pending -> running -> complete / failed, with retries, progress, leases,
graceful stop and crash recovery.
"""

from typing import TYPE_CHECKING, Any

from ._limits import MAX_NESTING, MAX_OFFSET, MAX_TEXT_LENGTH
from .attempts import Attempt, AttemptError
from .clock import Clock, SystemClock
from .default import get_job_queue, initialize_job_queue
from .errors import (
    BackendError,
    DuplicateJobError,
    InvalidJobError,
    InvalidTransitionError,
    JobCancelledError,
    JobNotFoundError,
    JobTimeoutError,
    JobworkerError,
    LeaseLostError,
    PayloadTooLargeError,
    PermanentJobError,
    QueueClosedError,
    QueueNotInitializedError,
    RetryJobError,
    SerializationError,
    StaleJobError,
    UniqueKeyTakenError,
    UnknownJobTypeError,
    WaitTimeoutError,
    WorkerStateError,
)
from .jobtypes import JobType, JobTypeRegistry
from .model import (
    STATUSES,
    TERMINAL_STATUSES,
    AnyJob,
    CancelledJob,
    Claim,
    CompleteJob,
    FailedJob,
    JobId,
    JobMetadata,
    JobStatus,
    PendingJob,
    RunningJob,
    UserId,
    holds_unique_key,
    is_cancelled_job,
    is_complete_job,
    is_failed_job,
    is_pending_job,
    is_running_job,
    is_terminal,
    job_id,
    new_job,
    user_id,
)
from .queues import JobPage, JobQueue, MemoryQueue, SQLiteQueue
from .retry import RetryPolicy
from .runner import Runner
from .tasks import (
    TASK_TYPE_PREFIX,
    JobFailedError,
    JobHandle,
    Task,
    TaskCall,
    TaskContext,
    TaskRegistry,
    TaskWorker,
    UnknownTaskError,
    task,
)
from .unique import Unique
from .urls import open_queue
from .worker import JobOutcome, JobWorker, WorkerMetrics

if TYPE_CHECKING:
    # For type checkers only; at run time __getattr__ below provides it.
    from .queues.postgres import PostgresQueue as PostgresQueue

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # PostgresQueue needs psycopg, an optional dependency (jobworker[postgres]):
    # import it on first use. It stays out of __all__, so that
    # ``from jobworker import *`` works without psycopg.
    if name == "PostgresQueue":
        from .queues.postgres import PostgresQueue  # noqa: PLC0415

        return PostgresQueue
    raise AttributeError(f"module 'jobworker' has no attribute {name!r}")


__all__ = [
    "MAX_NESTING",
    "MAX_OFFSET",
    "MAX_TEXT_LENGTH",
    "STATUSES",
    "TASK_TYPE_PREFIX",
    "TERMINAL_STATUSES",
    "AnyJob",
    "Attempt",
    "AttemptError",
    "BackendError",
    "CancelledJob",
    "Claim",
    "Clock",
    "CompleteJob",
    "DuplicateJobError",
    "FailedJob",
    "InvalidJobError",
    "InvalidTransitionError",
    "JobCancelledError",
    "JobTimeoutError",
    "JobFailedError",
    "JobHandle",
    "JobId",
    "JobMetadata",
    "JobNotFoundError",
    "JobOutcome",
    "JobPage",
    "JobQueue",
    "JobStatus",
    "JobType",
    "JobTypeRegistry",
    "JobWorker",
    "JobworkerError",
    "LeaseLostError",
    "MemoryQueue",
    "PayloadTooLargeError",
    "PendingJob",
    "PermanentJobError",
    "QueueClosedError",
    "QueueNotInitializedError",
    "RetryJobError",
    "RetryPolicy",
    "Runner",
    "RunningJob",
    "SQLiteQueue",
    "SerializationError",
    "StaleJobError",
    "SystemClock",
    "Task",
    "TaskCall",
    "TaskContext",
    "TaskRegistry",
    "TaskWorker",
    "Unique",
    "UniqueKeyTakenError",
    "UnknownJobTypeError",
    "UnknownTaskError",
    "UserId",
    "WaitTimeoutError",
    "WorkerMetrics",
    "WorkerStateError",
    "__version__",
    "get_job_queue",
    "holds_unique_key",
    "initialize_job_queue",
    "is_cancelled_job",
    "is_complete_job",
    "is_failed_job",
    "is_pending_job",
    "is_running_job",
    "is_terminal",
    "job_id",
    "new_job",
    "open_queue",
    "task",
    "user_id",
]
