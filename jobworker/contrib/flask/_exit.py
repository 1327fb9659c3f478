"""Stop the workers that apps run in threads when the interpreter exits.

This module is the Flask integration's one piece of global state, kept here
on purpose: the set of app states whose workers run.

Worker threads are non-daemon, so the interpreter waits for them at exit,
before :mod:`atexit` handlers run. So the stop is registered with
``threading._register_atexit``, the hook :mod:`concurrent.futures` uses (and
the Django integration): it runs as the interpreter starts to shut down,
before it joins non-daemon threads. Each registered state then stops its
workers (each finishes its current job within its stop timeout), starting no
thread, as Python 3.12 refuses them during shutdown. The hook is private to
CPython's threading module, but present from Python 3.9 to 3.13.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from ...errors import WorkerStateError

__all__ = ["register", "unregister"]

log = logging.getLogger("jobworker.contrib.flask")


class Stoppable(Protocol):
    """What the exit hook needs of an app state."""

    def stop_at_exit(self) -> bool:
        """Stop the workers within their stop timeout, starting no thread."""


_lock = threading.Lock()
_running: dict[int, Stoppable] = {}  # guarded by _lock; id(state) -> state
_hooked = False  # guarded by _lock
_exiting = False  # guarded by _lock


def register(state: Stoppable) -> None:
    """Have *state*'s workers stopped at exit, unless :func:`unregister` is called first.

    :raises WorkerStateError: the interpreter is exiting already.
    """
    global _hooked
    with _lock:
        if _exiting:
            raise WorkerStateError("the interpreter is exiting: no workers start now")
        _running[id(state)] = state
        if not _hooked:
            threading._register_atexit(_stop_all)  # type: ignore[attr-defined]
            _hooked = True


def unregister(state: Stoppable) -> None:
    """Forget *state*: its workers were stopped already."""
    with _lock:
        _running.pop(id(state), None)


def _stop_all() -> None:
    global _exiting
    with _lock:
        _exiting = True
        states = list(_running.values())
        _running.clear()
    if not states:
        return
    log.info("the interpreter is exiting: stopping the workers of %d Flask app(s)", len(states))
    for state in states:
        try:
            state.stop_at_exit()
        except Exception:  # broad: one app failing to stop must not keep the others running
            log.exception("could not stop the workers of a Flask app")
