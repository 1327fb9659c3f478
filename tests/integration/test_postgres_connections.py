"""The server connections a PostgresQueue holds: none until this process uses them.

A process that only enqueues through its own connection (a web process
enqueueing inside its request's transaction) opens neither the queue's pool
nor its LISTEN connection. Counted on the server, in ``pg_stat_activity``, by
the ``application_name`` of the queue's connections.
"""

from __future__ import annotations

import uuid

import psycopg

import jobworker as jw
from tests.conftest import with_app

from .crash_harness import watch
from .test_postgres import count_backends

# Backends of closed connections may stay listed a moment: look until this.
LOOK = 15.0


def test_a_producer_only_queue_holds_no_connection(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    app = f"jwconn-{uuid.uuid4().hex[:8]}"
    queue = jw.PostgresQueue(with_app(dsn, app), schema=schema, migrate=True)
    try:
        # Opening checked the tables over one connection, closed since.
        assert watch(lambda: count_backends(dsn, app) == 0, timeout=LOOK)
        with psycopg.connect(with_app(dsn, f"{app}-web")) as web:
            for n in range(20):
                with web.transaction():
                    queue.create_job(jw.new_job("mail", {"n": n}), connection=web)
            # Twenty enqueues through the caller's connection: still none of the queue's.
            assert count_backends(dsn, app) == 0
            assert count_backends(dsn, f"{app}-web") == 1

        # A read through the queue opens its pool (one connection to begin
        # with; the clock's sample connects and closes beside it).
        assert queue.get_stats()["pending"] == 20
        assert watch(lambda: count_backends(dsn, app) == 1, timeout=LOOK)

        # A claim without waiting needs no LISTEN connection...
        claimed = queue.poll_next_pending_job(types=["mail"], timeout=0)
        assert claimed is not None
        assert count_backends(dsn, app) == 1
        # ...a wait does: the listener starts with the first one.
        assert queue.poll_next_pending_job(types=["other"], timeout=0.05) is None
        assert watch(lambda: count_backends(dsn, app) == 2, timeout=LOOK)
    finally:
        queue.close()
    assert watch(lambda: count_backends(dsn, f"{app}%") == 0, timeout=LOOK)


def test_a_closed_queue_that_never_connected_closes_at_once(
    postgres_schema: tuple[str, str],
) -> None:
    dsn, schema = postgres_schema
    queue = jw.PostgresQueue(dsn, schema=schema, migrate=True)
    queue.close()
    try:
        queue.get_job("x")
    except jw.QueueClosedError:
        pass
    else:
        raise AssertionError("a closed queue answered")
