"""The Tasks backend under hostile jobs and Django's own contract; runworker's errors.

- A job's task name is never imported (issue 9, 1.1).
- get_result/refresh inside the enqueue's transaction (3.5).
- manage.py test drops a PostgreSQL test database the queue used (3.6).
- USE_TZ = False gives naive times (3.8).
- runworker with a bad worker path: one line (4.6).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import django
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from jobworker import RetryPolicy
from jobworker.contrib.django import enqueue
from jobworker.contrib.django import tasks as backend
from jobworker.contrib.django._tasks_api import TaskResultStatus
from jobworker.contrib.django.tasks import JOB_TYPE_PREFIX, TaskWorker
from jobworker.testing import run_pending
from tests.conftest import require_postgres
from tests.django.shop import tasks

if django.VERSION >= (6, 0):
    from django.tasks import default_task_backend
else:
    from django_tasks import default_task_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOSTILE = "tests.django.hostile.side_effect"


def _hostile_job(name: str) -> str:
    """Store a job, as any writer of the table could, that names the task *name*."""
    job = enqueue(
        JOB_TYPE_PREFIX + "default",
        {"task": name, "args": [], "kwargs": {}, "backend": "default", "takes_context": False},
        max_retries=0,
    )
    return job.metadata.id


def _imported() -> bool:
    return HOSTILE in sys.modules or "JOBWORKER_TEST_HOSTILE_IMPORTED" in os.environ


@pytest.mark.parametrize("name", [f"{HOSTILE}.steal", HOSTILE, "os.system"])
def test_a_job_never_makes_the_process_import_its_task_name(db: str, name: str) -> None:
    assert not _imported()
    job_id = _hostile_job(name)
    result = default_task_backend.get_result(job_id)
    assert result.status == TaskResultStatus.READY
    assert result.task.func is backend.unknown_task
    assert not _imported()
    [outcome] = run_pending(TaskWorker(retry_policy=RetryPolicy.immediate()), fail_fast=False)
    assert outcome.status == "failed"
    assert not _imported()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert "UnknownTaskError" in result.errors[0].traceback
    assert repr(name) in result.errors[0].traceback
    assert not _imported()


def test_an_unknown_task_raises_a_clear_error() -> None:
    with pytest.raises(backend.UnknownTaskError, match="is defined in this process"):
        backend.unknown_task()  # stands in for it in a result
    error = backend.UnknownTaskError("x.y")
    assert isinstance(error, LookupError) and error.name == "x.y"
    assert str(error).startswith("no task 'x.y' is defined in this process")


def test_defined_tasks_are_registered_and_run(db: str) -> None:
    assert backend.get_registered_task("tests.django.shop.tasks.add") is not None
    result = tasks.add.enqueue(1, 2)
    run_pending(TaskWorker(retry_policy=RetryPolicy.immediate()))
    result.refresh()
    assert result.return_value == 3


def test_installed_apps_tasks_are_discovered_at_startup(tmp_path: pathlib.Path) -> None:
    code = textwrap.dedent("""\
        import sys
        import django
        django.setup()
        from jobworker.contrib.django.tasks import get_registered_task
        assert "tests.django.shop.tasks" in sys.modules
        assert get_registered_task("tests.django.shop.tasks.add") is not None
        assert "tests.django.hostile.side_effect" not in sys.modules
        print("ok")
        """)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django.project.settings",
        "JOBWORKER_DJANGO_DATA": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout == "ok\n", proc.stderr


# -- 3.5: read through the connection that wrote -----------------------------------------


def test_get_result_and_refresh_in_the_enqueues_transaction(db: str) -> None:
    with transaction.atomic(using=db):
        result = tasks.add.enqueue(4, 5)
        again = default_task_backend.get_result(result.id)
        assert again.id == result.id and again.status == TaskResultStatus.READY
        assert again.args == [4, 5]
        result.refresh()
        assert result.status == TaskResultStatus.READY
    run_pending(TaskWorker(retry_policy=RetryPolicy.immediate()))
    result.refresh()
    assert result.return_value == 9


# -- 3.8: USE_TZ = False ------------------------------------------------------------------


def test_times_are_naive_in_django_time_zone_without_use_tz(db: str) -> None:
    with override_settings(USE_TZ=False, TIME_ZONE="Europe/Paris"):
        before = timezone.now()
        result = tasks.add.enqueue(1, 1)
        assert timezone.is_naive(result.enqueued_at)
        assert before - dt_slack() <= result.enqueued_at <= timezone.now() + dt_slack()
        run_pending(TaskWorker(retry_policy=RetryPolicy.immediate()))
        result.refresh()
        for value in (result.started_at, result.finished_at, result.last_attempted_at):
            assert value is not None and timezone.is_naive(value)
            assert result.enqueued_at - dt_slack() <= value <= timezone.now() + dt_slack()
    aware = default_task_backend.get_result(result.id)
    assert timezone.is_aware(aware.enqueued_at)


def dt_slack() -> object:
    import datetime as dt

    # The database clock and this process's may differ by a little.
    return dt.timedelta(seconds=5)


# -- 4.6: runworker's errors ----------------------------------------------------------------


def test_runworker_with_a_bad_worker_path_is_a_command_error() -> None:
    with pytest.raises(CommandError, match=r"cannot import worker 'no\.such\.Worker'"):
        call_command("runworker", "--worker", "no.such.Worker")


def test_runworker_with_a_bad_worker_path_prints_one_line(tmp_path: pathlib.Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django.project.settings",
        "JOBWORKER_DJANGO_DATA": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "django", "runworker", "--worker", "no.such.Worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
        and "cannot import worker 'no.such.Worker'" in proc.stderr
    )


# -- 3.6: manage.py test on PostgreSQL ----------------------------------------------------


def test_the_django_test_runner_drops_a_postgresql_test_database_the_queue_used(
    tmp_path: pathlib.Path,
) -> None:
    require_postgres()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django.project.settings",
        "JOBWORKER_DJANGO_DATA": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "django", "test", "tests.django.pg_testcase", "-v", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Ran 1 test" in proc.stderr and "OK" in proc.stderr
    assert "being accessed by other users" not in proc.stderr
    assert "Traceback" not in proc.stderr
