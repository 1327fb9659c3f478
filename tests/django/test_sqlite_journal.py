"""The SQLite journal mode: the first enqueue of a process may run inside ``atomic()``."""

from __future__ import annotations

import sqlite3

from django.core.management import call_command
from django.db import connections, transaction

from jobworker.contrib.django import close_queues, enqueue, get_queue
from tests.django.shop.models import Order


def journal_mode(path: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def to_rollback_journal(path: str) -> None:
    """Leave the file in the rollback journal mode, as a fresh deployment's file may be."""
    close_queues()
    connections.close_all()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    conn.close()


def test_the_first_enqueue_of_a_process_works_inside_atomic(sqlite_db: str) -> None:
    path = connections[sqlite_db].settings_dict["NAME"]
    to_rollback_journal(path)
    with transaction.atomic(using=sqlite_db):
        Order.objects.using(sqlite_db).create(item="book")  # the request's own write
        # The queue opens here, inside the transaction that holds the write lock.
        created = enqueue("ship", {"order": 1}, id="first", using=sqlite_db)
        assert created.params == {"order": 1}
    job = get_queue(sqlite_db).get_job("first")
    assert job is not None and job.status == "pending"
    assert Order.objects.using(sqlite_db).filter(item="book").count() == 1


def test_migrate_leaves_the_file_in_wal_mode(sqlite_db: str) -> None:
    path = connections[sqlite_db].settings_dict["NAME"]
    to_rollback_journal(path)
    assert journal_mode(path) == "delete"
    call_command("migrate", "jobworker", database=sqlite_db, verbosity=0)
    assert journal_mode(path) == "wal"
