"""Workers for the ``jobworker worker`` tests, imported by the command as ``module:Class``.

Each is built as ``Class(queue, **options)``, as the command builds them.
Every execution appends ``S job_id pid retry_count`` before the job's work and
``E job_id pid retry_count`` after it to the file named by
``$JOBWORKER_TEST_LEDGER`` (``O_APPEND``, one write per line), so a test sees
which jobs are in flight and which ended, in whichever process.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jobworker as jw
from jobworker.schedules import Every, Schedule


class SleepWorker(jw.JobWorker):
    """Takes ``sleep`` jobs: works ``ms`` milliseconds on the first attempt, ``retry_ms`` after."""

    def get_worker_name(self) -> str:
        return f"sleep-{os.getpid()}"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "sleep"

    def _record(self, mark: str, job: jw.AnyJob) -> None:
        path = os.environ.get("JOBWORKER_TEST_LEDGER")
        if path:
            line = f"{mark} {job.metadata.id} {os.getpid()} {job.metadata.retry_count}\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def execute_job(self, job: jw.AnyJob) -> Any:
        self._record("S", job)
        key = "ms" if job.metadata.retry_count == 0 else "retry_ms"
        ms = job.params.get(key, 0)
        if ms:
            time.sleep(ms / 1000)  # the job's own work, not a wait for a thread
        self._record("E", job)
        return {"pid": os.getpid()}


class FailWorker(jw.JobWorker):
    """Takes ``fail`` jobs and fails each for good."""

    def get_worker_name(self) -> str:
        return "fail"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "fail"

    def execute_job(self, job: jw.AnyJob) -> Any:
        raise jw.PermanentJobError("this job always fails")


class AbstractWorker(jw.JobWorker):
    """Lacks execute_job: the command must refuse it."""

    def get_worker_name(self) -> str:
        return "abstract"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True


class NotAWorker:
    """Not a JobWorker at all."""


#: Schedules for ``jobworker worker --schedules`` and ``jobworker schedules``:
#: a ``sleep`` job every second.
SCHEDULES = [Schedule("every-second", Every(1), "sleep", {"ms": 0, "retry_ms": 0}, grace=5.0)]
