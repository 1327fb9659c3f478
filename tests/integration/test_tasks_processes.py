"""Function tasks across processes, on SQLite and PostgreSQL.

One process enqueues (``task_enqueue.py``), ``jobworker worker --tasks``
runs, and the test process reads the outcomes through handles made from the
ids alone: results (converted values included), a task raising, retrying and
failing, progress and cancellation from another process, and a job naming a
task no process defined, which fails without anything being imported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable

import pytest

import jobworker as jw

from . import test_cli_worker
from .crash_harness import watch
from .task_module import Window, add, boom, flaky, until_cancelled, widen
from .test_cli_worker import ROOT, TIMEOUT, WorkerProcess, open_backend

# The worker command's fixtures: each durable backend, and worker processes.
backend = test_cli_worker.backend
spawn = test_cli_worker.spawn


def enqueue(options: list[str]) -> dict[str, str]:
    """Run the enqueuing process; return the ids it printed."""
    args = [options[1]] + ([options[3]] if len(options) > 2 else [])
    env = {key: value for key, value in os.environ.items() if key != "JOBWORKER_QUEUE"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.task_enqueue", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ids: dict[str, str] = json.loads(done.stdout)
    return ids


def test_enqueue_run_and_read_in_three_processes(
    backend: list[str], spawn: Callable[..., WorkerProcess], tmp_path: pathlib.Path
) -> None:
    ids = enqueue(backend)
    worker = spawn(
        "--tasks",
        "tests.integration.task_module",
        *backend,
        "--concurrency",
        "2",
        "--poll-interval",
        "0.1",
        "--log-format",
        "json",
    )
    worker.wait_ready()
    with open_backend(backend) as queue:
        assert add.handle(ids["add"], queue=queue).result(timeout=TIMEOUT) == 5
        start = dt.datetime(2024, 2, 28, 12, tzinfo=dt.timezone.utc)
        assert widen.handle(ids["widen"], queue=queue).result(timeout=TIMEOUT) == Window(start, 3)

        # Raising: retried once, then failed for good, with a typed error.
        with pytest.raises(jw.JobFailedError) as failed:
            boom.handle(ids["boom"], queue=queue).result(timeout=TIMEOUT)
        assert failed.value.error_type == "ValueError"
        assert failed.value.error == "ValueError: it broke"
        boomed = queue.get_job(ids["boom"])
        assert boomed is not None and boomed.metadata.retry_count == 1

        # Retrying: the first attempt fails, the second returns its number.
        assert flaky.handle(ids["flaky"], queue=queue).result(timeout=TIMEOUT) == 2

        # Progress, read here while the worker runs the task; then cancelled from here.
        running = until_cancelled.handle(ids["until_cancelled"], queue=queue)
        assert watch(lambda: running.progress is not None, TIMEOUT), worker.log()
        assert running.status == "running"
        assert running.progress == {"label": "first", "step": 1}
        assert running.cancel()
        with pytest.raises(jw.JobCancelledError):
            running.result(timeout=TIMEOUT)
        # The worker saw the cancellation and its thread is free again.
        after = add.enqueue_on(queue, 40, 2)
        assert after.result(timeout=TIMEOUT) == 42

        # A task name nobody defined: failed at once, named, nothing imported.
        with pytest.raises(jw.JobFailedError) as unknown:
            jw.JobHandle(ids["unknown"], queue=queue).result(timeout=TIMEOUT)
        assert unknown.value.error_type == "UnknownTaskError"
        assert "'tests.integration.task_side_effect.run'" in unknown.value.error
        stored = queue.get_job(ids["unknown"])
        assert stored is not None and stored.metadata.retry_count == 0  # no retry either
    assert not (tmp_path / "ledger.imported").exists()
    worker.signal(2)
    assert worker.finish() == 0, worker.log()
    assert not (tmp_path / "ledger.imported").exists()
    assert "Traceback" not in worker.log()


def test_the_worker_command_needs_a_class_or_tasks(
    backend: list[str], spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn(*backend)
    assert worker.finish() == 2, worker.log()
    assert "name a worker class (module:Class) or --tasks MODULE" in worker.log()


def test_a_missing_tasks_module_is_a_usage_error(
    backend: list[str], spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn("--tasks", "tests.integration.no_such_module", *backend)
    assert worker.finish() == 2, worker.log()
    assert "cannot import 'tests.integration.no_such_module'" in worker.log()


def test_tasks_and_worker_classes_run_side_by_side_in_one_command(
    backend: list[str], spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn(
        "tests.integration.cli_workers:SleepWorker",
        "--tasks",
        "tests.integration.task_module",
        *backend,
        "--poll-interval",
        "0.1",
        "--log-format",
        "json",
    )
    worker.wait_ready()
    with open_backend(backend) as queue:
        slept = queue.create_job(jw.new_job("sleep", {"ms": 1}))
        added = add.enqueue_on(queue, 20, 22)
        assert added.result(timeout=TIMEOUT) == 42
        done = queue.wait_for_job(slept.metadata.id, timeout=TIMEOUT)
        assert done.status == "complete", worker.log()
    ready = worker.wait_for_line(lambda line: "running on" in line)
    assert "TaskWorker" in ready and "sleep-" in ready
    worker.signal(2)
    assert worker.finish() == 0, worker.log()
