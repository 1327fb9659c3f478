"""SQL backends: expired leases recovered when due, and PostgreSQL's broken connections.

A SQL queue asks the database for expired leases only when one may have
expired: at the earliest expiry it knows of (its own grants, what it saw),
and at least every ``min(1 s, lease_duration / 4)`` for leases other queue
objects or processes grant. These tests hold it to both, on real SQLite
files and the real PostgreSQL server. Another queue sends no signal, so its
effects are watched in a loop bounded by a deadline.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.queues._postgres_schema import Names
from jobworker.testing import FakeClock
from tests.conftest import drop_schema, new_schema, require_postgres, with_app

from .crash_harness import watch

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
JOIN = 10.0
US = 0.000_001
_LOOK = threading.Event()  # never set: its wait() is the pause between two looks

MakeQueue = Callable[..., jw.JobQueue]


@pytest.fixture(params=["sqlite", "postgres"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeQueue]:
    """Open queue objects on one shared database (file or schema); close them all after."""
    opened: list[jw.JobQueue] = []
    schema = None
    if request.param == "postgres":
        dsn = require_postgres()
        schema = new_schema()

    def make(**options: Any) -> jw.JobQueue:
        queue: jw.JobQueue
        if schema is None:
            queue = jw.SQLiteQueue(tmp_path / "jobs.sqlite3", **options)
        else:
            queue = jw.PostgresQueue(dsn, schema=schema, migrate=not opened, **options)
        opened.append(queue)
        return queue

    try:
        yield make
    finally:
        for queue in reversed(opened):
            queue.close()
        if schema is not None:
            drop_schema(schema)


def new_job(job_id: str) -> m.PendingJob[Any]:
    return jw.new_job("t", {}, id=job_id, max_retries=3)


def is_recovered(job: m.AnyJob | None) -> bool:
    """A lost attempt: back to pending, one retry counted."""
    return isinstance(job, m.PendingJob) and job.metadata.retry_count == 1


# -- a lease granted elsewhere -----------------------------------------------------------------

OTHER_LEASE = 0.2
#: Seconds after expiry within which another queue's lease must be recovered:
#: the queue looks at least every second, and the machine may be busy.
OTHER_BOUND = 2.0


def test_a_lease_another_queue_granted_is_recovered_soon_after_it_expires(
    make_queue: MakeQueue,
) -> None:
    observer = make_queue()  # the default 30 s lease: its own due time is far off
    holder = make_queue(lease_duration=OTHER_LEASE, retry_policy=jw.RetryPolicy.immediate())
    holder.create_job(new_job("held"))
    assert observer.get_stats()["pending"] == 1  # the observer has looked: nothing is running
    claimed_from = time.monotonic()
    assert holder.poll_next_pending_job(timeout=0) is not None
    # From here on the holder makes no call: it "died" holding the job.
    expires = claimed_from + OTHER_LEASE  # the earliest the lease can run out

    seen: list[tuple[float, bool]] = []

    def recovered() -> bool:
        at = time.monotonic()
        seen.append((at, is_recovered(observer.get_job("held"))))
        return seen[-1][1]

    assert watch(recovered, timeout=OTHER_LEASE + 10 * OTHER_BOUND, every=0.01), seen[-1]
    recovered_at = seen[-1][0]
    assert recovered_at >= expires - 0.05, "recovered before the lease ran out"
    assert recovered_at - expires <= OTHER_BOUND, f"{recovered_at - expires:.2f} s after expiry"
    stored = observer.get_job("held")
    assert isinstance(stored, m.PendingJob) and stored.metadata.retry_count == 1


# -- a lease granted by the same queue object ----------------------------------------------


def first_call(queue: jw.JobQueue, name: str) -> bool:
    """Make *name* the first call after expiry; return whether its answer shows the recovery."""
    if name == "get_job":
        return is_recovered(queue.get_job("held"))
    if name == "get_stats":
        return queue.get_stats()["running"] == 0
    if name == "list_jobs":
        jobs = queue.list_jobs()
        return len(jobs) == 1 and is_recovered(jobs[0])
    if name == "poll":  # recovered and claimed again by the same poll
        again = queue.poll_next_pending_job(timeout=0)
        return again is not None and again.metadata.retry_count == 1
    if name == "cancel_job":  # reads the lease itself; a recovered job is cancelled as pending
        assert queue.cancel_job("held")
        cancelled = queue.get_job("held")
        return cancelled is not None and cancelled.metadata.retry_count == 1
    raise AssertionError(name)


@pytest.mark.parametrize("call", ["get_job", "get_stats", "list_jobs", "poll", "cancel_job"])
def test_a_lease_this_queue_granted_is_recovered_by_its_first_call_after_expiry(
    make_queue: MakeQueue, call: str
) -> None:
    clock = FakeClock(EPOCH)
    lease = 30.0
    queue = make_queue(clock=clock, lease_duration=lease, retry_policy=jw.RetryPolicy.immediate())
    queue.create_job(new_job("held"))
    clock.advance(5)  # claimed later than the queue's first look
    assert queue.poll_next_pending_job(timeout=0) is not None
    clock.advance(lease - US)
    still = queue.get_job("held")
    assert still is not None and still.status == "running"
    clock.advance(US)  # the lease has just run out; no second of real time has passed
    assert first_call(queue, call)


REAL_LEASE = 2.0
#: When the test's calls begin, before the lease runs out. The first of them
#: looks at the database (the last look was at the claim, over a quarter of a
#: lease before), so the next look "in any case" comes after the expiry: the
#: first call after it must recover by the due time alone.
QUIET_FOR = REAL_LEASE - 0.3


def test_on_the_real_clock_the_first_call_after_expiry_recovers(make_queue: MakeQueue) -> None:
    queue = make_queue(lease_duration=REAL_LEASE)
    queue.create_job(new_job("held"))
    claim_started = time.monotonic()
    assert queue.poll_next_pending_job(timeout=0) is not None
    claim_ended = time.monotonic()
    # The queue's clock runs with this one: every call started this long
    # after the claim is after the lease's end.
    surely_expired = claim_ended + REAL_LEASE + 0.02
    surely_live = claim_started + REAL_LEASE - 0.02

    _LOOK.wait(claim_started + QUIET_FOR - time.monotonic())  # no call: the lease runs
    looks: list[tuple[float, bool]] = []
    deadline = claim_ended + REAL_LEASE + JOIN
    while time.monotonic() < deadline:
        at = time.monotonic()
        recovered = is_recovered(queue.get_job("held"))
        looks.append((at, recovered))
        if at >= surely_expired:
            break
        _LOOK.wait(0.01)
    assert all(not recovered for at, recovered in looks if at < surely_live), looks
    assert any(at < surely_live for at, _ in looks), "no call before the lease ran out"
    last_at, last_recovered = looks[-1]
    assert last_at >= surely_expired, "the deadline passed first"
    assert last_recovered, "the first call after the lease ran out still saw it running"


# -- PostgreSQL: every pooled connection killed --------------------------------------------------

POOL = 3


def pg_count(dsn: str, sql: str, args: tuple[Any, ...]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


class BrokenPool:
    """A PostgresQueue whose pool the test fills, then kills on the server."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.app = f"jwbroken_{uuid.uuid4().hex[:10]}"
        self.lock_key = f"jobworker:{Names(schema=schema, prefix='jobworker_').jobs}"
        self.queue = jw.PostgresQueue(
            with_app(dsn, self.app),
            schema=schema,
            migrate=True,
            notify=False,
            pool_size=POOL,
            retry_policy=jw.RetryPolicy.immediate(),
        )

    def backends(self) -> int:
        return pg_count(
            self.dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (self.app,),
        )

    def fill(self) -> None:
        """Make the pool open all POOL connections: each waits in migrate() on a lock we hold."""
        errors: list[BaseException] = []

        def migrate() -> None:
            try:
                self.queue.migrate()
            except BaseException as exc:  # handed to the test, which asserts on it
                errors.append(exc)

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (self.lock_key,))
            threads = [threading.Thread(target=migrate, daemon=True) for _ in range(POOL)]
            for thread in threads:
                thread.start()
            try:
                waiting = watch(
                    lambda: (
                        pg_count(
                            self.dsn,
                            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                            "WHERE l.locktype = 'advisory' AND NOT l.granted "
                            "AND a.application_name = %s",
                            (self.app,),
                        )
                        == POOL
                    ),
                    timeout=JOIN,
                )
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.lock_key,))
            for thread in threads:
                thread.join(JOIN)
        assert waiting, "the pool did not open all its connections"
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []

    def kill(self) -> None:
        """Fill the pool, then terminate every connection of it on the server."""
        self.fill()
        assert self.backends() == POOL
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (self.app,),
            ).fetchall()
        assert sum(1 for (done,) in rows if done) == POOL
        assert watch(lambda: self.backends() == 0, timeout=JOIN)


@pytest.fixture
def broken(postgres_schema: tuple[str, str]) -> Iterator[BrokenPool]:
    pool = BrokenPool(*postgres_schema)
    yield pool
    pool.queue.close()


def test_each_step_of_a_job_succeeds_first_time_after_every_connection_is_killed(
    broken: BrokenPool,
) -> None:
    queue = broken.queue
    broken.kill()
    created = queue.create_job(jw.new_job("t", {"n": 1}, id="job-1"))
    assert created.metadata.id == "job-1"
    stored = queue.get_job("job-1")
    assert isinstance(stored, m.PendingJob) and stored.params == {"n": 1}

    broken.kill()
    running = queue.poll_next_pending_job(timeout=0)
    assert running is not None and running.metadata.id == "job-1"

    broken.kill()
    done = queue.update_job(
        m.complete(running, {"ok": True}, now=queue.clock.now()), "running", claim=running.claim
    )
    assert isinstance(done, m.CompleteJob)
    assert queue.get_stats() == {
        "pending": 0,
        "running": 0,
        "complete": 1,
        "failed": 0,
        "cancelled": 0,
    }
    ended = queue.get_job("job-1")
    assert isinstance(ended, m.CompleteJob) and ended.result == {"ok": True}
    assert ended.metadata.retry_count == 0  # one attempt: no lease was lost on the way


@pytest.mark.parametrize("first", ["pending", "complete"])
def test_a_real_duplicate_is_refused_after_every_connection_is_killed(
    broken: BrokenPool, first: str
) -> None:
    queue = broken.queue
    original = queue.create_job(jw.new_job("t", {"n": 1}, id="dup"))
    if first == "complete":
        running = queue.poll_next_pending_job(timeout=0)
        assert running is not None
        queue.update_job(
            m.complete(running, 1, now=queue.clock.now()), "running", claim=running.claim
        )
    before = queue.get_job("dup")
    broken.kill()
    with pytest.raises(jw.DuplicateJobError):
        queue.create_job(jw.new_job("t", {"n": 2}, id="dup"))
    assert queue.get_job("dup") == before
    assert before is not None and before.params == original.params
    # And the queue goes on: a new id is taken.
    broken.kill()
    queue.create_job(jw.new_job("t", {}, id="other"))
    assert queue.get_stats()["pending"] == (2 if first == "pending" else 1)
