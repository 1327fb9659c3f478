"""examples/django, driven with the commands of its README, as subprocesses."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "django"
TIMEOUT = 60.0


@pytest.fixture
def env(tmp_path: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["EXAMPLE_DATABASE"] = str(tmp_path / "example.sqlite3")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Lines:
    """A subprocess's output lines, read in a thread; wait for one with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), name="example-output")
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_for(self, text: str) -> None:
        with self._cond:
            found = self._cond.wait_for(
                lambda: self.ended or any(text in line for line in self.lines), timeout=TIMEOUT
            )
        assert found and any(text in line for line in self.lines), "".join(self.lines)

    def join(self) -> str:
        self._thread.join(TIMEOUT)
        return "".join(self.lines)


@pytest.fixture
def runworker(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    manage(env, "migrate")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runworker"],
        cwd=EXAMPLE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(proc)
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        lines.join()
        assert proc.stdout is not None
        proc.stdout.close()


def test_the_readme_commands_work(
    env: dict[str, str], runworker: tuple[subprocess.Popen[str], Lines]
) -> None:
    proc, lines = runworker
    lines.wait_for("jobworker: running 4 worker thread(s)")

    out = manage(env, "greet", "Ada", "--wait")
    assert "complete: {'greeting': 'Hello, Ada!'}" in out

    # The views, as the README's curl commands call them.
    script = """
import json
from django.test import Client
from jobworker.contrib.django import get_queue
c = Client(HTTP_HOST="localhost")
job = c.post("/greet/", {"name": "Bo"}).json()["job"]
get_queue().wait_for_job(job, timeout=60)
print(json.dumps(c.get(f"/jobs/{job}/").json()))
task = c.post("/shout/", {"text": "hello"}).json()["task"]
get_queue().wait_for_job(task, timeout=60)
print(json.dumps(c.get(f"/tasks/{task}/").json()))
"""
    out = manage(env, "shell", "-c", script)
    assert '{"status": "complete", "result": {"greeting": "Hello, Bo!"}}' in out
    assert '{"status": "SUCCESSFUL", "value": "HELLO"}' in out

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(TIMEOUT) == 0
    assert "jobworker: stopped" in lines.join()


def test_workers_started_in_process_are_stopped_at_interpreter_exit(env: dict[str, str]) -> None:
    manage(env, "migrate")
    script = """
from jobworker.contrib.django import enqueue, get_queue, start_workers
print(len(start_workers()), "started")
job = enqueue("greet", {"name": "Di"})
print(get_queue().wait_for_job(job.metadata.id, timeout=60).status)
"""
    # Without the stop at exit, the worker threads (not daemons) would keep
    # the interpreter alive and this would time out.
    out = manage(env, "shell", "-c", script)
    assert "4 started" in out and "complete" in out
