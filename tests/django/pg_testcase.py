"""A Django TestCase on PostgreSQL, run by ``manage.py test`` in test_hardening.

It opens the queue (its pool and its LISTEN connection) on the test
database; the runner must still drop that database at the end.
"""

from __future__ import annotations

from typing import ClassVar

from django.test import TestCase

from jobworker.contrib.django import enqueue, get_queue


class QueueOnPostgres(TestCase):
    databases: ClassVar[set[str]] = {"default", "postgres"}

    def test_enqueue_and_read(self) -> None:
        queue = get_queue("postgres")
        assert queue.get_stats()["pending"] == 0  # through the queue's own pool
        job = enqueue("ship", {"order": 1}, using="postgres")  # in the test's transaction
        assert job.status == "pending"
