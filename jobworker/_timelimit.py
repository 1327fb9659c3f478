"""Time limits of a thread worker: one watchdog thread per worker.

At an attempt's soft limit the watchdog raises a flag the job can poll and
calls the worker's ``on_soft_time_limit`` hook. At its hard limit it

1. raises :class:`~jobworker.JobTimeoutError` asynchronously in the job's
   thread (``PyThreadState_SetAsyncExc``: the exception arrives at the
   thread's next bytecode, never inside a C call);
2. stops renewing the attempt's lease and records the attempt as failed
   with a :class:`~jobworker.JobTimeoutError`, through the attempt's own
   claim, so whatever the job's thread writes later is refused as for a
   lost claim;
3. after the worker's grace period, if the thread has still not left the
   job, abandons it: the thread is counted and logged, and the worker's
   loop goes on in a fresh thread, so the worker keeps its capacity.

Threads: an attempt ends once, either way: its thread leaving the job and
the watchdog timing it out each pop the run's one ``ticket`` (``list.pop``
is atomic), and only the winner goes on, so leaving a job in time takes no
lock. ``Watchdog._lock`` (and ``_cond`` over it) guards the later states of
a run (timed out, abandoned, left late), the watchdog's
list of timed-out runs and its ``_closed`` flag. ``Watchdog.current`` is a
plain attribute the worker's loop thread writes and the watchdog reads (a
store and a load are atomic), so an attempt under a limit costs no thread
switch: the watchdog ticks at most :data:`TICK` seconds apart while it has
something to watch, and sleeps without a timeout when it has nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Final

from .attempts import AttemptError
from .errors import JobTimeoutError, safe_repr
from .model import RunningJob

if TYPE_CHECKING:
    from .worker import JobOutcome, JobWorker

__all__ = ["TICK", "Watchdog", "forget_at_exit", "timeout_error"]

log = logging.getLogger("jobworker.worker")

#: The longest the watchdog waits before it looks at the current attempt again.
TICK: Final = 0.05

# The states of a run; from _TIMED_OUT on, the attempt timed out.
_RUNNING: Final = 0
_DONE: Final = 1
_TIMED_OUT: Final = 2
_ABANDONED: Final = 3
_LEFT_LATE: Final = 4  # timed out, and left the job within the grace period


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> int:
    """Raise *exc* in thread *ident* at its next bytecode (``None``: cancel a pending one)."""
    obj = None if exc is None else ctypes.py_object(exc)
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), obj))


class _Run:
    """One attempt under a time limit, as the watchdog sees it."""

    __slots__ = ("__dict__", "deadline", "ident", "job", "limit", "soft_deadline", "ticket")

    # Class defaults, so that making one (once per attempt) sets only five fields.
    soft_reached = False
    state = _RUNNING  # guarded by the watchdog's _lock
    abandon_at = 0.0
    recorded: threading.Event | None = None  # made at the hard limit
    outcome: JobOutcome | None = None  # set before recorded is

    def __init__(
        self,
        job: RunningJob[Any, Any],
        ident: int,
        limit: float | None,
        deadline: float | None,
        soft_deadline: float | None,
    ) -> None:
        self.job = job
        self.ident = ident
        self.limit = limit
        self.deadline = deadline
        self.soft_deadline = soft_deadline
        self.ticket = [True]  # popped by whoever ends the attempt first

    @property
    def timed_out(self) -> bool:
        return self.state >= _TIMED_OUT

    @property
    def abandoned(self) -> bool:
        return self.state == _ABANDONED


class Watchdog:
    """The time-limit watchdog of one worker; its thread starts with the first limited attempt."""

    def __init__(self, worker: JobWorker, grace: float) -> None:
        self._worker = worker
        self._grace = grace
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        #: The attempt under a limit that the worker's loop runs now, or None.
        self.current: _Run | None = None
        self._timed_out: list[_Run] = []  # guarded by _cond: waiting for their grace to end
        self._idle = False  # the watchdog waits with nothing to watch
        #: Attempts entered so far; written by the worker's loop thread only.
        self.entered = 0
        self._quiet = -1  # watchdog thread only: ``entered`` when it last found nothing to watch
        self._closed = False  # guarded by _cond
        self._thread: threading.Thread | None = None  # guarded by _cond

    # -- the worker's side ------------------------------------------------------------

    def enter(
        self,
        job: RunningJob[Any, Any],
        started: float,
        limit: float | None,
        soft_limit: float | None,
    ) -> _Run:
        """Watch the attempt the calling thread is about to run."""
        self.entered += 1
        run = self.current
        if run is not None and run.state == _DONE:
            # The last attempt ended in time: reuse its record (one attempt at
            # a time per worker). State goes last, and the watchdog acts only
            # on a running state, re-read under the lock.
            run.job = job
            run.ident = threading.get_ident()
            run.limit = limit
            run.deadline = None if limit is None else started + limit
            run.soft_deadline = None if soft_limit is None else started + soft_limit
            run.soft_reached = False
            run.ticket.append(True)
            run.state = _RUNNING
        else:
            run = _Run(
                job,
                threading.get_ident(),
                limit,
                None if limit is None else started + limit,
                None if soft_limit is None else started + soft_limit,
            )
            self.current = run
        if self._thread is None or self._idle:
            with self._cond:
                if self._thread is None and not self._closed:
                    # A daemon: it only keeps time, and must never keep the
                    # interpreter alive once the worker is given up on.
                    self._thread = threading.Thread(
                        target=self._main,
                        name=f"jobworker-{self._worker.get_worker_name()}-watchdog",
                        daemon=True,
                    )
                    self._thread.start()
                self._cond.notify()
        return run

    def leave(self, run: _Run) -> bool:
        """The attempt's code returned or raised; return whether it timed out.

        No interrupt arrives after this returns.

        An interrupt raised at the limit and not delivered yet is cancelled;
        one delivered meanwhile propagates from here, to the worker.
        """
        # ``current`` stays: the watchdog goes idle only once no new attempt
        # came for a tick, so a stream of short jobs never has to wake it.
        try:
            run.ticket.pop()
        except IndexError:
            # The watchdog timed it out first; it raised the interrupt under
            # the lock, so once we hold the lock there is one to cancel.
            with self._lock:
                if run.state == _TIMED_OUT:
                    run.state = _LEFT_LATE
                _set_async_exc(run.ident, None)
            return True
        run.state = _DONE
        return False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    # -- the watchdog's thread -----------------------------------------------------------

    def _main(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                wait = self._next_wait(now)
                if wait is None:
                    self._idle = True
                    # Read after _idle is set: enter() sets current, then reads _idle.
                    if self.entered == self._quiet:
                        self._cond.wait()
                    self._idle = False
                    continue
                if wait > 0:
                    self._cond.wait(wait)
                    continue
            self._check(time.monotonic())

    def _next_wait(self, now: float) -> float | None:
        """Seconds until something is due (at most TICK); ``None`` if nothing is watched."""
        run = self.current
        if (run is None or run.state != _RUNNING) and not self._timed_out:
            if self.entered != self._quiet:
                self._quiet = self.entered  # look once more a tick later before sleeping
                return TICK
            return None
        due = [r.abandon_at for r in self._timed_out]
        if run is not None and run.state == _RUNNING:
            if run.soft_deadline is not None and not run.soft_reached:
                due.append(run.soft_deadline)
            if run.deadline is not None:
                due.append(run.deadline)
        if not due:
            return TICK
        return min(min(due) - now, TICK)

    def _check(self, now: float) -> None:
        run = self.current
        if run is not None:
            job, soft_deadline = run.job, run.soft_deadline
            if soft_deadline is not None and not run.soft_reached and now >= soft_deadline:
                run.soft_reached = True
                if run.job is job and run.state == _RUNNING:
                    self._worker._soft_limit_reached(job)
            if run.deadline is not None and now >= run.deadline:
                self._time_out(run, now)
        with self._cond:
            due = [r for r in self._timed_out if r.abandon_at <= now]
            self._timed_out = [r for r in self._timed_out if r.abandon_at > now]
            abandon = []
            for r in due:
                if r.state == _TIMED_OUT:
                    r.state = _ABANDONED
                    abandon.append(r)
        for r in abandon:
            self._worker._abandon(r)

    def _time_out(self, run: _Run, now: float) -> None:
        with self._cond:
            deadline = run.deadline
            if run.state != _RUNNING or deadline is None or now < deadline:
                return  # ended meanwhile (its record may serve the next attempt already)
            try:
                run.ticket.pop()
            except IndexError:
                return  # the thread left the job first
            run.state = _TIMED_OUT
            run.soft_reached = True
            run.recorded = threading.Event()
            run.abandon_at = now + self._grace
            self._timed_out.append(run)
            # Under the lock, so the thread cannot have left the job meanwhile.
            _set_async_exc(run.ident, JobTimeoutError)
        if self.current is run:
            self.current = None
        try:
            run.outcome = self._worker._record_timeout(run.job, run.limit, _stack_of(run.ident))
        finally:
            run.recorded.set()


def forget_at_exit(thread: threading.Thread) -> bool:
    """Let the interpreter exit without waiting for *thread*, which a job holds.

    For a thread the worker has given up on (abandoned after its time
    limit, or still in its job when :meth:`~jobworker.JobWorker.stop` gave
    up): the interpreter then exits as if it were a daemon thread. Returns
    whether it could: on Python 3.10 to 3.12 it drops the thread from the
    set ``threading`` joins at exit (a private detail, guarded here); Python
    3.13 joins threads in C and offers no way, so there it returns ``False``.
    """
    locks = getattr(threading, "_shutdown_locks", None)
    guard = getattr(threading, "_shutdown_locks_lock", None)
    tstate_lock = getattr(thread, "_tstate_lock", None)
    if locks is None or guard is None or tstate_lock is None:
        return False
    with guard:
        locks.discard(tstate_lock)
    return True


def _stack_of(ident: int) -> str:
    """Return where thread *ident* is now, as a formatted stack ("" if it has ended)."""
    frame = sys._current_frames().get(ident)
    if frame is None:
        return ""
    return "Stack of the job's thread at its time limit:\n" + "".join(traceback.format_stack(frame))


def timeout_error(job: RunningJob[Any, Any], limit: float | None, stack: str) -> AttemptError:
    """Return the attempt error recorded for *job* at its time limit."""
    message = f"job {safe_repr(job.metadata.id)} ran past its time limit"
    if limit is not None:
        message += f" of {limit:g}s"
    error = AttemptError.from_exception(JobTimeoutError(message, limit=limit))
    return AttemptError(error.class_path, error.message, stack)
