"""The ``jobworker`` job commands, run as a subprocess on a real SQLite file and PostgreSQL.

Every command's output and exit status; bad arguments and unreachable queues
give one line on standard error and no traceback.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

import jobworker as jw
from jobworker import model
from jobworker.cli import ExitCode
from jobworker.queues._sqlite_schema import SCHEMA_VERSION

ROOT = pathlib.Path(__file__).resolve().parents[2]


def jobworker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jobworker ARGS`` from the repository root; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "jobworker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env=env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    return proc.stderr


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    """A migrated SQLite queue in a fresh file."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    proc = jobworker("migrate", url)
    assert proc.returncode == 0, proc.stderr
    created = f"created the tables at schema version {SCHEMA_VERSION}"
    assert proc.stdout == f"jobworker migrate: {url}: {created}\n"
    return url


def failed_job(url: str, job_id: str) -> None:
    """Store a job that failed for good, through the library."""
    with jw.open_queue(url) as queue:
        queue.create_job(jw.new_job("fail", {"n": 1}, id=job_id, max_retries=0))
        running = queue.poll_next_pending_job(types={"fail"})
        assert running is not None
        failed = model.fail(running, "Boom: it broke", now=queue.clock.now())
        queue.update_job(failed, "running", claim=running.claim)


def test_enqueue_list_show_stats(url: str) -> None:
    proc = jobworker(
        "enqueue", "email", "--params", '{"to": "ada@example.com"}', "--queue", url,
        "--id", "e1", "--user", "ada", "--priority", "5", "--max-retries", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "e1\n"
    later = jobworker("enqueue", "report", "--run-after", "1h", "--queue", url, "--json")
    assert later.returncode == 0, later.stderr
    stored = json.loads(later.stdout)
    assert stored["status"] == "pending" and stored["metadata"]["run_after"] is not None

    listed = jobworker("list", "--queue", url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "TYPE",
        "STATUS",
        "PRIORITY",
        "RETRIES",
        "CREATED",
        "RUN",
        "AFTER",
        "USER",
        "INFO",
    ]
    assert len(lines) == 3
    assert lines[2].split()[:5] == ["e1", "email", "pending", "5", "0/2"]  # newest first
    assert lines[2].split()[-1] == "ada"
    assert "\x1b[" not in listed.stdout  # piped: plain text

    as_json = json.loads(jobworker("list", "--queue", url, "--json", "--type", "email").stdout)
    assert [job["metadata"]["id"] for job in as_json] == ["e1"]
    assert as_json[0]["params"] == {"to": "ada@example.com"}
    assert json.loads(jobworker("list", "--queue", url, "--json", "--user", "nobody").stdout) == []
    paged = json.loads(
        jobworker("list", "--queue", url, "--json", "--limit", "1", "--offset", "1").stdout
    )
    assert [job["metadata"]["id"] for job in paged] == ["e1"]

    show = jobworker("show", "e1", "--queue", url)
    assert show.returncode == 0, show.stderr
    fields = dict(line.split(": ", 1) for line in show.stdout.splitlines())
    assert fields["status"] == "pending"
    assert fields["params"] == '{"to": "ada@example.com"}'
    assert fields["retries"] == "0 of 2"
    shown = json.loads(jobworker("show", "e1", "--queue", url, "--json").stdout)
    assert shown["metadata"]["user_id"] == "ada"

    stats = jobworker("stats", "--queue", url)
    assert stats.returncode == 0
    assert dict(line.split() for line in stats.stdout.splitlines()[1:]) == {
        "pending": "2", "running": "0", "complete": "0", "failed": "0", "cancelled": "0",
        "total": "2",
    }  # fmt: skip
    assert json.loads(jobworker("stats", "--json", "--queue", url).stdout)["pending"] == 2


def test_the_queue_comes_from_the_environment(url: str) -> None:
    env = {**_env(), "JOBWORKER_QUEUE": url}
    assert jobworker("enqueue", "t", "--id", "from-env", env=env).returncode == 0
    with jw.open_queue(url) as queue:
        assert queue.get_job("from-env") is not None
    proc = jobworker("stats", env=_env())
    assert "no queue given" in assert_one_line_error(proc, ExitCode.USAGE)


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "JOBWORKER_QUEUE"}


def test_cancel(url: str) -> None:
    assert jobworker("enqueue", "t", "--id", "c1", "--queue", url).returncode == 0
    proc = jobworker("cancel", "c1", "--queue", url)
    assert (proc.returncode, proc.stdout) == (0, "cancelled c1\n")
    again = jobworker("cancel", "c1", "--queue", url)
    assert "is cancelled" in assert_one_line_error(again, ExitCode.FAILURE)
    missing = jobworker("cancel", "nope", "--queue", url)
    assert "no job with id 'nope'" in assert_one_line_error(missing, ExitCode.NOT_FOUND)


def test_retry_puts_a_failed_job_back_to_pending(url: str) -> None:
    failed_job(url, "f1")
    proc = jobworker("retry", "f1", "--queue", url, "--json")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)
    assert job["status"] == "pending"
    assert job["metadata"]["retry_count"] == 0 and job["params"] == {"n": 1}
    with jw.open_queue(url) as queue:
        stored = queue.get_job("f1")
        assert jw.is_pending_job(stored)
        # Claimable again, at once.
        assert queue.poll_next_pending_job(types={"fail"}) is not None
    again = jobworker("retry", "f1", "--queue", url)
    assert "is running: only a failed job" in assert_one_line_error(again, ExitCode.FAILURE)


def test_a_cancelled_job_cannot_be_retried(url: str) -> None:
    assert jobworker("enqueue", "t", "--id", "c2", "--queue", url).returncode == 0
    assert jobworker("cancel", "c2", "--queue", url).returncode == 0
    proc = jobworker("retry", "c2", "--queue", url)
    assert "is cancelled: only a failed job" in assert_one_line_error(proc, ExitCode.FAILURE)
    missing = jobworker("retry", "nope", "--queue", url)
    assert_one_line_error(missing, ExitCode.NOT_FOUND)


def test_prune_deletes_old_terminal_jobs_only(url: str) -> None:
    failed_job(url, "old-failure")
    assert jobworker("enqueue", "t", "--id", "waiting", "--queue", url).returncode == 0
    kept = jobworker("prune", "--older-than", "1d", "--queue", url)
    assert (kept.returncode, kept.stdout) == (0, "deleted 0 jobs\n")
    pruned = jobworker("prune", "--older-than", "0s", "--queue", url, "--json")
    assert pruned.returncode == 0
    assert json.loads(pruned.stdout) == {"deleted": 1, "older_than_seconds": 0.0}
    with jw.open_queue(url) as queue:
        assert queue.get_job("old-failure") is None
        assert queue.get_job("waiting") is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "t", "--params", "{not json"], "--params is not JSON"),
        (["enqueue", "t", "--priority", "high"], "expected an integer"),
        (["enqueue", "t", "--run-after", "tomorrow"], "--run-after"),
        (["enqueue", "t", "--run-after", "2026-01-01T09:00:00"], "time zone"),
        (["enqueue", ""], "metadata.type must be a non-empty string"),
        (["list", "--status", "lost"], "invalid choice"),
        (["list", "--limit", "-1"], "must be from 0"),
        (["prune"], "--older-than"),
        (["prune", "--older-than", "7 days"], "expected a duration"),
        (["show"], "the following arguments are required: id"),
        (["list", "--no-such-option"], "unrecognized arguments"),
        (["list", "--queue", "mysql://db/x"], "unknown queue URL"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(url: str, args: list[str], message: str) -> None:
    proc = jobworker(*args, *([] if "--queue" in args else ["--queue", url]))
    assert message in assert_one_line_error(proc, ExitCode.USAGE)


def test_a_duplicate_id_is_a_failure(url: str) -> None:
    assert jobworker("enqueue", "t", "--id", "dup", "--queue", url).returncode == 0
    proc = jobworker("enqueue", "t", "--id", "dup", "--queue", url)
    assert "already exists" in assert_one_line_error(proc, ExitCode.FAILURE)


def test_an_unreachable_queue_gives_one_line_and_status_3(tmp_path: pathlib.Path) -> None:
    missing = jobworker("list", "--queue", f"sqlite:///{tmp_path / 'typo.db'}")
    assert "the file does not exist" in assert_one_line_error(missing, ExitCode.BACKEND)
    assert not (tmp_path / "typo.db").exists()  # a typo makes no empty queue
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database\n" * 100)
    proc = jobworker("stats", "--queue", f"sqlite:///{not_a_db}")
    assert "queue error" in assert_one_line_error(proc, ExitCode.BACKEND)
    refused = jobworker("stats", "--queue", "postgresql://nobody:secret@127.0.0.1:1/none")
    err = assert_one_line_error(refused, ExitCode.BACKEND)
    assert "cannot connect to PostgreSQL" in err
    assert "secret" not in err


def test_help_lists_every_command_and_the_exit_statuses() -> None:
    proc = jobworker("--help")
    assert proc.returncode == 0
    for command in ("worker", "enqueue", "list", "show", "stats", "cancel", "retry", "prune"):
        assert command in proc.stdout
    assert "exit status:" in proc.stdout
    for code in ExitCode:
        assert f"  {code.value} " in proc.stdout


# -- PostgreSQL ------------------------------------------------------------------------


def test_the_commands_on_postgresql(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    where = ["--queue", dsn, "--schema", schema]
    missing = jobworker("stats", *where)
    assert "jobworker migrate" in assert_one_line_error(missing, ExitCode.BACKEND)
    proc = jobworker("migrate", *where)
    assert proc.returncode == 0, proc.stderr
    assert jobworker("enqueue", "t", "--id", "p1", *where).returncode == 0
    assert json.loads(jobworker("stats", "--json", *where).stdout)["pending"] == 1
    listed: list[dict[str, Any]] = json.loads(jobworker("list", "--json", *where).stdout)
    assert [job["metadata"]["id"] for job in listed] == ["p1"]
    failed_pg(dsn, schema, "pf")
    retried = jobworker("retry", "pf", *where)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(jobworker("show", "pf", "--json", *where).stdout)["status"] == "pending"
    assert jobworker("cancel", "p1", *where).returncode == 0
    pruned = jobworker("prune", "--older-than", "0s", "--json", *where)
    assert json.loads(pruned.stdout)["deleted"] == 1
    assert_one_line_error(jobworker("show", "p1", *where), ExitCode.NOT_FOUND)


def failed_pg(dsn: str, schema: str, job_id: str) -> None:
    with jw.PostgresQueue(dsn, schema=schema, notify=False) as queue:
        queue.create_job(jw.new_job("fail", {}, id=job_id, max_retries=0))
        running = queue.poll_next_pending_job(types={"fail"})
        assert running is not None
        failed = model.fail(running, "Boom", now=queue.clock.now())
        queue.update_job(failed, "running", claim=running.claim)


def test_a_job_waiting_to_retry_shows_its_last_error(url: str) -> None:
    # Issue 9, 3.9: show, list and --json show the error before the job has failed for good.
    message = "first line\n\nafter a blank line"
    with jw.open_queue(url) as queue:
        queue.create_job(jw.new_job("flaky", {}, id="flaky", max_retries=3))
        running = queue.poll_next_pending_job(worker="w-1")
        assert running is not None
        try:
            raise ValueError(message)
        except ValueError as exc:
            error = jw.AttemptError.from_exception(exc)
        retried = model.fail_or_retry(running, error, now=queue.clock.now(), delay=3600)
        queue.update_job(retried, "running", claim=running.claim)

    shown = jobworker("show", "flaky", "--queue", url)
    assert shown.returncode == 0, shown.stderr
    assert "status: pending" in shown.stdout
    assert f"last error: ValueError: {message}" in shown.stdout
    assert "attempt 1: w-1, " in shown.stdout and "builtins.ValueError" in shown.stdout
    assert "raise ValueError(message)" in shown.stdout  # the traceback
    listed = jobworker("list", "--queue", url)
    assert "last error: ValueError: first line" in listed.stdout
    data = json.loads(jobworker("show", "flaky", "--json", "--queue", url).stdout)
    (attempt,) = data["attempts"]
    assert attempt["worker"] == "w-1" and attempt["number"] == 1
    assert attempt["error"]["class_path"] == "builtins.ValueError"
    assert attempt["error"]["message"] == message
    assert attempt["error"]["traceback"].endswith(f"ValueError: {message}\n")
    assert json.loads(jobworker("list", "--json", "--queue", url).stdout)[0]["attempts"] == [
        attempt
    ]
