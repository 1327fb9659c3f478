"""Clocks: where the queue and worker read the time of day.

Stored times (``created``, ``started_at``, ``run_after``, lease expiry) come
from a :class:`Clock`, so tests can drive backoff, leases and scheduled jobs
with :class:`jobworker.testing.FakeClock` instead of sleeping.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

__all__ = ["Clock", "SystemClock", "from_us", "to_us", "utcnow"]

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_US = _dt.timedelta(microseconds=1)


def to_us(value: _dt.datetime) -> int:
    """Return the microseconds since the Unix epoch of an aware datetime, exactly.

    Backends compare and index times as these integers: no float rounding.
    """
    return (value - _EPOCH) // _US


def from_us(value: int) -> _dt.datetime:
    """Return the aware UTC datetime *value* microseconds after the Unix epoch."""
    return _EPOCH + _dt.timedelta(microseconds=value)


def utcnow() -> _dt.datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return _dt.datetime.now(_UTC)


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> _dt.datetime:
        """Return the current time, timezone-aware."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> _dt.datetime:
        """Return the current time, timezone-aware UTC."""
        # As utcnow() does, without its call: queues read the clock on every claim.
        return _dt.datetime.now(_UTC)

    def __repr__(self) -> str:
        return "SystemClock()"
