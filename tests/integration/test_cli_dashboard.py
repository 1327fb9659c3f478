"""``jobworker dashboard``: serves a queue on loopback, read-only unless --actions."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import jobworker as jw


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobworker", "dashboard", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+/) \((read-only|actions enabled)\)", line)
    if found is None:
        proc.kill()
        pytest.fail(f"no address in {line!r}: {proc.communicate(timeout=10)}")
    return proc, found.group(1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130


def test_the_dashboard_command_serves_the_queue_read_only(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with jw.SQLiteQueue(str(path)) as queue:
        queue.create_job(jw.new_job("mail", {"to": "a@example.com"}, id="mail-1"))
    proc, url = start("--queue", f"sqlite:///{path}")
    try:
        with urllib.request.urlopen(url + "jobs?type=mail", timeout=10) as response:
            page = response.read().decode()
        assert response.status == 200 and "mail-1" in page and "read-only" in page
        post = urllib.request.Request(url + "action", data=b"action=cancel&id=mail-1")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=10)
        refused.value.close()
        assert refused.value.code == 403
    finally:
        stop(proc)
    with jw.SQLiteQueue(str(path)) as queue:
        job = queue.get_job("mail-1")
        assert job is not None and job.status == "pending"


def test_a_missing_queue_file_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobworker", "dashboard", "--port", "0",
         "--queue", f"sqlite:///{tmp_path / 'nope.sqlite3'}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 3 and "does not exist" in proc.stderr
