"""Runner: several workers in one process, stopped together.

The guide's production pattern (start every worker, stop them all on
SIGTERM or SIGINT) as one object. Signal handlers are installed only when
asked for (``handle_signals=True``), only from the main thread, and the
previous handlers are put back when :meth:`Runner.run` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType

from .errors import WorkerStateError
from .worker import JobWorker

__all__ = ["Runner"]

log = logging.getLogger("jobworker.runner")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Runner:
    """Run each worker in its own thread; stop them all within one deadline.

    :param workers: the workers, each not yet started.
    :param handle_signals: stop gracefully on SIGTERM and SIGINT while
        :meth:`run` blocks (main thread only).
    :param stop_timeout: the shared deadline, in seconds, for every worker
        to finish its current job once a stop is asked for.
    """

    def __init__(
        self,
        workers: Iterable[JobWorker],
        *,
        handle_signals: bool = False,
        stop_timeout: float | None = 60.0,
    ) -> None:
        self.workers = list(workers)
        if not self.workers:
            raise ValueError("a Runner needs at least one worker")
        if stop_timeout is not None and not stop_timeout >= 0:
            raise ValueError(f"stop_timeout must be >= 0 or None, got {stop_timeout!r}")
        self.handle_signals = handle_signals
        self.stop_timeout = stop_timeout
        # Set when a stop is asked for or a worker thread ends on its own.
        self._wakeup = threading.Event()
        self._stop_requested = threading.Event()
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
        for worker in self.workers:
            self._threads.append(worker.start_in_thread())
            watcher = threading.Thread(
                target=self._watch,
                args=(self._threads[-1],),
                name=f"{self._threads[-1].name}-watch",
                daemon=False,
            )
            watcher.start()

    def _watch(self, thread: threading.Thread) -> None:
        thread.join()
        self._wakeup.set()

    def request_stop(self) -> None:
        """Make :meth:`run` stop the workers and return; returns at once.

        Only sets Events, so it is safe from a signal handler.
        """
        self._stop_requested.set()
        self._wakeup.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every worker within one deadline; return whether all stopped.

        *timeout* defaults to ``stop_timeout``.
        """
        self.request_stop()
        timeout = self.stop_timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        stopped = True
        for worker in self.workers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            stopped = worker.stop(remaining) and stopped
        return stopped

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
            if not self._stop_requested.is_set():
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
            log.info("received %s; stopping workers", signal.Signals(signum).name)
            self.request_stop()

        previous: dict[int, signal._HANDLER] = {}
        for signum in _SIGNALS:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)
        return previous
