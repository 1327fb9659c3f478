"""Runner: several workers in one process, stopped together.

The guide's production pattern (start every worker, stop them all on
SIGTERM or SIGINT) as one object. Signal handlers are installed only when
asked for (``handle_signals=True``), only from the main thread, and the
previous handlers are put back when :meth:`Runner.run` returns. The first
signal stops gracefully; a second one stops waiting (:meth:`Runner.stop_now`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType

from .errors import WorkerStateError
from .schedules import Scheduler
from .worker import JobWorker

__all__ = ["Runner"]

log = logging.getLogger("jobworker.runner")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# Longest a wait of the main thread goes without running Python code, so that
# signal handlers run promptly (see _Latch.take).
_SLICE = 0.1


class _Latch:
    """A flag that is set once and waited for, and that a signal handler may set.

    A Python signal handler runs in the main thread between two bytecodes,
    possibly while that thread holds an Event's internal lock (inside
    ``wait()`` or ``set()``): setting the same Event from the handler would
    then deadlock. Here the flag is a Lock held while unset; :meth:`set`
    releases it, which never blocks, and :meth:`wait` acquires it, which a
    signal interrupts to run its handler. Only the main thread waits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # RuntimeError: set already
            self._lock.release()

    def is_set(self) -> bool:
        return not self._lock.locked()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set (at most *timeout* seconds); leave it set; return whether set."""
        if self.take(timeout):
            # Set it again for the next look. A set() that came in between
            # released it already: a second release would raise.
            self.set()
            return True
        return False

    def take(self, timeout: float | None = None) -> bool:
        """Wait until set (at most *timeout* seconds) and unset it; return whether it was set.

        Waits in slices of :data:`_SLICE` seconds. The kernel may deliver a
        signal to any thread (to another one when the main thread already has
        one pending, as when two arrive at once); Python then runs the handler
        in the main thread, but only once that thread runs Python code again,
        which a lock wait without end would postpone for good.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            left = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            if self._lock.acquire(timeout=max(0.0, left)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False


class Runner:
    """Run each worker in its own thread; stop them all within one deadline.

    :param workers: the workers, each not yet started.
    :param handle_signals: stop gracefully on SIGTERM and SIGINT while
        :meth:`run` blocks (main thread only); on a second signal, stop
        waiting for the current jobs (:meth:`stop_now`).
    :param stop_timeout: the shared deadline, in seconds, for every worker
        to finish its current job once a stop is asked for.
    :param scheduler: a :class:`~jobworker.schedules.Scheduler` to run in a
        thread beside the workers, started and stopped with them.
    """

    def __init__(
        self,
        workers: Iterable[JobWorker],
        *,
        handle_signals: bool = False,
        stop_timeout: float | None = 60.0,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.workers = list(workers)
        self.scheduler = scheduler
        if not self.workers:
            raise ValueError("a Runner needs at least one worker")
        if stop_timeout is not None and not stop_timeout >= 0:
            raise ValueError(f"stop_timeout must be >= 0 or None, got {stop_timeout!r}")
        self.handle_signals = handle_signals
        self.stop_timeout = stop_timeout
        # Latches, not Events: the signal handler sets them (see _Latch).
        # Set when a stop is asked for or a worker thread ends on its own.
        self._wakeup = _Latch()
        self._stop_requested = _Latch()
        self._stop_now = _Latch()
        # Set when a worker thread ends and by stop_now(): stop() takes it, then
        # looks again at which threads are alive.
        self._changed = _Latch()
        # Signal numbers received while run() blocked; list.append is atomic.
        self._signals: list[int] = []
        self._threads: list[threading.Thread] = []
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start every worker in its own thread and return.

        :raises WorkerStateError: the runner was started before.
        """
        with self._lock:
            if self._started:
                raise WorkerStateError("the runner was already started")
            self._started = True
        if self.scheduler is not None:
            self.scheduler.start_in_thread()
        for worker in self.workers:
            self._threads.append(worker.start_in_thread())
            watcher = threading.Thread(
                target=self._watch,
                args=(worker,),
                name=f"{self._threads[-1].name}-watch",
                # It only watches: it must not keep the interpreter from
                # exiting when a worker's thread is given up on.
                daemon=True,
            )
            watcher.start()

    def _watch(self, worker: JobWorker) -> None:
        # The worker's loop, not its first thread: a thread a hung job holds
        # is left behind while the loop goes on in a fresh one.
        worker.wait_stopped()
        self._changed.set()
        self._wakeup.set()

    def request_stop(self) -> None:
        """Make :meth:`run` stop the workers and return; returns at once.

        Takes no lock, so it is safe from a signal handler.
        """
        self._stop_requested.set()
        self._wakeup.set()

    def stop_now(self) -> None:
        """Stop waiting for the current jobs: make :meth:`stop` and :meth:`run` return at once.

        The workers are told to stop and are given up on (see
        :meth:`JobWorker.stop`): their leases are no longer renewed, so once
        a lease expires the queue recovers the job and another worker takes
        it. Nothing is killed: a job's thread runs on until its code returns,
        and the process decides whether to exit first (``jobworker worker``
        does, with ``os._exit``). Takes no lock, so it is safe from a signal
        handler; a second handled signal calls it.
        """
        self._stop_now.set()
        self.request_stop()
        self._changed.set()

    @property
    def received_signals(self) -> tuple[int, ...]:
        """The signals :meth:`run` handled, in order (empty without ``handle_signals``)."""
        return tuple(self._signals)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every worker within one deadline; return whether all stopped.

        Every worker is told at once, so none claims a new job while another
        finishes its own. *timeout* defaults to ``stop_timeout``. Returns
        ``False`` at once, with the workers given up on, after
        :meth:`stop_now`. Starts no thread, so it may run while the
        interpreter shuts down.
        """
        self.request_stop()
        if self.scheduler is not None:
            self.scheduler.request_stop()
        for worker in self.workers:
            worker.request_stop()
        timeout = self.stop_timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        # The watchers started with the workers say when a thread ends, and
        # stop_now() interrupts the wait.
        while not self._stop_now.is_set() and any(not w.wait_stopped(0) for w in self.workers):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self._changed.take(remaining)
        if self._stop_now.is_set() and len(self._signals) > 1:
            name = signal.Signals(self._signals[-1]).name
            log.warning("received %s again: stopping now, without waiting for the jobs", name)
        if self.scheduler is not None:
            # Between two rounds it only waits on its stop event: it ends at once.
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.scheduler.stop(remaining if remaining is not None else 10.0)
        # Each stop() below returns at once: its thread has ended, or the
        # deadline passed or stop_now() was called, and it gives the job up.
        return all([worker.stop(0.0) for worker in self.workers])

    def run(self) -> bool:
        """Start the workers, block until a stop is asked for, then stop them.

        A stop is asked for by :meth:`request_stop`, by a handled signal, or
        by a worker thread ending on its own (an interrupt in a job). Returns
        whether every worker stopped within ``stop_timeout``.
        """
        previous = self._install_signals() if self.handle_signals else {}
        try:
            self.start()
            self._wakeup.wait()
            if self._signals:
                name = signal.Signals(self._signals[0]).name
                log.info("received %s; stopping workers (send it again to stop now)", name)
            elif not self._stop_requested.is_set():
                log.error("a worker thread ended on its own; stopping the others")
        finally:
            stopped = self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return stopped

    def _install_signals(self) -> dict[int, signal._HANDLER]:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("handle_signals=True needs Runner.run() in the main thread")

        def handler(signum: int, frame: FrameType | None) -> None:
            # Only latches: the handler may run while this thread is inside a
            # write to the log's stream, and a second write from here would
            # fail as reentrant. The main thread logs once it wakes.
            self._signals.append(signum)
            if len(self._signals) == 1:
                self.request_stop()
            else:
                self.stop_now()

        previous: dict[int, signal._HANDLER] = {}
        for signum in _SIGNALS:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)
        return previous
