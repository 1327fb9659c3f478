"""Fixtures of the integration tests."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.conftest import with_app

from .crash_harness import WorkerProcesses, worker_processes

# Imported only by a worker process that must never import it; importing it
# here (the doctest collection) would leave the very mark the test looks for.
collect_ignore = [
    "task_side_effect.py",
    # Configures OpenTelemetry's SDK for the whole process: a worker process's only.
    "traced_tasks.py",
]


@pytest.fixture
def postgres_processes(
    postgres_schema: tuple[str, str], tmp_path: pathlib.Path
) -> Iterator[WorkerProcesses]:
    """Worker processes on the test's PostgreSQL schema, each its own application_name."""
    dsn, schema = postgres_schema

    def queue_args(name: str) -> list[str]:
        return [f"--postgres={with_app(dsn, name)}", f"--schema={schema}"]

    with worker_processes(tmp_path, queue_args) as procs:
        yield procs
