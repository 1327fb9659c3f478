"""The backend contract: what makes a class a jobworker backend.

A class is a backend when it passes ``tests/contract``: the behaviour of
DESIGN.md section 3, written against the public :class:`jobworker.JobQueue`
API only, and run against every backend in :data:`BACKENDS` (test ids
``[memory]``, ``[sqlite]``, ...).

Running the contract against another backend
--------------------------------------------

Add its factory to :data:`BACKENDS`. A factory takes a directory it may write
in (pytest's ``tmp_path``, or a temporary directory in Hypothesis tests) and
the :class:`JobQueue` keyword options (``clock``, ``lease_duration``,
``retry_policy``, ``registry``, ``max_payload``), and returns a new, empty
queue that honours them::

    def redis_queue(directory: Path, options: dict[str, Any]) -> jw.JobQueue:
        return RedisQueue(REDIS_URL, namespace=uuid.uuid4().hex, **options)

    BACKENDS["redis"] = redis_queue

Every call must return a queue that shares no jobs with any other (a new
file, schema or namespace), because one test may build several queues. The
fixtures close every queue they built when the test ends.

One test runs each backend in a child process (``close_scenario.py``, which
imports this module as ``conftest``), so a factory's module must be
importable there too: installed, or on ``PYTHONPATH``.

A backend that lives in another package runs the same suite: copy
``tests/contract/`` (it imports only ``jobworker``, ``jobworker.testing``,
pytest and Hypothesis) into its test tree, set ``BACKENDS`` to its own
factory, and run ``pytest``. jobworker's ``tests/conftest.py`` adds the
Hypothesis profiles (``CI`` set: 200 examples). A backend that needs a
server (PostgreSQL) should fail, not skip, when ``CI`` is set.

What the contract takes for granted of the clock: stored times come from the
queue's ``clock`` option, so the tests drive leases, backoff and ``run_after``
with a :class:`~jobworker.testing.FakeClock` and never sleep.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

import jobworker as jw
from jobworker.testing import FakeClock

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

# A script that test_contract runs in a child process; not a module to collect.
collect_ignore = ["close_scenario.py"]

#: A backend factory: ``(directory, options) -> a new, empty queue``.
Factory = Callable[[Path, dict[str, Any]], jw.JobQueue]

_files = itertools.count(1)


def memory_queue(directory: Path, options: dict[str, Any]) -> jw.JobQueue:
    """Return a new MemoryQueue; it needs no directory."""
    return jw.MemoryQueue(**options)


def sqlite_queue(directory: Path, options: dict[str, Any]) -> jw.JobQueue:
    """Return a SQLiteQueue on a new database file in *directory*."""
    return jw.SQLiteQueue(directory / f"jobs-{next(_files)}.sqlite3", **options)


def postgres_queue(directory: Path, options: dict[str, Any]) -> jw.JobQueue:
    """Return a PostgresQueue on new tables in this run's schema.

    Each queue gets its own table prefix; the schema is dropped at exit.
    Needs the test server (see tests/conftest.py): under CI a missing server
    fails the test, elsewhere it skips.
    """
    from jobworker.queues.postgres import PostgresQueue  # optional dependency
    from tests.conftest import require_postgres, run_schema

    dsn, schema = require_postgres(), run_schema("contract")
    prefix = f"t{next(_files)}_"
    return PostgresQueue(dsn, schema=schema, prefix=prefix, migrate=True, **options)


#: Every backend the contract runs against, by test id.
BACKENDS: dict[str, Factory] = {
    "memory": memory_queue,
    "sqlite": sqlite_queue,
    "postgres": postgres_queue,
}


class MakeQueue(Protocol):
    def __call__(self, **options: Any) -> jw.JobQueue: ...


class ReportingClock(FakeClock):
    """A FakeClock that sets ``read_elsewhere`` once another thread reads it.

    A blocking poll reads the clock before it goes to sleep, so once the
    event is set the poll is at most a few lines from waiting. A backend must
    not lose a wake-up in that window, so tests may act as soon as it is set.
    """

    def __init__(self) -> None:
        super().__init__(EPOCH)
        self.read_elsewhere = threading.Event()
        self._owner = threading.get_ident()

    def now(self) -> dt.datetime:
        if threading.get_ident() != self._owner:
            self.read_elsewhere.set()
        return super().now()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at a fixed start (the same as jobworker's own ``clock`` fixture)."""
    return FakeClock(EPOCH)


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test (a key of :data:`BACKENDS`)."""
    name: str = request.param
    return name


@pytest.fixture
def make_queue(backend: str, tmp_path: Path, clock: FakeClock) -> Iterator[MakeQueue]:
    """Build queues of the backend under test; close them all when the test ends.

    ``make_queue(**options)`` takes the JobQueue options; ``clock`` defaults
    to the test's FakeClock.
    """
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> jw.JobQueue:
            options.setdefault("clock", clock)
            queue = BACKENDS[backend](tmp_path, options)
            stack.callback(queue.close)
            return queue

        yield make


@pytest.fixture
def queue(make_queue: MakeQueue) -> jw.JobQueue:
    """A queue of the backend under test with default options, on the test's FakeClock."""
    return make_queue()


@pytest.fixture
def start_worker(make_queue: MakeQueue) -> Iterator[Callable[[jw.JobWorker], threading.Thread]]:
    """Start workers in threads; stop and join them before their queues close."""
    started: list[tuple[jw.JobWorker, threading.Thread]] = []

    def start(worker: jw.JobWorker) -> threading.Thread:
        thread = worker.start_in_thread()
        started.append((worker, thread))
        return thread

    yield start
    for worker, thread in started:
        worker.stop(timeout=10.0)
        thread.join(10.0)
        assert not thread.is_alive(), f"{worker!r} did not stop"
