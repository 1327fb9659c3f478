"""What the ``jobworker`` command prints: no password ever, and words a new user can act on.

Run as a subprocess on a real SQLite file and the real PostgreSQL server
(trust authentication: the password in the DSN is sent and ignored).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import jobworker as jw
from jobworker.queues._postgres_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from jobworker.queues._sqlite_schema import SCHEMA_VERSION
from tests.conftest import drop_schema, new_schema, require_postgres

from .test_cli import assert_one_line_error, jobworker

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "Sup3rS3cr3t"


def _with_password(dsn: str, how: str) -> str:
    """Return *dsn* carrying SECRET as its password, in the user-info or the query."""
    scheme, _, rest = dsn.partition("://")
    if "@" in rest:
        rest = rest.rpartition("@")[2]
    if how == "userinfo":
        return f"{scheme}://postgres:{SECRET}@{rest}"
    joiner = "&" if "?" in rest else "?"
    return f"{scheme}://postgres@{rest}{joiner}password={SECRET}"


@pytest.fixture(params=["userinfo", "query"])
def secret_dsn(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A DSN whose password is SECRET, and a fresh schema (dropped after)."""
    dsn = require_postgres()
    schema = new_schema()
    yield _with_password(dsn, request.param), schema
    drop_schema(schema)


def _no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    assert SECRET not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_no_command_prints_the_password(secret_dsn: tuple[str, str]) -> None:
    dsn, schema = secret_dsn
    queue = ["--queue", dsn, "--schema", schema]
    missing = jobworker("list", *queue)
    _no_secret(missing)
    assert "jobworker migrate --queue" in assert_one_line_error(missing, 3)

    migrate = jobworker("migrate", *queue)
    _no_secret(migrate)
    assert migrate.returncode == 0, migrate.stderr
    assert "***" in migrate.stdout

    enqueue = jobworker("enqueue", "t", "--id", "j1", *queue)
    _no_secret(enqueue)
    assert enqueue.stdout == "j1\n"
    for args in (["list"], ["show", "j1"], ["stats"], ["cancel", "j1"], ["retry", "j1"]):
        proc = jobworker(*args, *queue)
        _no_secret(proc)
        assert proc.returncode in (0, 1), proc.stderr
    prune = jobworker("prune", "--older-than", "1d", *queue)
    _no_secret(prune)
    assert prune.stdout == "deleted 0 jobs\n"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresq://app:{SECRET}@127.0.0.1/x",
        f"postgresql://app@127.0.0.1:1/x?PASSWORD={SECRET}&connect_timeout=2",
        f"postgresql://app:{SECRET}@127.0.0.1:1/x?connect_timeout=2",
        f"postgresql://app@127.0.0.1:1/x?Password={SECRET}",
    ],
)
@pytest.mark.parametrize("command", ["list", "migrate", "stats", "worker"])
def test_no_error_prints_the_password(url: str, command: str) -> None:
    args = [command, "--queue", url]
    if command == "worker":
        args.insert(1, "tests.integration.cli_workers:SleepWorker")
    proc = jobworker(*args)
    _no_secret(proc)
    assert proc.returncode in (2, 3), proc.stderr


def test_a_password_given_as_the_command_is_masked_by_argparse() -> None:
    proc = jobworker(f"postgresql://app:{SECRET}@h/x", "list")
    _no_secret(proc)
    assert_one_line_error(proc, 2)


def test_the_worker_start_line_masks_the_password(secret_dsn: tuple[str, str]) -> None:
    dsn, schema = secret_dsn
    assert jobworker("migrate", "--queue", dsn, "--schema", schema).returncode == 0
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "jobworker", "worker"),
            *("tests.integration.cli_workers:SleepWorker", "--queue", dsn, "--schema", schema),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    start = ""
    while "running on" not in start and proc.poll() is None:
        start = proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=30) == 0, start + rest
    assert "1 worker thread (" in start and "running on" in start, start
    assert SECRET not in start + rest
    assert "***" in start


# -- 4.1: the queue options before the command ----------------------------------------


def test_the_queue_options_may_come_before_the_command(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert jobworker("--queue", url, "migrate").returncode == 0
    assert jobworker("--queue", url, "enqueue", "t", "--id", "j1").stdout == "j1\n"
    listed = jobworker("--queue", url, "list")
    assert listed.returncode == 0, listed.stderr
    assert "j1" in listed.stdout
    # Given again after the command, the later one wins.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert jobworker("--queue", url, "migrate", "--queue", other).returncode == 0
    assert "j1" not in jobworker("--queue", url, "list", "--queue", other).stdout


def test_the_postgresql_options_may_come_before_the_command() -> None:
    dsn = require_postgres()
    schema = new_schema()
    try:
        created = jobworker("--queue", dsn, "--schema", schema, "--prefix", "x_", "migrate")
        assert created.returncode == 0, created.stderr
        assert f"(schema {schema}, prefix x_)" in created.stdout
        with jw.PostgresQueue(dsn, schema=schema, prefix="x_", notify=False) as queue:
            assert queue.list_jobs() == []
    finally:
        drop_schema(schema)


# -- 4.2: migrate says what it did; the missing tables give the command ----------------


def test_migrate_says_created_then_already_current(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = jobworker("migrate", url)
    created = f"created the tables at schema version {SCHEMA_VERSION}"
    assert first.stdout == f"jobworker migrate: {url}: {created}\n"
    again = jobworker("migrate", url)
    current = f"the tables were already at the current schema version {SCHEMA_VERSION}"
    assert again.stdout == f"jobworker migrate: {url}: {current}\n"


def test_migrate_on_postgresql_names_schema_and_prefix() -> None:
    dsn = require_postgres()
    schema = new_schema()
    try:
        first = jobworker("migrate", dsn, "--schema", schema)
        assert first.stdout.endswith(
            f"(schema {schema}, prefix jobworker_): "
            f"created the tables at schema version {PG_SCHEMA_VERSION}\n"
        ), first.stdout + first.stderr
        again = jobworker("migrate", dsn, "--schema", schema)
        assert f"already at the current schema version {PG_SCHEMA_VERSION}" in again.stdout
    finally:
        drop_schema(schema)


def test_missing_tables_give_the_exact_migrate_command() -> None:
    dsn = require_postgres()
    schema = new_schema()
    try:
        proc = jobworker("stats", "--queue", dsn, "--schema", schema)
        error = assert_one_line_error(proc, 3)
        command = f"jobworker migrate --queue {dsn} --schema {schema}"
        assert error.rstrip().endswith(f"run: {command}"), error
        assert "migrate=True" not in error
        assert jobworker(*command.split()[1:]).returncode == 0
        assert jobworker("stats", "--queue", dsn, "--schema", schema).returncode == 0
    finally:
        drop_schema(schema)


def test_a_missing_sqlite_file_gives_the_migrate_command(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    error = assert_one_line_error(jobworker("list", "--queue", url), 3)
    assert f"create it with: jobworker migrate --queue {url}" in error


# -- 4.3: run after; negative durations and offsets -------------------------------------


def test_list_shows_run_after_and_negative_durations_parse(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert jobworker("migrate", url).returncode == 0
    past = jobworker("enqueue", "t", "--id", "past", "--run-after", "-5m", "--queue", url)
    assert past.returncode == 0, past.stderr
    later = jobworker("enqueue", "t", "--id", "later", "--run-after", "2h", "--queue", url)
    assert later.returncode == 0, later.stderr
    listed = jobworker("list", "--queue", url).stdout.splitlines()
    header = listed[0].split()
    assert header[:8] == ["ID", "TYPE", "STATUS", "PRIORITY", "RETRIES", "CREATED", "RUN", "AFTER"]
    rows = {line.split()[0]: line.split() for line in listed[1:]}
    with jw.open_queue(url) as queue:
        for job_id in ("past", "later"):
            job = queue.get_job(job_id)
            assert job is not None and job.metadata.run_after is not None
            shown = rows[job_id][6]
            assert shown == job.metadata.run_after.isoformat(timespec="seconds").replace(
                "+00:00", "Z"
            )
            created = job.metadata.created
        past_job = queue.get_job("past")
        assert past_job is not None and past_job.metadata.run_after is not None
        assert past_job.metadata.run_after < created
        assert queue.poll_next_pending_job(timeout=0) is not None  # due at once


def test_negative_values_are_refused_with_a_clear_message(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert jobworker("migrate", url).returncode == 0
    prune = assert_one_line_error(jobworker("prune", "--older-than", "-1d", "--queue", url), 2)
    assert "--older-than: must not be negative, got '-1d'" in prune
    offset = assert_one_line_error(jobworker("list", "--offset", "-5", "--queue", url), 2)
    assert "--offset: must be >= 0, got -5" in offset
    assert "4611686018427387904" not in offset


# -- 4.4: what the worker command says ---------------------------------------------------


def test_an_import_error_in_a_worker_module_shows_file_and_line(tmp_path: pathlib.Path) -> None:
    module = tmp_path / "broken_workers.py"
    module.write_text(
        textwrap.dedent("""\
        import os

        VALUE = {}["missing"]
        """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "jobworker", "worker", "broken_workers:W", "--queue", "memory:"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    error = assert_one_line_error(proc, 2)
    assert f"at {module}:3: KeyError" in error
