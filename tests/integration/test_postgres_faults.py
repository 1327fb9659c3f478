"""PostgresQueue when the server fails a call: real locks, real timeouts, real killed backends.

Another session holds a lock the queue's statement waits on; the server
then cancels the statement (``statement_timeout``) or the test terminates
the queue's backend with ``pg_terminate_backend`` while it waits, inside a
transaction or not. Each call must end in a typed error (or, for a retried
insert, in the truth), leave the stored jobs as they were, and the queue
must work again at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.queues._postgres_schema import Names
from jobworker.queues._rows import COLUMNS, values_of
from tests.conftest import with_app

from .crash_harness import watch

JOIN = 10.0
CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class Server:
    """A queue whose connections the test can find on the server; a session of the test."""

    def __init__(self, dsn: str, schema: str, timeout: float, **options: Any) -> None:
        self.dsn = dsn
        self.app = f"jwfault_{uuid.uuid4().hex[:10]}"
        self.jobs = Names(schema=schema, prefix="jobworker_").jobs
        self.queue = jw.PostgresQueue(
            with_app(dsn, self.app),
            schema=schema,
            migrate=True,
            notify=False,
            pool_size=2,
            timeout=timeout,
            **options,
        )
        # The test's own session: holds the locks the queue meets.
        self.other = psycopg.connect(dsn)

    def waiting(self) -> list[int]:
        """The queue's backends now waiting for a lock."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = %s AND wait_event_type = 'Lock'",
                (self.app,),
            ).fetchall()
        return [pid for (pid,) in rows]

    def wait_for_waiter(self, besides: frozenset[int] = frozenset()) -> int:
        """Wait until one of the queue's backends (not in *besides*) waits for a lock; its pid."""
        found: list[int] = []

        def one() -> bool:
            found[:] = [pid for pid in self.waiting() if pid not in besides]
            return bool(found)

        assert watch(one, timeout=JOIN), "the queue's statement never waited for the lock"
        return found[0]

    def terminate(self, pid: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert row == (True,)

    def rows(self, job_id: str) -> list[tuple[Any, ...]]:
        """The stored rows of *job_id*, read outside the queue."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(
                f"SELECT status, claim_token, params FROM {self.jobs} WHERE id = %s", (job_id,)
            ).fetchall()

    def close(self) -> None:
        if not self.other.closed:
            self.other.rollback()
            self.other.close()
        self.queue.close()


@pytest.fixture
def make_server(postgres_schema: tuple[str, str]) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(timeout: float, **options: Any) -> Server:
        server = Server(*postgres_schema, timeout=timeout, **options)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run *call* in a thread; its return value or exception lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_statement_timeout_on_a_read_and_a_write_is_a_backend_error(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(1.0)
    queue = server.queue
    queue.create_job(jw.new_job("t", {"n": 1}, id="j"))
    before = server.rows("j")
    server.other.execute(f"LOCK TABLE {server.jobs} IN ACCESS EXCLUSIVE MODE")

    for call in (lambda: queue.get_job("j"), lambda: queue.cancel_job("j")):
        began = time.monotonic()
        with pytest.raises(jw.BackendError) as info:
            call()
        waited = time.monotonic() - began
        assert "statement timeout" in str(info.value)
        assert isinstance(info.value.__cause__, psycopg.errors.QueryCanceled)
        assert not isinstance(info.value, psycopg.Error)
        assert 0.8 <= waited < 5, waited  # the bound of 1 s, not a socket's minutes

    server.other.rollback()
    assert server.rows("j") == before
    # The connections were not broken by the cancel: the next calls just work.
    stored = queue.get_job("j")
    assert isinstance(stored, m.PendingJob) and stored.params == {"n": 1}
    assert queue.cancel_job("j") is True
    assert server.rows("j")[0][0] == "cancelled"


def test_a_backend_killed_inside_a_transaction_fails_the_call_and_changes_nothing(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(10.0)
    queue = server.queue
    queue.create_job(jw.new_job("t", {"n": 1}, id="j"))
    running = queue.poll_next_pending_job(timeout=0)
    assert running is not None
    before = server.rows("j")
    assert before[0][:2] == ("running", running.claim.token)
    # The test's session locks the row: cancel_job's transaction waits for it.
    server.other.execute(f"SELECT id FROM {server.jobs} WHERE id = 'j' FOR UPDATE")
    thread, outcome = in_thread(lambda: queue.cancel_job("j"))

    server.terminate(server.wait_for_waiter())
    thread.join(JOIN)

    assert not thread.is_alive()
    # The transaction had begun: nothing tells whether it did anything, so it
    # is not run again; the caller gets the error.
    error = outcome.get("error")
    assert isinstance(error, jw.BackendError), outcome
    assert isinstance(error.__cause__, psycopg.OperationalError)
    server.other.rollback()
    assert server.rows("j") == before
    # The pool replaced the killed connection: the worker's claim still holds.
    done = queue.update_job(
        m.complete(running, "ok", now=queue.clock.now()), "running", claim=running.claim
    )
    assert isinstance(done, m.CompleteJob) and done.result == "ok"


@pytest.mark.parametrize("theirs", ["identical", "different"])
def test_an_insert_killed_while_it_waits_runs_again_and_tells_its_own_row_apart(
    make_server: Callable[..., Server], theirs: str
) -> None:
    # The queue's insert waits on the same id inserted, uncommitted, by
    # another session; its backend is killed, so it runs again on another
    # connection, which meets that row once committed. A row equal to its
    # own is what a first try that committed before the kill would have
    # left: create_job succeeds. Any other row is a real duplicate.
    server = make_server(10.0)
    queue = server.queue
    job = jw.new_job("t", {"n": 1}, id="mine", created=CREATED)
    stored, _ = queue._encode_new(job)
    values = values_of(stored)
    if theirs == "different":
        other = jw.new_job("t", {"n": 2}, id="mine", created=CREATED)
        values = values_of(queue._encode_new(other)[0])
    marks = ", ".join(["%s"] * (len(values) + 1))
    server.other.execute(
        f"INSERT INTO {server.jobs} ({COLUMNS}, lease_until_us) VALUES ({marks})",
        (*values, None),
    )
    thread, outcome = in_thread(lambda: queue.create_job(job))

    first = server.wait_for_waiter()
    server.terminate(first)
    server.wait_for_waiter(besides=frozenset({first}))  # the second try waits in turn
    server.other.commit()
    thread.join(JOIN)

    assert not thread.is_alive()
    rows = server.rows("mine")
    assert len(rows) == 1
    if theirs == "identical":
        assert "error" not in outcome, outcome
        assert outcome["value"] == job
        assert rows[0][2] == stored.params
    else:
        assert isinstance(outcome.get("error"), jw.DuplicateJobError), outcome
        stored_job = queue.get_job("mine")
        assert stored_job is not None and stored_job.params == {"n": 2}


def test_a_read_failing_after_close_is_queue_closed_error(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(10.0)
    queue = server.queue
    queue.create_job(jw.new_job("t", {"n": 1}, id="j"))
    before = server.rows("j")
    server.other.execute(f"LOCK TABLE {server.jobs} IN ACCESS EXCLUSIVE MODE")
    thread, outcome = in_thread(lambda: queue.get_job("j"))
    pid = server.wait_for_waiter()

    queue.close()
    server.terminate(pid)
    thread.join(JOIN)

    assert not thread.is_alive()
    error = outcome.get("error")
    # Closed meanwhile: the failure is reported as the closed queue, not
    # retried on another connection and not as a server fault.
    assert isinstance(error, jw.QueueClosedError), outcome
    assert isinstance(error.__cause__, psycopg.OperationalError)
    server.other.rollback()
    assert server.rows("j") == before
    with pytest.raises(jw.QueueClosedError):
        queue.get_job("j")


def test_recovery_skips_an_expired_row_another_session_holds_instead_of_waiting(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(1.0, lease_duration=1.0)
    queue = server.queue
    queue.create_job(jw.new_job("t", {"n": 1}, id="j", max_retries=3))
    running = queue.poll_next_pending_job(timeout=0)
    assert running is not None

    def expired() -> bool:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            row = conn.execute(
                f"SELECT lease_until_us < (extract(epoch FROM clock_timestamp()) * 1000000)"
                f" FROM {server.jobs} WHERE id = 'j'"
            ).fetchone()
        return row == (True,)

    assert watch(expired, timeout=JOIN)
    server.other.execute(f"SELECT id FROM {server.jobs} WHERE id = 'j' FOR UPDATE")

    began = time.monotonic()
    claimed = queue.poll_next_pending_job(timeout=0)
    took = time.monotonic() - began

    # The held row is skipped, not waited for until the statement timeout.
    assert claimed is None
    assert took < 0.9, took
    assert server.rows("j")[0][:2] == ("running", running.claim.token)
    server.other.rollback()
    # Released: the next look recovers it as a lost attempt.
    assert watch(lambda: server.rows("j")[0][0] != "running" or _poll(queue), timeout=JOIN)
    recovered = queue.get_job("j")
    assert recovered is not None and recovered.metadata.retry_count == 1


def _poll(queue: jw.PostgresQueue) -> bool:
    """One claim attempt (it recovers expired leases first); False: keep looking."""
    queue.poll_next_pending_job(timeout=0)
    return False
