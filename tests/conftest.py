"""Shared fixtures and Hypothesis profiles.

Profiles: ``dev`` (the default, quick) and ``ci`` (selected when ``CI`` is set:
more examples, no deadline, so a slow machine does not flake).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import jobworker as jw
from jobworker.testing import FakeClock

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at a fixed start, for backoff, leases and run_after."""
    return FakeClock(EPOCH)


@pytest.fixture
def queue(clock: FakeClock) -> Iterator[jw.MemoryQueue]:
    """A MemoryQueue on the fake clock, closed after the test."""
    q = jw.MemoryQueue(clock=clock)
    yield q
    q.close()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Lower the interpreter's switch interval so threads interleave more often."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)
