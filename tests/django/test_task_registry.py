"""The Tasks backend shares jobworker's task registry and its UnknownTaskError (issue 12, 5)."""

from __future__ import annotations

import jobworker as jw
from jobworker import RetryPolicy
from jobworker.contrib.django import enqueue
from jobworker.contrib.django import tasks as backend
from jobworker.contrib.django.tasks import JOB_TYPE_PREFIX, TaskWorker
from jobworker.testing import run_pending
from tests.django.shop import tasks


def test_the_backend_registers_in_a_core_task_registry() -> None:
    assert backend.UnknownTaskError is jw.UnknownTaskError
    assert isinstance(backend._registry, jw.TaskRegistry)
    name = "tests.django.shop.tasks.add"
    assert name in backend._registry
    assert backend._registry.get(name) is backend.get_registered_task(name)
    assert backend.get_registered_task(name).func is tasks.add.func  # type: ignore[union-attr]


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
