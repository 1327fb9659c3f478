"""What every system's measurements share: jobs, counters, timing loops, sizes.

Every module in ``bench/`` runs as a script's neighbour (``bench/`` is on
``sys.path``), so they import each other by bare name. Nothing here sets
global state; the timing helpers never sleep to wait for a thread (they wait
on Events and joins). The one deliberate pause is the gap between latency
samples, see :func:`latency_loop`.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

#: Longest wait for any thread, Event or service; reaching it means the run is broken.
WAIT_TIMEOUT = 300.0

Params = dict[str, Any]


def params(i: int) -> Params:
    """Return the parameters of job *i*: a two-key dict, as the issue's workloads say."""
    return {"a": i, "b": "x"}


def noop(**kwargs: Any) -> None:
    """Do nothing: the job every system runs."""
    return None


class Done:
    """Count completions across threads; set ``event`` when *target* is reached."""

    def __init__(self, target: int) -> None:
        self._lock = threading.Lock()
        self._count = 0  # guarded by _lock
        self.target = target
        self.event = threading.Event()

    def add(self) -> None:
        with self._lock:
            self._count += 1
            if self._count == self.target:
                self.event.set()

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def wait(self, what: str = "the workers") -> None:
        if not self.event.wait(WAIT_TIMEOUT):
            raise RuntimeError(f"{what} finished {self.count} of {self.target} jobs in time")


class ProcessDone(Done):
    """A :class:`Done` shared by processes of one multiprocessing *context*.

    The count is a shared integer and ``event`` a multiprocessing Event, so
    the worker processes count into it and the parent waits on it. Hand it to
    the processes as an argument when they start (how multiprocessing shares
    them); it holds no thread lock of its own.
    """

    def __init__(self, target: int, context: Any) -> None:  # no super(): no thread lock
        self._value = context.Value("q", 0)  # its own lock guards the count
        self.target = target
        self.event = context.Event()

    def add(self) -> None:
        with self._value.get_lock():
            self._value.value += 1
            reached = self._value.value == self.target
        if reached:
            self.event.set()

    @property
    def count(self) -> int:
        with self._value.get_lock():
            return int(self._value.value)


@contextmanager
def timed() -> Iterator[list[float]]:
    """Yield a list that holds the elapsed ``perf_counter`` seconds after the block."""
    out: list[float] = []
    t0 = time.perf_counter()
    yield out
    out.append(time.perf_counter() - t0)


def drain_result(n: int, enqueue_seconds: float, drain_seconds: float) -> dict[str, float]:
    """Return the figures of one drain run: rates in jobs per second."""
    return {
        "jobs": n,
        "enqueue_rate": n / enqueue_seconds,
        "drain_rate": n / drain_seconds,
    }


# -- latency --------------------------------------------------------------------------------


class StartSignal:
    """Tell the producer when (``perf_counter``) the current job started, and that it ended.

    The job calls :meth:`started` on its first line; a system that has a
    completion hook calls :meth:`ended` there, others right after
    :meth:`started` (a no-op job ends where it starts).
    """

    def __init__(self) -> None:
        self.at = 0.0  # written by the job's thread before it sets _start
        self._start = threading.Event()
        self._end = threading.Event()

    def started(self) -> None:
        self.at = time.perf_counter()
        self._start.set()

    def ended(self) -> None:
        self._end.set()

    def wait(self) -> float:
        """Wait until the job started and ended; return its start time and re-arm."""
        if not self._start.wait(WAIT_TIMEOUT) or not self._end.wait(WAIT_TIMEOUT):
            raise RuntimeError("the idle worker did not run the job in time")
        self._start.clear()
        self._end.clear()
        return self.at


#: Gap between one latency sample's end and the next job, in seconds: [low, high).
LATENCY_GAP = (0.001, 0.003)


def latency_loop(
    submit: Callable[[int], object],
    signal: StartSignal,
    samples: int,
    budget: float,
    gap: tuple[float, float] = LATENCY_GAP,
) -> list[float]:
    """Return enqueue -> start latencies in microseconds, one job at a time.

    Each sample: ``perf_counter`` just before *submit*, minus the job's start
    time. After a job ends the loop leaves a random gap of 1-3 ms (seeded; a
    system that polls less often passes a *gap* as long as its poll interval)
    before the next one, so the worker is back in its idle wait (a thread
    needs tens of microseconds for that) and jobs arrive at random points of
    a polling system's cycle. The gap paces arrivals; it never stands in for
    waiting on a thread, which :meth:`StartSignal.wait` does. The loop stops
    early after *budget* seconds (a peer that polls slowly), and says so by
    returning fewer samples.
    """
    rng = random.Random(5)
    pause = threading.Event()  # never set: Event.wait is the pacing timer
    out: list[float] = []
    submit(-1)  # a first, unmeasured job warms the path
    signal.wait()
    deadline = time.monotonic() + budget
    for i in range(samples):
        pause.wait(rng.uniform(*gap))
        t0 = time.perf_counter()
        submit(i)
        out.append((signal.wait() - t0) * 1e6)
        if time.monotonic() > deadline:
            break
    return out


def percentiles(samples_us: Sequence[float]) -> dict[str, float]:
    """Return p50, p99 and max of *samples_us* (nearest rank)."""
    ordered = sorted(samples_us)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


# -- memory ---------------------------------------------------------------------------------


def traced_bytes(fill: Callable[[], object]) -> int:
    """Return the bytes ``fill()`` leaves allocated (tracemalloc), what it returns kept alive."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = fill()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "filename")
    del kept
    return sum(stat.size_diff for stat in stats)


def files_size(*paths: str) -> int:
    """Return the total size of the *paths* that exist, in bytes."""
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


# -- claims ---------------------------------------------------------------------------------


#: The result key of the unmeasured first batch of :func:`warm_up` (a backlog of 0).
WARM_UP = "0"


def warm_up(backlogs: Sequence[int]) -> list[Any]:
    """Return *backlogs* after a first batch with no backlog, to be dropped from the results.

    The first claims of a process run cold code (CPython specialises hot
    bytecode as it runs, caches fill): without a warm-up, the first backlog
    measured pays for that and the big one looks cheaper than the small one.
    """
    return [0, *backlogs]


def time_claims(claim: Callable[[], object], count: int) -> dict[str, float]:
    """Time *count* ``claim()`` calls, each of which must find a job; microseconds per claim.

    Each claim is timed alone. The median is the usual claim, and what the
    table shows: a batch of 1,000 in-memory claims lasts about 10 ms, and one
    time slice lost to another process would move a batch's mean by half.
    The mean (with such outliers and, for SQLite, the WAL checkpoints that fall
    in a claim) goes into the JSON too.
    """
    gc.collect()
    times = []
    clock = time.perf_counter
    for _ in range(count):
        t0 = clock()
        found = claim()
        times.append(clock() - t0)
        if found is None:
            raise RuntimeError("a claim found no job")
    return {"median": statistics.median(times) * 1e6, "mean": statistics.fmean(times) * 1e6}
