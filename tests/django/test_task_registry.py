"""The Tasks backend shares jobworker's one task registry, its handle, UnknownTaskError (12.5)."""

from __future__ import annotations

import django
import pytest

import jobworker as jw
from jobworker import RetryPolicy
from jobworker.contrib.django import enqueue, get_queue
from jobworker.contrib.django import tasks as backend
from jobworker.contrib.django._tasks_api import TaskResultDoesNotExist
from jobworker.contrib.django.tasks import JOB_TYPE_PREFIX, TaskWorker
from jobworker.tasks import default_registry
from jobworker.testing import run_pending
from tests.django.conftest import TIMEOUT
from tests.django.shop import tasks

if django.VERSION >= (6, 0):
    from django.tasks import task_backends
else:
    from django_tasks import task_backends

ADD = "tests.django.shop.tasks.add"


def backend_of_tasks() -> backend.JobworkerBackend:
    found = task_backends["default"]
    assert isinstance(found, backend.JobworkerBackend)
    return found


def test_django_tasks_live_in_the_process_wide_registry() -> None:
    assert backend.UnknownTaskError is jw.UnknownTaskError
    assert ADD in default_registry
    assert default_registry.get(ADD) is backend.get_registered_task(ADD)
    assert backend.get_registered_task(ADD).func is tasks.add.func  # type: ignore[union-attr]
    # The core's own lookup of its kind does not see a Django task.
    assert default_registry.get_as(ADD, jw.Task) is None


def test_a_jobworker_task_cannot_take_a_django_tasks_name() -> None:
    def add(a: int, b: int) -> int:
        return a - b

    with pytest.raises(ValueError, match=r"already used by .*a Django task"):
        jw.task(name=ADD)(add)
    assert backend.get_registered_task(ADD).func is tasks.add.func  # type: ignore[union-attr]


def test_a_function_task_worker_does_not_run_a_django_task_by_its_name(db: str) -> None:
    # A stored job naming the Django task as if it were a function task.
    job = enqueue(jw.TASK_TYPE_PREFIX + ADD, {"args": [1, 2], "kwargs": {}}, max_retries=3)
    outcomes = run_pending(jw.TaskWorker(get_queue()), fail_fast=False)
    assert [outcome.status for outcome in outcomes] == ["failed"]
    assert isinstance(outcomes[0].error, jw.UnknownTaskError)
    assert outcomes[0].job.metadata.id == job.metadata.id


def test_the_handle_of_a_django_task(db: str) -> None:
    result = tasks.add.enqueue(2, 3)
    handle = backend_of_tasks().get_handle(result.id)
    assert isinstance(handle, jw.JobHandle)
    assert handle.id == result.id and handle.status == "pending"
    assert [o.status for o in run_pending(TaskWorker())] == ["complete"]
    assert handle.wait(timeout=TIMEOUT).status == "complete"
    assert handle.result(timeout=TIMEOUT) == 5


def test_the_handle_cancels_a_django_task(db: str) -> None:
    result = tasks.add.enqueue(4, 5)
    handle = backend_of_tasks().get_handle(result.id)
    assert handle.cancel()
    assert run_pending(TaskWorker()) == []
    result.refresh()
    assert result.status == "FAILED"


def test_no_handle_for_a_job_of_no_task(db: str) -> None:
    job = enqueue("plain", {"n": 1})
    with pytest.raises(TaskResultDoesNotExist):
        backend_of_tasks().get_handle(job.metadata.id)


def test_an_unknown_task_fails_at_once_whatever_the_retries(db: str) -> None:
    job = enqueue(
        JOB_TYPE_PREFIX + "default",
        {"task": "no.such.task", "args": [], "kwargs": {}, "backend": "default"}
        | {"takes_context": False},
        max_retries=5,
    )
    outcomes = run_pending(TaskWorker(retry_policy=RetryPolicy.immediate()), fail_fast=False)
    assert [outcome.status for outcome in outcomes] == ["failed"]
    assert isinstance(outcomes[0].error, jw.UnknownTaskError)
    assert outcomes[0].job.metadata.id == job.metadata.id
    assert outcomes[0].job.metadata.retry_count == 0
