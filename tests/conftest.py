"""Shared fixtures and Hypothesis profiles.

Profiles: ``dev`` (the default, quick) and ``ci`` (selected when ``CI`` is set:
more examples, no deadline, so a slow machine does not flake).
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import sys
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import jobworker as jw
import jobworker.default
from jobworker.testing import FakeClock

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
# tox -e mutation: few examples, since the suite runs once per mutant.
settings.register_profile(
    "mutation",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
settings.load_profile(
    os.environ.get("JOBWORKER_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

#: The PostgreSQL server the tests use; each test works in a schema of its own.
POSTGRES_DSN = os.environ.get(
    "JOBWORKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def require_postgres() -> str:
    """Return the test server's DSN; skip without a server, but fail under CI.

    Under ``CI`` a missing server is a broken install, which a skip would hide.
    """
    try:
        import psycopg

        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # broad: any reason the server is unusable
        message = f"PostgreSQL is not reachable at the test DSN: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_DSN


def with_app(dsn: str, app: str) -> str:
    """Return *dsn* with an ``application_name``, to find its connections on the server."""
    if "://" in dsn:  # a URL stays a URL: `jobworker migrate` takes URLs only
        return f"{dsn}{'&' if '?' in dsn else '?'}application_name={app}"
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, application_name=app)


def new_schema() -> str:
    """Return a fresh schema name for one test (dropped by drop_schema)."""
    return f"jwtest_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def drop_schema(schema: str) -> None:
    """Drop *schema* and everything in it.

    A DROP takes a lock per object until it commits, and a run's schema holds
    thousands of tables (a prefix per contract queue): dropped at once, they
    overflow the server's lock table ("out of shared memory") and the schema
    stays behind. So the tables go a hundred per transaction first.
    """
    import psycopg

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s LIMIT 100", (schema,)
            ).fetchall()
            if not rows:
                break
            tables = ", ".join(f'"{schema}"."{name}"' for (name,) in rows)
            conn.execute(f"DROP TABLE IF EXISTS {tables} CASCADE")
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


_run_schemas: dict[str, str] = {}


def run_schema(purpose: str) -> str:
    """Return this process's schema for *purpose*: made at the first call, dropped at exit.

    For tests that reuse tables across many examples (the state machines),
    where a schema per example would make them several times slower.
    """
    schema = _run_schemas.get(purpose)
    if schema is None:
        schema = _run_schemas[purpose] = new_schema()
        atexit.register(drop_schema, schema)
    return schema


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """``(dsn, schema)`` of a fresh schema on the test server, dropped afterwards."""
    dsn = require_postgres()
    schema = new_schema()
    yield dsn, schema
    drop_schema(schema)


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
def no_default_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No default queue before the test; close whatever the test left behind."""
    monkeypatch.setattr(jobworker.default, "_queue", None)
    yield
    left = jobworker.default._queue
    if left is not None:
        left.close()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Lower the interpreter's switch interval so threads interleave more often."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)
