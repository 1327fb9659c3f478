"""Through the test client: a request enqueues, a worker thread runs it, the app shows it."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

import jobworker as jw
from jobworker.contrib.django import enqueue, get_queue, start_workers, stop_workers
from tests.django.conftest import TIMEOUT
from tests.django.shop.models import Order
from tests.django.shop.workers import ShipWorker


def test_a_request_enqueues_a_worker_thread_runs_it_and_the_app_shows_it(db: str) -> None:
    worker = ShipWorker(get_queue())
    worker.start_in_thread()
    try:
        client = Client()
        created = client.post("/orders/", {"item": "book"})
        assert created.status_code == 201
        order, job_id = created.json()["order"], created.json()["job"]
        done = get_queue().wait_for_job(job_id, timeout=TIMEOUT)
        assert done.status == "complete"
        shown = client.get(f"/orders/{order}/", {"job": job_id}).json()
        assert shown == {
            "status": "shipped",
            "job": "complete",
            "result": {"order": order, "shipped": 1},
        }
    finally:
        assert worker.stop(timeout=TIMEOUT)


def test_a_rolled_back_request_leaves_neither_order_nor_job(db: str) -> None:
    response = Client().post("/orders/", {"item": "book", "fail": "1"})
    assert response.status_code == 400
    assert Order.objects.using(db).count() == 0
    assert get_queue().list_jobs() == []


def test_enqueue_inside_atomic_exists_only_if_the_transaction_commits(db: str) -> None:
    queue = get_queue()
    with pytest.raises(RuntimeError), transaction.atomic(using=db):
        rolled_back = enqueue("ship", {"order": 0}, using=db)
        raise RuntimeError("roll back")
    assert queue.get_job(rolled_back.metadata.id) is None

    with transaction.atomic(using=db):
        order = Order.objects.using(db).create(item="pen")
        committed = enqueue("ship", {"order": order.pk}, using=db)
        # Not visible to the queue's own connections before the commit.
        if db == "postgres":
            assert queue.get_job(committed.metadata.id) is None
    worker = ShipWorker(queue)
    worker.start_in_thread()
    try:
        done = queue.wait_for_job(committed.metadata.id, timeout=TIMEOUT)
    finally:
        assert worker.stop(timeout=TIMEOUT)
    assert done.status == "complete"
    assert Order.objects.using(db).get(pk=order.pk).status == "shipped"


def test_enqueue_outside_a_transaction_stores_at_once(db: str) -> None:
    job = enqueue("ship", {"order": 1}, using=db, priority=5, max_retries=0)
    stored = get_queue().get_job(job.metadata.id)
    assert stored is not None and stored.status == "pending"
    assert stored.metadata.priority == 5 and stored.metadata.max_retries == 0


def test_start_workers_on_the_first_request_when_configured(db: str) -> None:
    from django.conf import settings
    from django.test import override_settings

    with override_settings(JOBWORKER={**settings.JOBWORKER, "START_WORKERS": True}):
        client = Client()
        created = client.post("/orders/", {"item": "lamp"}).json()
        try:
            done = get_queue().wait_for_job(created["job"], timeout=TIMEOUT)
            assert done.status == "complete"
            running = start_workers()  # already started by the request: the same workers
            assert [w.get_worker_name() for w in running] == ["ship"]
            assert start_workers() == running
        finally:
            assert stop_workers(timeout=TIMEOUT)


def test_the_queue_follows_the_configured_database(db: str) -> None:
    queue = get_queue()
    expected = jw.SQLiteQueue if db == "default" else jw.PostgresQueue
    assert isinstance(queue, expected)
    assert get_queue() is queue
