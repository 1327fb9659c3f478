"""Clocks: where the queue and worker read the time of day.

Stored times (``created``, ``started_at``, ``run_after``, lease expiry) come
from a :class:`Clock`, so tests can drive backoff, leases and scheduled jobs
with :class:`jobworker.testing.FakeClock` instead of sleeping.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

__all__ = ["Clock", "SystemClock", "utcnow"]


def utcnow() -> _dt.datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return _dt.datetime.now(_dt.timezone.utc)


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> _dt.datetime:
        """Return the current time, timezone-aware."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> _dt.datetime:
        """Return the current time, timezone-aware UTC."""
        return utcnow()

    def __repr__(self) -> str:
        return "SystemClock()"
