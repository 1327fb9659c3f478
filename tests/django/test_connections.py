"""Django's database connections in worker threads: recycled around jobs, all closed at stop."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from jobworker.contrib.django import enqueue, get_queue
from tests.django.conftest import TIMEOUT
from tests.django.shop.models import Order
from tests.django.shop.workers import ShipWorker


def is_closed(raw: Any) -> bool:
    """Return whether a DB-API connection (sqlite3 or psycopg) is closed."""
    if isinstance(raw, sqlite3.Connection):
        try:
            raw.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return True
        return False
    return bool(raw.closed)


def assert_backends_gone(db: str, pids: list[int]) -> None:
    """Assert that the server ends the backends of *pids* (closed by their clients).

    A client's close is a message to the server, whose backend then exits on
    its own; pg_stat_activity may list it a moment longer. So look again,
    each look a round trip, until a deadline.
    """
    deadline = time.monotonic() + TIMEOUT
    with connections[db].cursor() as cursor:
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
            (left,) = cursor.fetchone()
            if left == 0:
                return
            assert time.monotonic() < deadline, f"{left} backend(s) of {pids} still open"
            cursor.execute("SELECT pg_sleep(0.01)")


@pytest.fixture
def opened_by_workers() -> Iterator[list[Any]]:
    """Django connections opened in jobworker threads, with their server pid (PostgreSQL)."""
    opened: list[Any] = []

    def record(sender: object, connection: Any, **kwargs: object) -> None:
        if threading.current_thread().name.startswith("jobworker-"):
            pid = getattr(getattr(connection.connection, "info", None), "backend_pid", None)
            opened.append((connection, pid, connection.connection))

    connection_created.connect(record)
    yield opened
    connection_created.disconnect(record)


def test_a_stopped_worker_leaves_no_django_connection_open(
    db: str, opened_by_workers: list[Any]
) -> None:
    queue = get_queue()
    orders = [Order.objects.using(db).create(item=f"item {n}") for n in range(3)]
    worker = ShipWorker(queue)
    worker.start_in_thread()
    try:
        for order in orders:
            job = enqueue("ship", {"order": order.pk}, using=db)
            assert queue.wait_for_job(job.metadata.id, timeout=TIMEOUT).status == "complete"
    finally:
        assert worker.stop(timeout=TIMEOUT)
    # CONN_MAX_AGE is 0: each job opened a connection of its own, closed after it.
    assert len(opened_by_workers) == 3
    assert all(wrapper.connection is None for wrapper, _, _ in opened_by_workers)
    assert all(is_closed(raw) for _, _, raw in opened_by_workers)
    if db == "postgres":
        pids = [pid for _, pid, _ in opened_by_workers]
        assert all(pids)
        assert_backends_gone(db, pids)


def test_persistent_connections_are_reused_and_closed_when_the_thread_ends(
    db: str, opened_by_workers: list[Any]
) -> None:
    # Every thread's connection to this alias reads this one settings dict.
    connections.settings[db]["CONN_MAX_AGE"] = None
    try:
        queue = get_queue()
        worker = ShipWorker(queue)
        worker.start_in_thread()
        try:
            for n in range(3):
                order = Order.objects.using(db).create(item=f"item {n}")
                job = enqueue("ship", {"order": order.pk}, using=db)
                assert queue.wait_for_job(job.metadata.id, timeout=TIMEOUT).status == "complete"
            # One connection served every job, and it is still open.
            assert len(opened_by_workers) == 1
            assert opened_by_workers[0][0].connection is not None
        finally:
            assert worker.stop(timeout=TIMEOUT)
        assert opened_by_workers[0][0].connection is None
        assert is_closed(opened_by_workers[0][2])
        if db == "postgres":
            assert_backends_gone(db, [opened_by_workers[0][1]])
    finally:
        connections.settings[db]["CONN_MAX_AGE"] = 0
