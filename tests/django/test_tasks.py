"""The Tasks backend: Django's own pattern (enqueue a @task, run the worker, read the result)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django
import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client, override_settings

from jobworker import RetryPolicy
from jobworker.contrib.django import get_queue
from jobworker.contrib.django._tasks_api import TaskResultDoesNotExist, TaskResultStatus
from jobworker.contrib.django.tasks import TaskWorker
from jobworker.testing import FakeClock, run_pending
from tests.django.conftest import TIMEOUT
from tests.django.shop import tasks
from tests.django.shop.models import Order

if django.VERSION >= (6, 0):
    from django.tasks import default_task_backend
    from django.tasks.signals import task_finished
else:
    from django_tasks import default_task_backend
    from django_tasks.signals import task_finished


def worker(**options: Any) -> TaskWorker:
    return TaskWorker(retry_policy=RetryPolicy.immediate(), **options)


def test_enqueue_run_the_worker_and_read_the_result(db: str) -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert result.id and not result.is_finished
    assert [o.status for o in run_pending(worker())] == ["complete"]
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.is_finished and result.errors == [] and result.attempts == 1
    assert result.started_at is not None and result.finished_at is not None
    again = tasks.add.get_result(result.id)
    assert again.return_value == 5 and again.args == [2, 3]
    assert default_task_backend.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_a_request_enqueues_a_task_a_worker_thread_runs_it(db: str) -> None:
    w = worker()
    w.start_in_thread()
    try:
        client = Client()
        created = client.post("/tasks/add/", {"a": "20", "b": "22"}).json()
        assert created["status"] == "READY"
        get_queue().wait_for_job(created["id"], timeout=TIMEOUT)
        assert client.get(f"/tasks/{created['id']}/").json() == {
            "status": "SUCCESSFUL",
            "value": 42,
        }
    finally:
        assert w.stop(timeout=TIMEOUT)


def test_a_failing_task_records_its_exception(db: str) -> None:
    finished = []

    def receiver(sender: object, task_result: object, **kwargs: object) -> None:
        finished.append(task_result)

    task_finished.connect(receiver)
    try:
        result = tasks.explode.enqueue("boom")
        run_pending(worker(), fail_fast=False)
    finally:
        task_finished.disconnect(receiver)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "ValueError: boom" in error.traceback and "explode" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert [r.id for r in finished] == [result.id]
    job = get_queue().get_job(result.id)
    assert job is not None and job.status == "failed"


def test_retries_follow_the_backends_max_retries(db: str) -> None:
    options = {**settings.TASKS["default"], "OPTIONS": {"max_retries": 2}}
    with override_settings(TASKS={"default": options}):
        ok = tasks.flaky.enqueue(3)
        w = worker()
        outcomes = [o.status for o in run_pending(w, fail_fast=False)]
        assert outcomes == ["retry", "retry", "complete"]
        ok.refresh()
        assert ok.status == TaskResultStatus.SUCCESSFUL and ok.return_value == 3
        assert ok.attempts == 3

        too_many = tasks.flaky.enqueue(4)
        run_pending(worker(), fail_fast=False)
        too_many.refresh()
        assert too_many.status == TaskResultStatus.FAILED and too_many.attempts == 3
        assert too_many.errors[0].exception_class is RuntimeError


def test_no_retries_by_default(db: str) -> None:
    tasks.flaky.enqueue(2)
    assert [o.status for o in run_pending(worker(), fail_fast=False)] == ["failed"]


def test_priority_order_and_queue_names(db: str) -> None:
    low = tasks.add.using(priority=-5).enqueue(1, 1)
    high = tasks.add.using(priority=50).enqueue(2, 2)
    mail = tasks.send_email.enqueue("ann@example.com")
    job = get_queue().get_job(mail.id)
    assert job is not None and job.metadata.type == "task:emails" and job.metadata.priority == 10

    default_only = worker(queue_names=["default"])
    assert [o.job.metadata.id for o in run_pending(default_only)] == [high.id, low.id]
    mail.refresh()
    assert mail.status == TaskResultStatus.READY
    run_pending(worker(queue_names=["emails"]))
    mail.refresh()
    assert mail.return_value == "sent to ann@example.com"


def test_run_after_waits_for_its_time(db: str) -> None:
    clock = FakeClock()
    with override_settings(JOBWORKER={**settings.JOBWORKER, "QUEUE_OPTIONS": {"clock": clock}}):
        later = tasks.add.using(run_after=clock.now() + dt.timedelta(hours=1)).enqueue(1, 2)
        assert run_pending(worker()) == []
        later.refresh()
        assert later.status == TaskResultStatus.READY
        clock.advance(3600)
        assert [o.status for o in run_pending(worker())] == ["complete"]
        later.refresh()
        assert later.return_value == 3


def test_tasks_enqueued_in_a_rolled_back_transaction_never_exist(db: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=db):
        lost = tasks.add.enqueue(1, 1)
        raise RuntimeError
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(lost.id)
    with transaction.atomic(using=db):
        kept = tasks.add.enqueue(1, 1)
    assert tasks.add.get_result(kept.id).status == TaskResultStatus.READY


def test_a_task_uses_the_orm_in_the_worker_thread(db: str) -> None:
    Order.objects.using(db).create(item="a")
    Order.objects.using(db).create(item="b")
    result = tasks.count_orders.enqueue()
    w = worker()
    w.start_in_thread()
    try:
        get_queue().wait_for_job(result.id, timeout=TIMEOUT)
    finally:
        assert w.stop(timeout=TIMEOUT)
    result.refresh()
    assert result.return_value == 2


def test_an_unknown_id_does_not_exist(db: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("no-such-id")
    from jobworker.contrib.django import enqueue

    plain = enqueue("ship", {"order": 1})
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(plain.metadata.id)
