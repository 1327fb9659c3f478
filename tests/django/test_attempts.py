"""Django's Tasks contract for attempts: errors, times and workers of every attempt."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from jobworker import RetryPolicy
from jobworker.contrib.django import get_queue
from jobworker.contrib.django._tasks_api import TaskResultStatus
from jobworker.contrib.django.tasks import TaskWorker
from jobworker.testing import run_pending
from tests.django.conftest import TIMEOUT
from tests.django.shop import tasks
from tests.django.test_admin import admin_client


def worker(**options: Any) -> TaskWorker:
    return TaskWorker(retry_policy=RetryPolicy.immediate(), **options)


def retries(n: int) -> Any:
    return override_settings(
        TASKS={"default": {**settings.TASKS["default"], "OPTIONS": {"max_retries": n}}}
    )


def test_a_task_raising_system_exit_fails_and_the_worker_goes_on(db: str) -> None:
    # Issue 9, 3.1: as Django's immediate backend records it, not READY forever.
    w = worker()
    thread = w.start_in_thread()
    try:
        leaving = tasks.leave.enqueue(3)
        get_queue().wait_for_job(leaving.id, timeout=TIMEOUT)
        after = tasks.add.enqueue(1, 2)
        get_queue().wait_for_job(after.id, timeout=TIMEOUT)
        assert thread.is_alive() and not w.is_stopping()
    finally:
        assert w.stop(timeout=TIMEOUT)
    leaving.refresh()
    after.refresh()
    assert leaving.status == TaskResultStatus.FAILED
    [error] = leaving.errors
    assert error.exception_class is SystemExit
    assert error.traceback.endswith("SystemExit: 3\n")
    assert after.status == TaskResultStatus.SUCCESSFUL and after.return_value == 3


def test_a_message_with_a_blank_line_stays_whole(db: str) -> None:
    # Issue 9, 3.2.
    message = "first\n\nsecond\n\nthird"
    result = tasks.explode.enqueue(message)
    run_pending(worker(), fail_fast=False)
    result.refresh()
    [error] = result.errors
    assert error.exception_class is ValueError
    assert error.traceback.startswith("Traceback (most recent call last):\n")
    assert error.traceback.endswith(f"ValueError: {message}\n")
    assert "explode" in error.traceback


def test_every_attempts_error_is_kept_and_shown_while_waiting_to_retry(db: str) -> None:
    # Issue 9, 3.9: every attempt's error, not only the last.
    with retries(2):
        result = tasks.flaky.enqueue(4)
        w = worker()
        assert w.run_once() is not None
        result.refresh()
        assert result.status == TaskResultStatus.READY
        assert [e.traceback.splitlines()[-1] for e in result.errors] == [
            "RuntimeError: attempt 1 fails"
        ]
        run_pending(w, fail_fast=False)
        result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 3
    assert [e.traceback.splitlines()[-1] for e in result.errors] == [
        f"RuntimeError: attempt {n} fails" for n in (1, 2, 3)
    ]
    assert all(e.exception_class is RuntimeError for e in result.errors)


def test_started_at_is_the_first_attempts_and_last_attempted_at_the_latest(db: str) -> None:
    # Issue 9, 3.7.
    with retries(2):
        result = tasks.flaky.enqueue(3)
        run_pending(worker(), fail_fast=False)
        result.refresh()
    job = get_queue().get_job(result.id)
    assert job is not None and job.status == "complete" and len(job.attempts) == 2
    assert result.started_at == job.attempts[0].started_at
    assert result.last_attempted_at == job.started_at  # the attempt that completed
    assert result.enqueued_at <= result.started_at < result.last_attempted_at
    assert result.finished_at is not None and result.last_attempted_at <= result.finished_at


def test_worker_ids_are_the_same_while_running_and_after(db: str) -> None:
    # Issue 9, 3.10: one entry per attempt, the name of the worker that ran it.
    with retries(1):
        flaky = tasks.flaky.enqueue(2)
        seen = tasks.worker_ids_while_running.enqueue()
        run_pending(worker(), fail_fast=False)
    seen.refresh()
    flaky.refresh()
    assert seen.return_value == ["tasks-default"] == seen.worker_ids
    assert flaky.worker_ids == ["tasks-default", "tasks-default"]


@pytest.mark.parametrize("status", ["failed", "pending"])
def test_the_admin_shows_every_attempts_error(db: str, status: str) -> None:
    message = "admin <sees> this\n\nwhole"
    with retries(0 if status == "failed" else 1):
        result = tasks.explode.enqueue(message)
        assert worker().run_once() is not None
    job = get_queue().get_job(result.id)
    assert job is not None and job.status == status
    page = admin_client(db).get(f"/admin/jobworker/job/{result.id}/change/")
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert "attempts and their errors" in text.lower()
    assert "#1 tasks-default" in text and "builtins.ValueError" in text
    assert "admin <sees> this" in text and "whole" in text
    assert "raise ValueError(message)" in text
