"""An in-process worker with a hung job does not keep a Django process from exiting (issue 11).

Run as a subprocess and measured: the stop at exit (``STOP_TIMEOUT``) gives
up on a job that never returns, or its time limit abandons the thread after
the grace period; either way the interpreter exits soon after.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

import jobworker as jw

ROOT = pathlib.Path(__file__).resolve().parents[2]

HUNG_PROJECT = textwrap.dedent("""\
    import sys
    import threading

    import django

    django.setup()
    from django.conf import settings

    from jobworker.contrib.django import enqueue
    from jobworker.contrib.django.workers import DjangoJobWorker, start_workers

    started = threading.Event()


    class HungWorker(DjangoJobWorker):
        def get_worker_name(self):
            return "hung"

        def can_process_job(self, job):
            return job.metadata.type == "hang"

        def execute_job(self, job):
            started.set()
            threading.Event().wait()  # forever: blocked in C, no interrupt lands


    settings.JOBWORKER = {
        "DATABASE": "default",
        "WORKERS": ["__main__.HungWorker"],
        "WORKER_OPTIONS": {"time_limit": float(sys.argv[1]), "time_limit_grace": 0.5},
        "STOP_TIMEOUT": 1.0,
    }
    job = enqueue("hang", {}, max_retries=0)
    start_workers()
    assert started.wait(30)
    print("running", job.metadata.id, flush=True)
    # The main thread ends here, with the worker thread stuck in its job for good.
    """)


@pytest.mark.xfail(
    sys.version_info >= (3, 13), reason="Python 3.13 waits for every non-daemon thread", strict=True
)
@pytest.mark.parametrize("limit", [0.3, 60.0], ids=["limit-reached", "limit-far"])
def test_a_hung_job_does_not_keep_the_process_from_exiting(
    tmp_path: pathlib.Path, limit: float
) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django.project.settings",
        "JOBWORKER_DJANGO_DATA": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HUNG_PROJECT, str(limit)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the job runs, or the process ends
        assert line.startswith("running "), (line, proc.stderr and proc.stderr.read())
        job_id = line.split()[1]
        began = time.monotonic()
        code = proc.wait(timeout=20)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    assert code == 0, err
    assert took <= 1.0 + 0.5 + 1.0, (took, err)  # stop timeout + grace + slack
    with jw.SQLiteQueue(str(tmp_path / "shop.sqlite3")) as queue:
        job = queue.get_job(jw.job_id(job_id))
    assert job is not None
    if limit < 1:
        assert isinstance(job, jw.FailedJob), job
        assert job.error.startswith("JobTimeoutError")
    else:
        assert job.status == "running"  # left to its lease, which no one renews now
