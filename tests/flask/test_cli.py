"""``flask jobworker ...`` through Flask's CliRunner: the worker command and
the commands handed to ``jobworker.cli.main`` with the app's queue URL."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

import pytest

import jobworker as jw
import jobworker.cli
from jobworker.contrib.flask._cli import DELEGATED_COMMANDS
from jobworker.model import fail
from jobworker.queues._sqlite_schema import SCHEMA_VERSION

from .conftest import GREETER, MakeApp
from .sample_app import jobs

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_group_lists_its_commands(make_app: MakeApp) -> None:
    app = make_app(JOBWORKER_QUEUE="memory:")
    result = app.test_cli_runner().invoke(args=["jobworker", "--help"])
    assert result.exit_code == 0
    for name in ["worker", *DELEGATED_COMMANDS]:
        assert f"  {name} " in result.output


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace jobworker.cli.main by a recorder that exits with status 3."""
    seen: list[list[str]] = []

    def main(argv: Sequence[str] | None = None) -> int:
        assert argv is not None
        seen.append(list(argv))
        return 3

    monkeypatch.setattr(jobworker.cli, "main", main)
    return seen


@pytest.mark.parametrize("name", sorted(DELEGATED_COMMANDS))
def test_each_command_passes_its_arguments_and_the_queue_url(
    make_app: MakeApp, sqlite_url: str, calls: list[list[str]], name: str
) -> None:
    app = make_app(JOBWORKER_QUEUE=sqlite_url)
    result = app.test_cli_runner().invoke(
        args=["jobworker", name, "--status", "failed", "-n", "5", "abc"]
    )
    assert result.exit_code == 3, result.output
    assert calls == [[name, "--queue", sqlite_url, "--status", "failed", "-n", "5", "abc"]]


def test_a_queue_given_on_the_command_line_wins(
    make_app: MakeApp, sqlite_url: str, calls: list[list[str]]
) -> None:
    app = make_app(JOBWORKER_QUEUE=sqlite_url)
    runner = app.test_cli_runner()
    runner.invoke(args=["jobworker", "list", "--queue", "sqlite:///other.db"])
    runner.invoke(args=["jobworker", "stats", "--queue=sqlite:///other.db"])
    runner.invoke(args=["jobworker", "show", "--help"])
    assert calls == [
        ["list", "--queue", "sqlite:///other.db"],
        ["stats", "--queue=sqlite:///other.db"],
        ["show", "--queue", sqlite_url, "--help"],
    ]


@pytest.mark.parametrize("name", ["worker", "list", "enqueue"])
def test_a_memory_queue_is_refused_with_one_clear_line(
    make_app: MakeApp, calls: list[list[str]], name: str
) -> None:
    app = make_app(JOBWORKER_QUEUE="memory:", JOBWORKER_WORKERS=[GREETER])
    result = app.test_cli_runner().invoke(args=["jobworker", name])
    assert result.exit_code == 2
    assert "a memory queue lives inside one process" in result.output
    assert "Traceback" not in result.output
    assert calls == []


def test_a_queue_object_cannot_be_handed_to_another_command(
    make_app: MakeApp, sqlite_url: str, calls: list[list[str]]
) -> None:
    with jw.SQLiteQueue(sqlite_url.removeprefix("sqlite:///")) as queue:
        app = make_app(JOBWORKER_QUEUE=queue)
        result = app.test_cli_runner().invoke(args=["jobworker", "stats"])
    assert result.exit_code == 2
    assert "needs JOBWORKER_QUEUE as a URL" in result.output
    assert calls == []


def test_the_worker_command_needs_a_worker(make_app: MakeApp, sqlite_url: str) -> None:
    app = make_app(JOBWORKER_QUEUE=sqlite_url)
    result = app.test_cli_runner().invoke(args=["jobworker", "worker"])
    assert result.exit_code == 2
    assert "JOBWORKER_WORKERS names no worker" in result.output


@pytest.mark.parametrize("given_as", ["url", "queue object"])
def test_the_worker_command_runs_jobs_in_an_app_context_until_a_signal(
    make_app: MakeApp, sqlite_url: str, given_as: str
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    given = jw.SQLiteQueue(path) if given_as == "queue object" else sqlite_url
    app = make_app(JOBWORKER_QUEUE=given, JOBWORKER_WORKERS=[GREETER], GREETING="Salut")
    job = jobs.enqueue("greet", {"name": "Eve"}, app=app)
    # A separate queue object: the command closes the app's own when it ends.
    outside = jw.SQLiteQueue(path)
    done: list[jw.AnyJob] = []

    def interrupt_when_done() -> None:
        try:
            done.append(outside.wait_for_job(job.metadata.id, timeout=30))
        finally:
            # The command's handler is installed before any job can run.
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_when_done)
    watcher.start()
    result = app.test_cli_runner().invoke(args=["jobworker", "worker", "--concurrency", "2"])
    watcher.join(timeout=30)
    outside.close()
    if isinstance(given, jw.JobQueue):
        assert given.get_stats()["complete"] == 1  # left open for its owner
        given.close()
    assert result.exit_code == 0, result.output
    assert jw.is_complete_job(done[0])
    assert done[0].result == {"message": "Salut, Eve!", "app": app.name}
    # The previous SIGINT handler is back once the command returns.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_commands_read_and_change_the_apps_queue(make_app: MakeApp, sqlite_url: str) -> None:
    app = make_app(JOBWORKER_QUEUE=sqlite_url)
    runner = app.test_cli_runner()

    def run(*args: str) -> str:
        result = runner.invoke(args=["jobworker", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert f"created the tables at schema version {SCHEMA_VERSION}" in run("migrate")
    created = json.loads(run("enqueue", "greet", "--params", '{"name": "Flo"}', "--json"))
    job_id = created["metadata"]["id"]
    # The app's own queue sees what the command created, and the other way round.
    queue = jobs.get_queue(app)
    stored = queue.get_job(job_id)
    assert stored is not None and stored.params == {"name": "Flo"}
    failing = queue.create_job(jw.new_job("greet", {"name": "Gil"}, max_retries=0))
    claimed = queue.poll_next_pending_job(worker="test")
    assert claimed is not None and claimed.metadata.id == job_id
    claimed = queue.poll_next_pending_job(worker="test")
    assert claimed is not None and claimed.metadata.id == failing.metadata.id
    queue.update_job(fail(claimed, "boom", now=queue.clock.now()), "running", claim=claimed.claim)

    assert json.loads(run("stats", "--json"))["failed"] == 1
    listed = json.loads(run("list", "--status", "failed", "--json"))
    assert [job["metadata"]["id"] for job in listed] == [failing.metadata.id]
    assert failing.metadata.id in run("show", failing.metadata.id)
    run("retry", failing.metadata.id)
    assert queue.get_stats()["pending"] == 1
    run("cancel", failing.metadata.id)
    assert queue.get_stats()["cancelled"] == 1
    assert json.loads(run("prune", "--older-than", "0s", "--json"))["deleted"] == 1

    missing = runner.invoke(args=["jobworker", "show", "no-such-job"])
    assert missing.exit_code == 4
    assert "no-such-job" in missing.output


def test_a_postgres_queue_passes_its_schema_and_prefix(
    make_app: MakeApp, calls: list[list[str]]
) -> None:
    url = "postgresql://app@db.example/jobs"
    app = make_app(JOBWORKER_QUEUE=url, JOBWORKER_QUEUE_OPTIONS={"schema": "work", "prefix": "jw_"})
    runner = app.test_cli_runner()
    runner.invoke(args=["jobworker", "stats"])
    runner.invoke(args=["jobworker", "list", "--prefix", "other_"])
    assert calls == [
        ["stats", "--queue", url, "--schema", "work", "--prefix", "jw_"],
        ["list", "--queue", url, "--schema", "work", "--prefix", "other_"],
    ]


def test_a_bad_queue_url_is_one_line_and_status_2(tmp_path: pathlib.Path) -> None:
    # The real `flask` command, which loads the app itself: the error comes
    # while it loads, before any jobworker code runs a command.
    (tmp_path / "badqueue_app.py").write_text(
        "from flask import Flask\n"
        "from jobworker.contrib.flask import FlaskJobworker\n"
        "app = Flask(__name__)\n"
        "app.config['JOBWORKER_QUEUE'] = 'postgresq://app:S3cr3t@db/app'\n"
        "FlaskJobworker(app)\n"
    )
    env = {**os.environ, "FLASK_APP": "badqueue_app", "PYTHONPATH": str(ROOT)}
    for command in (["stats"], ["list", "--status", "failed"], ["worker"]):
        proc = subprocess.run(
            [sys.executable, "-m", "flask", "jobworker", *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == jobworker.cli.ExitCode.USAGE, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.splitlines() == [
            "flask jobworker: JOBWORKER_QUEUE: unknown queue URL 'postgresq://app:***@db/app': "
            "use memory:, sqlite:///PATH or postgresql://..."
        ]
