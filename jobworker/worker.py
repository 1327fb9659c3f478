"""JobWorker: a thread that claims jobs, runs them and records the outcome.

Subclasses implement three methods (:meth:`~JobWorker.get_worker_name`,
:meth:`~JobWorker.can_process_job`, :meth:`~JobWorker.execute_job`); the base
class owns the loop, retries, progress, leases, hooks, metrics and stopping.
"""

from __future__ import annotations

import abc
import itertools
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Collection
from typing import Any, Literal, TypeVar, cast

import attrs

from ._timelimit import Watchdog, forget_at_exit, timeout_error
from .attempts import AttemptError
from .errors import (
    BackendError,
    InvalidJobError,
    JobCancelledError,
    JobNotFoundError,
    JobTimeoutError,
    PermanentJobError,
    RetryJobError,
    StaleJobError,
    WorkerStateError,
    safe_repr,
)
from .model import (
    AnyJob,
    FailedJob,
    JobId,
    RunningJob,
    cancel,
    check_time_limit,
    describe_error,
    fail,
    fail_or_retry,
    release,
)
from .observe import WorkerObserver, end_observers, global_observers, start_observers
from .queues.base import JobQueue
from .retry import RetryPolicy

__all__ = ["JobOutcome", "JobWorker", "WorkerMetrics"]

log = logging.getLogger("jobworker.worker")
#: One line per finished attempt: ``complete`` and ``cancelled`` at INFO,
#: ``retry``, ``failed`` and ``lost`` at WARNING, with the fields ``job_id``,
#: ``job_type``, ``attempt``, ``duration`` (seconds), ``outcome`` and ``worker``
#: as ``extra`` attributes of the record (and ``error`` for a failed attempt).
job_log = logging.getLogger("jobworker.jobs")

P = TypeVar("P")
G = TypeVar("G")

_thread_numbers = itertools.count(1)

# A write under a claim that is no longer the job's: cancelled or recovered
# meanwhile (StaleJobError), or the job deleted while it ran (JobNotFoundError).
_CLAIM_GONE = (StaleJobError, JobNotFoundError)

OutcomeStatus = Literal["complete", "retry", "failed", "cancelled", "lost"]

#: The level of each outcome's line on ``jobworker.jobs``.
_LOG_LEVEL: dict[str, int] = {
    "complete": logging.INFO,
    "cancelled": logging.INFO,
    "retry": logging.WARNING,
    "failed": logging.WARNING,
    "lost": logging.WARNING,
}

#: The metrics counter each outcome adds to.
_COUNTER: dict[str, str] = {
    "complete": "processed",
    "retry": "retried",
    "failed": "failed",
    "cancelled": "cancelled",
    "lost": "lost",
}

#: The counters of a worker, in :class:`WorkerMetrics`' order.
_COUNTERS: tuple[str, ...] = (
    "processed", "errors", "retried", "failed", "cancelled", "lost", "loop_errors", "abandoned",
)  # fmt: skip


@attrs.frozen
class JobOutcome:
    """What one attempt came to.

    ``status`` is ``"complete"``, ``"retry"`` (back to pending), ``"failed"``,
    ``"cancelled"`` (cancelled while it ran) or ``"lost"`` (the claim was lost,
    so the outcome was not recorded). ``job`` is the job as last stored or
    seen; ``error`` is what ``execute_job`` raised, if anything.
    """

    status: OutcomeStatus
    job: AnyJob
    error: BaseException | None = None


@attrs.frozen
class WorkerMetrics:
    """A snapshot of a worker's counters.

    ``processed`` counts completed jobs and ``errors`` attempts that raised,
    as in the guide; ``error_rate`` is ``errors / (processed + errors)``, 0.0
    before any job. ``abandoned`` counts the threads left behind because
    their job had not returned within the grace period after its time limit.
    """

    processed: int
    errors: int
    retried: int
    failed: int
    cancelled: int
    lost: int
    loop_errors: int
    busy_seconds: float
    current_job: JobId | None
    last_error: str | None
    abandoned: int = 0

    @property
    def error_rate(self) -> float:
        """Errors per attempt that ended, 0.0 when none has."""
        attempts = self.processed + self.errors
        return self.errors / attempts if attempts else 0.0


class _Heartbeat:
    """Renews the lease of the worker's current job from its own thread.

    It does not depend on the job's code returning: a job that computes for
    minutes keeps its lease. It stops renewing when the worker stops or gives
    up on stopping, so a stuck job's lease then expires and is recovered.
    """

    def __init__(self, worker: JobWorker, interval: float) -> None:
        self._worker = worker
        self._interval = interval
        self._cond = threading.Condition()
        # Written by the worker thread, read by the heartbeat thread; a plain
        # attribute store and load are atomic, so it needs no lock.
        self._job: RunningJob[Any, Any] | None = None
        self._closed = False  # guarded by _cond
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=False)
        self._thread.start()

    def untrack(self, job: RunningJob[Any, Any]) -> None:
        """Renew *job* no more (it timed out), unless another job is current already."""
        if self._job is job:
            self._job = None

    def track(self, job: RunningJob[Any, Any] | None) -> None:
        # No lock and no notify: the heartbeat ticks on its own interval and
        # renews whatever job is current then, so starting and ending a job
        # costs no lock and no thread switch. A job's first renewal comes
        # within one interval, well inside its lease of three. A renewal of a
        # job that just ended is refused and marks only that job's claim lost.
        self._job = job

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def join(self, timeout: float | None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _next_renewal(self) -> RunningJob[Any, Any] | None:
        """Wait for the next tick with a current job; ``None`` once closed."""
        with self._cond:
            while True:
                deadline = time.monotonic() + self._interval
                while not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed:
                    return None
                job = self._job
                if job is not None:
                    return job

    def _run(self) -> None:
        failing = False  # the last renewal failed: log again only once one succeeds
        while (job := self._next_renewal()) is not None:
            try:
                renewed = self._worker.queue.renew_lease(job)
            except Exception:  # broad: a failed renewal must not end the heartbeat
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "lease renewal failed for job %s", job.metadata.id, exc_info=True)
                failing = True
                continue
            failing = False
            if not renewed:
                self._worker._mark_lost(job)


class JobWorker(abc.ABC):
    """The base class of a worker: subclass it and implement three methods.

    :param queue: the queue to take jobs from.
    :param poll_interval: longest idle wait, in seconds, before the worker
        checks the queue again where the queue cannot notify it. An in-memory
        queue wakes the worker the moment a job arrives.
    :param error_backoff: seconds to wait after an error of the loop itself
        (the queue failing, not a job failing).
    :param retry_policy: the delay before a failed job is retried.
    :param job_types: the job types this worker takes. When given, the queue
        claims from an index of those types; ``can_process_job`` still has
        the last word.
    :param progress_interval: least seconds between two progress writes by
        :meth:`report_progress`.
    :param heartbeat_interval: seconds between lease renewals; a third of the
        queue's ``lease_duration`` by default.
    :param time_limit: the default hard time limit of an attempt, in seconds
        (``None``: none). A job's own ``metadata.time_limit`` and its job
        type's ``time_limit`` come first (see :meth:`get_time_limit`).
    :param soft_time_limit: the default soft time limit, in seconds (see
        :meth:`soft_limit_reached` and :meth:`on_soft_time_limit`).
    :param time_limit_grace: seconds a job's thread has, after the
        interrupt at its hard limit, to leave the job before the worker
        abandons it and goes on in a fresh thread. 5 seconds by default.

    Lifecycle: a worker starts once (:meth:`start` or :meth:`start_in_thread`)
    and stops once (:meth:`stop`); it cannot be restarted.
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        poll_interval: float = 1.0,
        error_backoff: float = 5.0,
        retry_policy: RetryPolicy | None = None,
        job_types: Collection[str] | None = None,
        progress_interval: float = 1.0,
        heartbeat_interval: float | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        time_limit_grace: float = 5.0,
    ) -> None:
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
        if not error_backoff >= 0:
            raise ValueError(f"error_backoff must be >= 0, got {error_backoff!r}")
        if not progress_interval >= 0:
            raise ValueError(f"progress_interval must be >= 0, got {progress_interval!r}")
        if heartbeat_interval is None:
            heartbeat_interval = queue.lease_duration / 3
        if not 0 < heartbeat_interval < queue.lease_duration:
            raise ValueError(
                f"heartbeat_interval must be > 0 and below the queue's lease_duration "
                f"({queue.lease_duration}), got {heartbeat_interval!r}"
            )
        check_time_limit("time_limit", time_limit)
        check_time_limit("soft_time_limit", soft_time_limit)
        if not (
            isinstance(time_limit_grace, (int, float)) and 0 <= time_limit_grace < float("inf")
        ):
            raise ValueError(
                f"time_limit_grace must be a finite number of seconds >= 0, "
                f"got {safe_repr(time_limit_grace)}"
            )
        if isinstance(job_types, str):
            raise TypeError("job_types must be a collection of names, not one string")
        self.queue = queue
        self.poll_interval = float(poll_interval)
        self.error_backoff = float(error_backoff)
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.job_types = None if job_types is None else frozenset(job_types)
        self.progress_interval = float(progress_interval)
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        self.time_limit_grace = float(time_limit_grace)
        self._has_limits = time_limit is not None or soft_time_limit is not None
        self._watchdog = Watchdog(self, self.time_limit_grace)
        self._rng = random.Random()
        self._stop_event = threading.Event()
        self._stopped = threading.Event()
        # Set when stop() gave up waiting: the current job is left to its lease.
        self._abandoned = threading.Event()
        self._state_lock = threading.Lock()
        self._state = "new"  # guarded by _state_lock: new, running, stopped
        # The thread start_in_thread made, to join on stop; guarded by _state_lock.
        self._thread: threading.Thread | None = None
        # The loop threads this worker made (start_in_thread, replacements).
        self._made_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self._heartbeat = _Heartbeat(self, heartbeat_interval)
        self._metrics_lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)  # guarded by _metrics_lock
        self._busy = 0.0  # guarded by _metrics_lock
        self._last_error: str | None = None  # guarded by _metrics_lock
        # Written and read by the worker thread only.
        self._current: RunningJob[Any, Any] | None = None
        self._last_progress = float("-inf")
        # Token of the current job's claim once it is known to be lost.
        self._lost_token: str | None = None
        # Token of the last attempt the watchdog timed out.
        self._timed_out_token: str | None = None
        self._worker_ident: int | None = None
        #: Told of each attempt's start and end (see :mod:`jobworker.observe`);
        #: starts with the global observers. Change it before the worker starts.
        self.observers: list[WorkerObserver] = list(global_observers())

    # -- the three methods a subclass implements ------------------------------------------

    @abc.abstractmethod
    def get_worker_name(self) -> str:
        """Return the worker's name, used in logs, claims and thread names."""

    @abc.abstractmethod
    def can_process_job(self, job: AnyJob) -> bool:
        """Return whether this worker takes *job* (called with a pending job)."""

    @abc.abstractmethod
    def execute_job(self, job: AnyJob) -> Any:
        """Run *job* (a running job) and return its result.

        Raise to fail the attempt: the job is retried while retries remain.
        Raise :class:`PermanentJobError` to fail at once,
        :class:`RetryJobError` to retry after a given delay.
        """

    # -- hooks; a failing hook is logged and changes nothing -----------------------------

    def on_job_start(self, job: RunningJob[Any, Any]) -> None:
        """Called before :meth:`execute_job`."""

    def on_job_complete(self, job: AnyJob) -> None:
        """Called with the stored complete job."""

    def on_job_fail(self, job: AnyJob, error: BaseException) -> None:
        """Called after a failed attempt, with the job as stored.

        The job is pending again if it will be retried, failed if not.
        """

    def on_worker_start(self) -> None:
        """Called in the worker's thread before its loop takes the first job."""

    def on_worker_stop(self) -> None:
        """Called in the worker's thread as its loop ends, before :meth:`stop` returns.

        The place to release what the thread holds (database connections of a
        framework, say). Not called when :meth:`stop` gave up on the worker
        before its current job ended; then it runs when that job ends.
        """

    def on_soft_time_limit(self, job: RunningJob[Any, Any]) -> None:
        """Called when *job* reaches its soft time limit.

        Runs in the worker's watchdog thread, not the job's: keep it short
        (log, set a flag). The job itself can poll :meth:`soft_limit_reached`.
        """

    def get_retry_delay(self, job: RunningJob[Any, Any], error: BaseException) -> float:
        """Return seconds to wait before retrying *job* after *error*."""
        return self.retry_policy.delay(job.metadata.retry_count, self._rng)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker loop in the calling thread until :meth:`stop` is called.

        :raises WorkerStateError: the worker was started before.
        """
        self._claim_start()
        self._run()
        # Left behind by a hung job (see time_limit_grace): the loop went on in
        # a fresh thread; return once it ends.
        self._stopped.wait()

    def start_in_thread(self) -> threading.Thread:
        """Start the worker loop in a new named, non-daemon thread and return it.

        :raises WorkerStateError: the worker was started before.
        """
        thread = self._make_thread(self._run)
        self._claim_start()
        with self._state_lock:
            self._thread = thread
        thread.start()
        return thread

    def stop(self, timeout: float | None = 60.0) -> bool:
        """Stop the worker: finish the current job, then leave the loop.

        Wakes an idle worker at once and waits up to *timeout* seconds.
        Returns whether the worker stopped in time. If it did not, the
        running job is left to finish on its own, but its lease is no
        longer renewed: once the lease expires the queue recovers the job
        and a late result is refused. Thread-safe; may be called again.
        """
        self.request_stop()
        with self._state_lock:
            if self._state == "new":
                self._state = "stopped"
                self._stopped.set()
                return True
            thread = self._thread
        if self._is_worker_thread():
            return self._stopped.is_set()
        stopped = self._stopped.wait(timeout)
        if stopped and thread is not None:
            # _stopped is set as the thread's last act: this join is short.
            thread.join(timeout)
        if not stopped:
            self._abandoned.set()
            self._heartbeat.close()
            # The job's thread runs on, but must not keep the interpreter from exiting.
            self._forget_at_exit(self._worker_ident)
        return stopped

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait up to *timeout* seconds for the worker's loop to end; return whether it has.

        Unlike joining the thread :meth:`start_in_thread` returned, this also
        ends when that thread was left behind in a hung job (see
        ``time_limit_grace``) and the loop ended in the thread that replaced it.
        """
        return self._stopped.wait(timeout)

    def request_stop(self) -> None:
        """Ask the worker to stop after its current job, and return at once.

        :meth:`stop` does this, then waits. Safe from any thread, including
        while the interpreter shuts down (it starts no thread).
        """
        self._stop_event.set()
        self.queue.wake()

    def is_stopping(self) -> bool:
        """Return whether :meth:`stop` was called."""
        return self._stop_event.is_set()

    def _make_thread(self, target: Callable[[], None]) -> threading.Thread:
        name = f"jobworker-{self.get_worker_name()}-{next(_thread_numbers)}"
        thread = threading.Thread(target=target, name=name, daemon=False)
        self._made_threads.add(thread)
        return thread

    def _forget_at_exit(self, ident: int | None) -> None:
        """Let the interpreter exit without thread *ident*, if this worker made it.

        A caller's own thread (running :meth:`start`) is the caller's to join.
        """
        for thread in list(self._made_threads):
            if thread.ident == ident:
                forget_at_exit(thread)

    def _is_worker_thread(self) -> bool:
        return self._worker_ident == threading.get_ident()

    def _claim_start(self) -> None:
        with self._state_lock:
            if self._state != "new":
                raise WorkerStateError(
                    f"worker {self.get_worker_name()!r} was already started or stopped"
                )
            self._state = "running"

    def _run(self) -> None:
        self._heartbeat.start(f"{threading.current_thread().name}-heartbeat")
        log.info("worker %s started", self.get_worker_name())
        self._loop(first=True)

    def _loop(self, *, first: bool) -> None:
        """The worker's loop, in the thread that owns it until a hung job makes it move on."""
        ident = self._worker_ident = threading.get_ident()
        name = self.get_worker_name()
        try:
            if first:
                self._call_hook(self.on_worker_start)
            failures = 0  # loop errors in a row: only the first is logged above DEBUG
            while not self._stop_event.is_set() and self._worker_ident == ident:
                try:
                    self.run_once(timeout=self.poll_interval)
                except Exception as exc:  # broad: the loop survives every error of its own
                    with self._metrics_lock:
                        self._counts["loop_errors"] += 1
                        self._last_error = describe_error(exc)
                    failures += 1
                    self._log_loop_error(name, exc, failures)
                    self._stop_event.wait(self.error_backoff)
                    continue
                if failures:
                    log.info("worker %s: the loop works again after %d errors", name, failures)
                    failures = 0
        finally:
            if self._worker_ident == ident:
                self._watchdog.close()
                self._heartbeat.close()
                self._heartbeat.join(None)
                self._call_hook(self.on_worker_stop)
                with self._state_lock:
                    self._state = "stopped"
                log.info("worker %s stopped", name)
                self._stopped.set()

    def _log_loop_error(self, name: str, exc: Exception, failures: int) -> None:
        if failures > 1:
            log.debug("worker %s: error in the loop again; backing off", name, exc_info=True)
        elif isinstance(exc, BackendError):
            # The queue says why (a lost database is logged there once).
            log.warning("worker %s: the queue failed (%s); backing off", name, exc)
        else:
            log.exception("worker %s: error in the loop; backing off", name)

    # -- one step -------------------------------------------------------------------------

    def run_once(self, timeout: float | None = 0.0) -> JobOutcome | None:
        """Claim one job this worker takes and run it in the calling thread.

        Waits up to *timeout* seconds for a job; returns ``None`` if none
        came (or the worker is stopping), else the attempt's outcome. This is
        the loop's single step, for tests and for callers that drive a
        worker themselves; do not call it while the worker loop runs.
        """
        job = self.queue.poll_next_pending_job(
            types=self.job_types,
            predicate=self.can_process_job,
            worker=self.get_worker_name(),
            timeout=timeout,
            stop_event=self._stop_event,
        )
        if job is None:
            return None
        return self._process(job)

    def _process(self, job: RunningJob[Any, Any]) -> JobOutcome:
        began = time.monotonic()
        self._current = job
        self._last_progress = float("-inf")
        self._lost_token = None
        self._heartbeat.track(job)
        outcome: JobOutcome | None = None
        observed = start_observers(self.observers, self, job) if self.observers else None
        run = None
        timed_out = False
        try:
            self._call_hook(self.on_job_start, job)
            result: Any = None
            error: BaseException | None = None
            try:
                if (
                    job.metadata.time_limit is None
                    and not self._has_limits
                    and not self.queue.registry.has_time_limits
                ):
                    # No limit anywhere: the path jobs took before time limits.
                    result = self.execute_job(job)
                else:
                    run = self._enter_limits(job, began)
                    try:
                        result = self.execute_job(job)
                    finally:
                        if run is not None:
                            timed_out = self._watchdog.leave(run)
            except BaseException as exc:  # broad: sorted out below
                error = exc
                # An interrupt delivered inside leave() propagates from it.
                timed_out = run is not None and run.timed_out
            if timed_out:
                outcome = self._late_outcome(job, run, error)
            elif error is None:
                outcome = self._write_result(job, result)
            else:
                outcome = self._write_error(job, error)
            return outcome
        finally:
            busy = time.monotonic() - began
            if timed_out:
                # The watchdog recorded, counted and logged this attempt; a
                # fresh thread may run the worker's next job already.
                with self._metrics_lock:
                    self._busy += busy
            else:
                self._heartbeat.track(None)
                self._current = None
                self._count(outcome, busy)
                # Checked here, so that a job log turned off costs one lookup.
                if outcome is not None and job_log.isEnabledFor(_LOG_LEVEL[outcome.status]):
                    self._log_outcome(job, outcome, busy)
            if observed:
                end_observers(observed, self, job, outcome, busy)

    def _write_error(self, job: RunningJob[Any, Any], exc: BaseException) -> JobOutcome:
        """Record the attempt that raised *exc* (re-raises KeyboardInterrupt)."""
        if isinstance(exc, JobCancelledError):
            return self._write_cancel(job, exc)
        if isinstance(exc, PermanentJobError):
            new: AnyJob = fail(job, AttemptError.from_exception(exc), now=self._now())
            return self._write_failure(job, new, exc)
        if isinstance(exc, RetryJobError):
            error = AttemptError.from_exception(exc)
            new = fail_or_retry(job, error, now=self._now(), delay=exc.delay)
            return self._write_failure(job, new, exc)
        if isinstance(exc, KeyboardInterrupt):
            # The operator's Ctrl-C: hand the job back, unrun, and stop.
            try:
                self.queue.update_job(release(job), "running", claim=job.claim)
            except Exception:  # broad: the interrupt matters more; the lease recovers it
                log.warning("could not release job %s", job.metadata.id, exc_info=True)
            raise exc
        # Any error of job code fails the attempt, SystemExit included (as
        # Django's task backends record it), and the worker goes on. Only
        # KeyboardInterrupt, above, stops it.
        delay = self.get_retry_delay(job, exc)
        error = AttemptError.from_exception(exc)
        new = fail_or_retry(job, error, now=self._now(), delay=delay)
        return self._write_failure(job, new, exc)

    # -- time limits ------------------------------------------------------------------------

    def get_time_limit(self, job: AnyJob) -> float | None:
        """Return *job*'s hard time limit in seconds, ``None`` for none.

        The job's own ``metadata.time_limit`` comes first, then its job
        type's ``time_limit`` in the queue's registry, then the worker's
        ``time_limit``.
        """
        limit = job.metadata.time_limit
        if limit is not None:
            return limit
        job_type = self.queue.registry.find(job.metadata.type)
        if job_type is not None and job_type.time_limit is not None:
            return job_type.time_limit
        return self.time_limit

    def get_soft_time_limit(self, job: AnyJob) -> float | None:
        """Return *job*'s soft time limit in seconds, ``None`` for none.

        Its job type's ``soft_time_limit`` comes first, then the worker's
        ``soft_time_limit`` (a job carries no soft limit of its own). A soft
        limit not below the hard one never fires.
        """
        job_type = self.queue.registry.find(job.metadata.type)
        if job_type is not None and job_type.soft_time_limit is not None:
            return job_type.soft_time_limit
        return self.soft_time_limit

    def soft_limit_reached(self, job: RunningJob[Any, Any]) -> bool:
        """Return whether *job*'s attempt has passed its soft (or hard) time limit.

        For ``execute_job`` to poll, as :meth:`is_cancelled`; costs no
        queue access.
        """
        run = self._watchdog.current
        if run is not None and run.job.claim.token == job.claim.token:
            return run.soft_reached
        return self._timed_out_token == job.claim.token

    def _enter_limits(self, job: RunningJob[Any, Any], began: float) -> Any:
        """Have the watchdog watch *job*'s attempt if it has a limit; return its run or None."""
        limit = job.metadata.time_limit
        soft = self.soft_time_limit
        if self.queue.registry.has_time_limits:
            # Inlined get_time_limit and get_soft_time_limit: this runs per job.
            job_type = self.queue.registry.find(job.metadata.type)
            if job_type is not None:
                if limit is None:
                    limit = job_type.time_limit
                if job_type.soft_time_limit is not None:
                    soft = job_type.soft_time_limit
        if limit is None:
            limit = self.time_limit
        if limit is None and soft is None:
            return None
        return self._watchdog.enter(job, began, limit, soft)

    def _soft_limit_reached(self, job: RunningJob[Any, Any]) -> None:
        log.warning("job %s passed its soft time limit", job.metadata.id)
        self._call_hook(self.on_soft_time_limit, job)

    def _record_timeout(
        self, job: RunningJob[Any, Any], limit: float | None, stack: str
    ) -> JobOutcome:
        """Record *job*'s attempt as timed out, under its claim (the watchdog's thread)."""
        self._timed_out_token = job.claim.token
        self._heartbeat.untrack(job)
        if self._current is job:
            self._current = None
        error = timeout_error(job, limit, stack)
        exc = JobTimeoutError(error.message, limit=limit)
        outcome: JobOutcome
        try:
            delay = self.get_retry_delay(job, exc)
            new = fail_or_retry(job, error, now=self._now(), delay=delay)
            stored = self.queue.update_job(new, "running", claim=job.claim)
        except _CLAIM_GONE as gone:
            outcome = self._outcome_not_written(job, gone, exc)
        except Exception:  # broad: the lease, no longer renewed, recovers the job
            log.warning("job %s: could not record its time limit", job.metadata.id, exc_info=True)
            outcome = JobOutcome("lost", job, exc)
        else:
            self._call_hook(self.on_job_fail, stored, exc)
            status: OutcomeStatus = "failed" if isinstance(stored, FailedJob) else "retry"
            outcome = JobOutcome(status, stored, exc)
        busy = limit if limit is not None else 0.0
        self._count(outcome, 0.0)
        if job_log.isEnabledFor(_LOG_LEVEL[outcome.status]):
            self._log_outcome(job, outcome, busy)
        return outcome

    def _late_outcome(
        self, job: RunningJob[Any, Any], run: Any, error: BaseException | None
    ) -> JobOutcome:
        """The job's code returned after its time limit: its result is refused."""
        if not isinstance(error, JobTimeoutError):
            log.warning(
                "job %s returned after its time limit; its %s is refused",
                job.metadata.id,
                "result" if error is None else f"error ({describe_error(error)})",
            )
        if run.abandoned:
            log.warning("job %s: its abandoned thread has returned", job.metadata.id)
        # Set within one bounded queue write of the limit.
        run.recorded.wait()
        outcome: JobOutcome = run.outcome
        return outcome

    def _abandon(self, run: Any) -> None:
        """*run*'s thread ignored its interrupt for the grace period: go on without it."""
        with self._metrics_lock:
            self._counts["abandoned"] += 1
        job = run.job
        log.error(
            "job %s: its thread did not stop within %.3gs of its time limit; abandoned "
            "(the worker goes on in a fresh thread)",
            job.metadata.id,
            self.time_limit_grace,
        )
        if run.ident != self._worker_ident:
            return  # run_once in a caller's thread: no loop to move
        self._forget_at_exit(run.ident)
        thread = self._make_thread(lambda: self._loop(first=False))
        with self._state_lock:
            self._worker_ident = None
            if self._thread is not None:
                self._thread = thread
        thread.start()

    def _now(self) -> Any:
        return self.queue.clock.now()

    def _store_outcome(
        self, job: RunningJob[Any, Any], new: AnyJob | None, result: Any = None
    ) -> AnyJob:
        """Write an attempt's outcome under its claim, retrying while the store fails.

        The outcome is *new*, or, if that is ``None``, completion with *result*.

        A locked or unreachable store must not turn a finished job into a
        lost one: the write is retried with backoff (capped at
        ``error_backoff``) while the heartbeat keeps the lease. It ends when
        the write lands, when the claim is lost (:class:`StaleJobError`, or
        :class:`JobNotFoundError` for a job deleted meanwhile), or
        when :meth:`stop` gave up waiting for this worker.
        """
        delay = 0.05
        while True:
            try:
                if new is None:
                    return self.queue._complete_job(job, result)
                return self.queue.update_job(new, "running", claim=job.claim)
            except BackendError:
                if self._abandoned.is_set():
                    raise
                log.warning(
                    "job %s: cannot store the outcome yet; retrying in %.2fs",
                    job.metadata.id,
                    delay,
                    exc_info=True,
                )
                self._abandoned.wait(delay)
                delay = min(delay * 2, max(self.error_backoff, delay))

    def _write_result(self, job: RunningJob[Any, Any], result: Any) -> JobOutcome:
        try:
            stored = self._store_outcome(job, None, result)
        except InvalidJobError as exc:
            # Unstorable or too large: a retry would return the same value, so fail for good.
            log.error("job %s returned a result that cannot be stored: %s", job.metadata.id, exc)
            failure = fail(job, AttemptError.from_exception(exc), now=self._now())
            return self._write_failure(job, failure, exc)
        except _CLAIM_GONE as exc:
            return self._outcome_not_written(job, exc)
        self._call_hook(self.on_job_complete, stored)
        return JobOutcome("complete", stored)

    def _write_cancel(self, job: RunningJob[Any, Any], reason: JobCancelledError) -> JobOutcome:
        """execute_job raised JobCancelledError: make sure the job ends cancelled."""
        try:
            stored = self._store_outcome(job, cancel(job, now=self._now()))
        except _CLAIM_GONE as exc:
            return self._outcome_not_written(job, exc)
        return JobOutcome("cancelled", stored)

    def _write_failure(
        self, job: RunningJob[Any, Any], new: AnyJob, error: BaseException
    ) -> JobOutcome:
        try:
            stored = self._store_outcome(job, new)
        except _CLAIM_GONE as exc:
            return self._outcome_not_written(job, exc, error)
        self._call_hook(self.on_job_fail, stored, error)
        status: OutcomeStatus = "failed" if isinstance(stored, FailedJob) else "retry"
        return JobOutcome(status, stored, error)

    def _outcome_not_written(
        self, job: RunningJob[Any, Any], reason: BaseException, error: BaseException | None = None
    ) -> JobOutcome:
        """The attempt's outcome was refused: the job was cancelled, recovered or deleted."""
        current = self.queue.get_job(job.metadata.id)
        if current is not None and current.status == "cancelled":
            log.info("job %s was cancelled while it ran", job.metadata.id)
            return JobOutcome("cancelled", current, error)
        log.warning("job %s: outcome discarded, the claim was lost (%s)", job.metadata.id, reason)
        return JobOutcome("lost", current if current is not None else job, error)

    def _count(self, outcome: JobOutcome | None, busy: float) -> None:
        """Record an attempt's time and, unless it was interrupted, its outcome."""
        with self._metrics_lock:
            self._busy += busy
            if outcome is None:
                return
            self._counts[_COUNTER[outcome.status]] += 1
            error = outcome.error
            if error is not None and not isinstance(error, JobCancelledError):
                self._counts["errors"] += 1
                self._last_error = describe_error(error)

    def _log_outcome(self, job: RunningJob[Any, Any], outcome: JobOutcome, busy: float) -> None:
        """Log the end of an attempt on ``jobworker.jobs``, with its fields as ``extra``."""
        status = outcome.status
        level = _LOG_LEVEL[status]
        meta = job.metadata
        fields: dict[str, Any] = {
            "job_id": meta.id,
            "job_type": meta.type,
            "attempt": meta.retry_count + 1,
            "duration": round(busy, 6),
            "outcome": status,
            "worker": job.claim.worker,
        }
        error = outcome.error
        if error is not None and not isinstance(error, JobCancelledError):
            fields["error"] = describe_error(error)
            job_log.log(
                level,
                "job %s (%s) attempt %d %s after %.3fs: %s",
                meta.id, meta.type, meta.retry_count + 1, status, busy, fields["error"],
                extra=fields,
            )  # fmt: skip
        else:
            job_log.log(
                level,
                "job %s (%s) attempt %d %s in %.3fs",
                meta.id, meta.type, meta.retry_count + 1, status, busy,
                extra=fields,
            )  # fmt: skip

    def _call_hook(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:  # broad: a hook never changes a job's outcome
            log.exception("worker %s: hook %s failed", self.get_worker_name(), hook.__name__)

    # -- for execute_job ----------------------------------------------------------------

    def report_progress(
        self, job: RunningJob[P, G], progress: G, *, force: bool = False
    ) -> RunningJob[P, G]:
        """Record *progress* for *job*, at most once per ``progress_interval``.

        Returns the job with the new progress, whether or not it was written
        this time. Never raises for a failed write: progress is advisory, and
        a write refused because the job was cancelled or its claim was lost
        makes :meth:`is_cancelled` return ``True``.
        """
        updated = attrs.evolve(job, progress=progress)
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_interval:
            return updated
        self._last_progress = now
        try:
            stored = self.queue.update_job(updated)
        except _CLAIM_GONE:
            self._mark_lost(job)
        except Exception:  # broad: progress must never fail the job
            log.warning("job %s: progress not recorded", job.metadata.id, exc_info=True)
        else:
            return cast("RunningJob[P, G]", stored)
        return updated

    def is_cancelled(self, job: RunningJob[Any, Any]) -> bool:
        """Return whether *job* should stop: cancelled, or its claim lost.

        Asks the queue; cheap on the in-memory queue, one read on a durable one.
        """
        if self._lost_token == job.claim.token:
            return True
        try:
            current = self.queue.get_job(job.metadata.id)
        except JobNotFoundError:
            return True
        return not (isinstance(current, RunningJob) and current.claim.token == job.claim.token)

    def raise_if_cancelled(self, job: RunningJob[Any, Any]) -> None:
        """Raise :class:`JobCancelledError` if :meth:`is_cancelled`.

        The worker then ends the attempt as cancelled.
        """
        if self.is_cancelled(job):
            raise JobCancelledError(f"job {safe_repr(job.metadata.id)} was cancelled")

    def _mark_lost(self, job: RunningJob[Any, Any]) -> None:
        # A str assignment is atomic; the worker thread reads it in is_cancelled.
        self._lost_token = job.claim.token

    # -- metrics --------------------------------------------------------------------------

    def get_metrics(self) -> WorkerMetrics:
        """Return a snapshot of this worker's counters. Thread-safe."""
        current = self._current
        with self._metrics_lock:
            return WorkerMetrics(
                **self._counts,
                busy_seconds=self._busy,
                current_job=None if current is None else current.metadata.id,
                last_error=self._last_error,
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_worker_name()!r} {self._state}>"
