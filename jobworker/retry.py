"""Retry policies: how long a failed job waits before it may run again.

Pure values and pure functions; nothing here sleeps.
"""

from __future__ import annotations

import random

import attrs

__all__ = ["RetryPolicy"]


def _positive_or_zero(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _factor(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 1:
        raise ValueError(f"factor must be >= 1, got {value!r}")


def _jitter(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"jitter must be between 0 and 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Exponential backoff, capped, with optional jitter.

    The delay before retry number ``n + 1`` (when the job's ``retry_count`` is
    ``n``) is ``min(max_delay, base * factor ** n)``, the guide's
    ``2^retryCount * 1s`` by default. With ``jitter = j`` the delay is drawn
    uniformly from ``[(1 - j) * d, d]``, so workers that failed together do not
    retry together.

    >>> policy = RetryPolicy()
    >>> [policy.delay(n) for n in range(4)]
    [1.0, 2.0, 4.0, 8.0]
    >>> RetryPolicy(base=1.0, max_delay=5.0).delay(10)
    5.0
    """

    # Floats, so that factor ** retry_count overflows (and is capped) at once
    # instead of growing a huge integer.
    base: float = attrs.field(default=1.0, converter=float, validator=_positive_or_zero)
    factor: float = attrs.field(default=2.0, converter=float, validator=_factor)
    max_delay: float = attrs.field(default=300.0, converter=float, validator=_positive_or_zero)
    jitter: float = attrs.field(default=0.0, converter=float, validator=_jitter)

    @classmethod
    def immediate(cls) -> RetryPolicy:
        """Return a policy that retries at once."""
        return cls(base=0.0, max_delay=0.0)

    def delay(self, retry_count: int, rng: random.Random | None = None) -> float:
        """Return the seconds to wait before retrying a job at *retry_count*."""
        try:
            raw = self.base * self.factor**retry_count
        except OverflowError:
            raw = self.max_delay
        delay = float(min(self.max_delay, raw))
        if self.jitter and delay:
            rand = (rng or random).random()
            delay -= delay * self.jitter * rand
        return delay
