"""Idle polls of the SQL backends, woken one per new job rather than all at once.

A new job (created here, or announced by another process) wakes one idle
poll that takes its type: the one that went idle last, whose connection and
caches are the warmest. The others sleep on, so a job costs one claim, not
one per idle thread. A poll that was woken for a type and leaves without a
job of that type for another reason than an empty claim passes the wake-up on
(see :meth:`SQLQueue.poll_next_pending_job`); an empty claim means another
poll, here or in another process, took the job.

Threads: every method is called with the queue's lock held (the lock the
waiters' Conditions share).
"""

from __future__ import annotations

import threading

__all__ = ["IdleWaiters", "Waiter"]


class Waiter:
    """One idle poll: the types it takes, the Condition it sleeps on, what woke it.

    ``woken`` is the job type a targeted wake-up chose this poll for, or
    ``None``. Guarded by the queue's lock.
    """

    __slots__ = ("cond", "types", "woken")

    def __init__(self, lock: threading.Lock, types: frozenset[str] | None) -> None:
        self.cond = threading.Condition(lock)
        self.types = types
        self.woken: str | None = None


class IdleWaiters:
    """The polls sleeping on one queue, most recently idle last.

    A poll leaves the list when it is woken (so it is never woken twice, and
    the list holds only polls still asleep) or when its sleep times out.
    """

    def __init__(self) -> None:
        self._waiters: list[Waiter] = []

    def __len__(self) -> int:
        return len(self._waiters)

    def sleep(self, waiter: Waiter, timeout: float | None) -> None:
        """Sleep as *waiter* until woken or *timeout* seconds pass (the lock held)."""
        self._waiters.append(waiter)
        try:
            waiter.cond.wait(timeout)
        finally:
            if waiter in self._waiters:  # not woken: timed out, or interrupted
                self._waiters.remove(waiter)

    def wake_one(self, job_type: str) -> bool:
        """Wake the idle poll that went idle last and takes *job_type*; return whether any."""
        for i in range(len(self._waiters) - 1, -1, -1):
            waiter = self._waiters[i]
            if waiter.types is None or job_type in waiter.types:
                del self._waiters[i]
                waiter.woken = job_type
                waiter.cond.notify()
                return True
        return False

    def wake_all(self) -> None:
        """Wake every idle poll (a stop, a close, a reconnect that may have missed jobs)."""
        for waiter in self._waiters:
            waiter.cond.notify()
        self._waiters.clear()
