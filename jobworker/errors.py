"""The exception tree of jobworker.

Every exception the package raises on purpose derives from :class:`JobworkerError`.
Where callers would naturally catch a builtin, the error mixes it in, so
``except LookupError`` keeps working for :class:`JobNotFoundError`.

This module imports nothing from jobworker.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "DuplicateJobError",
    "InvalidJobError",
    "InvalidTransitionError",
    "JobCancelledError",
    "JobNotFoundError",
    "JobTimeoutError",
    "JobworkerError",
    "LeaseLostError",
    "PayloadTooLargeError",
    "PermanentJobError",
    "QueueClosedError",
    "QueueNotInitializedError",
    "RetryJobError",
    "SerializationError",
    "StaleJobError",
    "UniqueKeyTakenError",
    "UnknownJobTypeError",
    "WaitTimeoutError",
    "WorkerStateError",
    "safe_repr",
    "safe_str",
]


def safe_str(exc: BaseException) -> str:
    """Return ``str(exc)``; never raises.

    An exception whose ``__str__`` raises (or returns no string) is
    described by what went wrong instead, so that the error of a job is
    never lost to its own message.
    """
    try:
        text = str(exc)
    except Exception as inner:  # broad: any failure of the exception's own __str__
        return f"<str() raised {type(inner).__name__}>"
    return text


def safe_repr(value: object, limit: int = 300) -> str:
    """Return ``repr(value)`` cut to about *limit* characters; never raises.

    For error messages that quote a caller's value: a value whose
    ``__repr__`` raises, or returns something that is not a string, is
    described by its type instead.
    """
    try:
        text = repr(value)
        if type(text) is not str:
            raise TypeError("__repr__ returned a non-string")
    except Exception:  # broad: any failure of the value's own __repr__
        try:
            name = type(value).__qualname__
        except Exception:  # broad: a hostile metaclass
            name = "object"
        return f"<{name} object (repr failed)>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class JobworkerError(Exception):
    """Root of every error jobworker raises on purpose."""


# -- bad input -----------------------------------------------------------------


class InvalidJobError(JobworkerError, ValueError):
    """A job, its metadata or one of its values is not acceptable.

    Raised where the value is received (a constructor, ``create_job``,
    ``update_job``); nothing is stored when it is raised.
    """


class SerializationError(InvalidJobError):
    """A params, progress or result value cannot be stored as JSON."""


class PayloadTooLargeError(InvalidJobError):
    """A serialized value exceeds the queue's size cap.

    :ivar size: the serialized size in bytes.
    :ivar limit: the cap in bytes.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class UnknownJobTypeError(InvalidJobError):
    """A strict job-type registry does not know the job's type.

    :ivar job_type: the type that was refused.
    """

    def __init__(self, job_type: str) -> None:
        super().__init__(f"unknown job type {safe_repr(job_type)} (the registry is strict)")
        self.job_type = job_type


class DuplicateJobError(JobworkerError, ValueError):
    """A job with this id already exists.

    :ivar job_id: the id that is taken.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job with id {safe_repr(job_id)} already exists")
        self.job_id = job_id


class UniqueKeyTakenError(DuplicateJobError):
    """Another job holds this unique key (see :mod:`jobworker.unique`).

    :ivar unique_key: the key that is taken.
    :ivar holder_id: the id of the job that holds it (``None`` if that job let
        it go before it could be read).
    :ivar job_id: the id of the job that was refused.
    """

    def __init__(self, unique_key: str, holder_id: str | None, job_id: str) -> None:
        holder = "another job" if holder_id is None else f"job {safe_repr(holder_id)}"
        JobworkerError.__init__(self, f"unique key {safe_repr(unique_key, 80)} is held by {holder}")
        self.unique_key = unique_key
        self.holder_id = holder_id
        self.job_id = job_id


# -- state ------------------------------------------------------------------------


class JobNotFoundError(JobworkerError, LookupError):
    """No job has this id.

    :ivar job_id: the id that was looked up.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {safe_repr(job_id)}")
        self.job_id = job_id


class InvalidTransitionError(JobworkerError, ValueError):
    """A move between two statuses that the state machine does not allow.

    :ivar old_status: the status the job is in.
    :ivar new_status: the status that was asked for.
    """

    def __init__(self, old_status: str, new_status: str, reason: str = "") -> None:
        message = f"cannot move a job from {safe_repr(old_status)} to {safe_repr(new_status)}"
        super().__init__(f"{message}: {reason}" if reason else message)
        self.old_status = old_status
        self.new_status = new_status


class StaleJobError(JobworkerError):
    """A compare-and-set update found the stored job in another state.

    :ivar job_id: the job.
    :ivar expected: the status the caller expected.
    :ivar actual: the status stored now.
    """

    def __init__(self, job_id: str, expected: str, actual: str, reason: str = "") -> None:
        message = f"job {safe_repr(job_id)} is {safe_repr(actual)}, not {safe_repr(expected)}"
        super().__init__(f"{message}: {reason}" if reason else message)
        self.job_id = job_id
        self.expected = expected
        self.actual = actual


class LeaseLostError(StaleJobError):
    """The caller's claim on a running job is no longer the current one.

    The lease expired and the job was recovered, or another attempt holds it
    now. A write under a lost claim is refused (fencing).
    """


# -- queue and worker lifecycle -------------------------------------------------------


class QueueClosedError(JobworkerError, RuntimeError):
    """The queue was closed; it accepts no more calls."""


class QueueNotInitializedError(JobworkerError, RuntimeError):
    """``get_job_queue()`` was called before ``initialize_job_queue()``."""


class WaitTimeoutError(JobworkerError, TimeoutError):
    """A wait for a job to end ran out of time; the job is unchanged.

    :ivar job_id: the job that was awaited.
    """

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {safe_repr(job_id)} did not end within {timeout} seconds")
        self.job_id = job_id


class WorkerStateError(JobworkerError, RuntimeError):
    """A worker was started twice, or started after it was stopped."""


class BackendError(JobworkerError):
    """A storage backend failed; the driver's exception is the ``__cause__``."""


# -- signals that execute_job raises to steer its own outcome ----------------------------


class PermanentJobError(JobworkerError):
    """Raise from ``execute_job`` to fail the job at once, without a retry."""


class RetryJobError(JobworkerError):
    """Raise from ``execute_job`` to retry the job after ``delay`` seconds.

    The attempt counts against ``max_retries`` like any other failure; when no
    retry is left the job fails.

    :ivar delay: seconds to wait before the job may run again.
    """

    def __init__(self, message: str = "retry requested", *, delay: float) -> None:
        if not delay >= 0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        super().__init__(message)
        self.delay = delay


class JobCancelledError(JobworkerError):
    """The running job was cancelled; raised by ``JobWorker.raise_if_cancelled``.

    Raised from ``execute_job``, it ends the attempt as cancelled: if the job
    is not cancelled in the queue yet, the worker cancels it.
    """


class JobTimeoutError(JobworkerError, TimeoutError):
    """An attempt ran past its time limit.

    It is the error recorded for the attempt (retried or failed as the retry
    policy says), and the exception the worker raises asynchronously inside
    the job's thread at the limit, so ``execute_job`` may catch it (or use
    ``finally``) to clean up within the worker's ``time_limit_grace``.

    :ivar limit: the limit in seconds, when known.
    """

    def __init__(
        self, message: str = "the job ran past its time limit", *, limit: float | None = None
    ) -> None:
        super().__init__(message)
        self.limit = limit
