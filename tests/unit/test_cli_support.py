"""The parts behind ``jobworker worker`` and the job commands, in process.

Runner.stop_now (the second signal), rich or plain output, JSON log lines,
durations, and main() returning one line and a status for each error.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import pathlib
import re
import threading
import time
from typing import Any

import attrs
import pytest

import jobworker as jw
from jobworker import _console, cli, model
from jobworker._cli_common import parse_duration, parse_when
from jobworker._logging import JSONFormatter, configure_logging
from jobworker.cli import ExitCode, main

TIMEOUT = 5.0


class BlockingWorker(jw.JobWorker):
    """Runs each job until ``release`` is set."""

    def __init__(self, queue: jw.JobQueue, **options: Any) -> None:
        super().__init__(queue, **options)
        self.started = threading.Event()
        self.release = threading.Event()

    def get_worker_name(self) -> str:
        return "blocking"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        self.started.set()
        self.release.wait(TIMEOUT)
        return None


def test_stop_now_makes_a_waiting_stop_return_at_once(queue: jw.MemoryQueue) -> None:
    busy = BlockingWorker(queue)
    idle = BlockingWorker(queue, job_types={"never"})
    runner = jw.Runner([busy, idle], stop_timeout=60.0)
    runner.start()
    queue.create_job(jw.new_job("t", {}, id="held"))
    assert busy.started.wait(TIMEOUT)
    result: dict[str, bool] = {}
    stopper = threading.Thread(target=lambda: result.setdefault("stopped", runner.stop()))
    try:
        stopper.start()
        # Every worker is told at once: the idle one leaves while the busy one works.
        assert idle._stopped.wait(TIMEOUT)
        began = time.monotonic()
        runner.stop_now()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        assert time.monotonic() - began < 2.0  # not the 60 s stop_timeout
        assert result["stopped"] is False
        held = queue.get_job("held")
        assert held is not None and held.status == "running"  # left to its lease
    finally:
        busy.release.set()
    assert queue.wait_for_job("held", timeout=TIMEOUT).status == "complete"
    assert busy.stop(timeout=TIMEOUT) is True


def test_stop_now_before_stop_gives_up_at_once(queue: jw.MemoryQueue) -> None:
    worker = BlockingWorker(queue)
    runner = jw.Runner([worker], stop_timeout=60.0)
    runner.start()
    queue.create_job(jw.new_job("t", {}, id="held"))
    assert worker.started.wait(TIMEOUT)
    runner.stop_now()
    try:
        assert runner.stop() is False
        assert runner.received_signals == ()
    finally:
        worker.release.set()
    # Given up on, not killed: the job still ends, under its unexpired lease.
    assert queue.wait_for_job("held", timeout=TIMEOUT).status == "complete"
    assert worker.stop(timeout=TIMEOUT) is True


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tables_are_plain_when_piped_and_rich_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [["a1", "pending", '["x"]'], ["b22", "failed", "boom"]]
    piped = io.StringIO()
    _console.print_table(piped, ("ID", "STATUS", "INFO"), rows)
    assert piped.getvalue().splitlines() == [
        "ID   STATUS   INFO",
        'a1   pending  ["x"]',
        "b22  failed   boom",
    ]
    monkeypatch.delenv("TERM", raising=False)
    terminal = TTY()
    _console.print_table(terminal, ("ID", "STATUS", "INFO"), rows)
    drawn = terminal.getvalue()
    assert "─" in drawn  # a rule under the headers
    assert '["x"]' in drawn  # a value is text, never markup

    # Without rich, a terminal gets plain text too.
    monkeypatch.setattr(_console.importlib.util, "find_spec", lambda name: None)
    fallback = TTY()
    _console.print_table(fallback, ("ID", "STATUS", "INFO"), rows)
    assert fallback.getvalue() == piped.getvalue()


def test_fields_are_name_value_lines_when_piped() -> None:
    out = io.StringIO()
    _console.print_fields(out, [("id", "j1"), ("status", "complete")], title="job j1")
    assert out.getvalue() == "id: j1\nstatus: complete\n"
    terminal = TTY()
    _console.print_fields(terminal, [("id", "j1"), ("status", "complete")], title="job j1")
    assert "job j1" in terminal.getvalue() and "complete" in terminal.getvalue()


def test_json_log_lines() -> None:
    stream = io.StringIO()
    handler = configure_logging(level="INFO", format="json", stream=stream)
    try:
        log = logging.getLogger("jobworker.test")
        log.info("job %s done", "j1", extra={"job_id": "j1"})
        log.debug("not shown")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "job j1 done" and first["level"] == "INFO"
    assert first["logger"] == "jobworker.test" and first["job_id"] == "j1"
    assert dt.datetime.fromisoformat(first["time"]).utcoffset() == dt.timedelta(0)
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]
    assert JSONFormatter().format(logging.makeLogRecord({"msg": "x"})).startswith("{")


def test_durations_and_times() -> None:
    assert parse_duration("90s") == 90.0
    assert parse_duration("2w") == 14 * 86400.0
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_when("1d", now=now) == now + dt.timedelta(days=1)
    assert parse_when("2026-01-01T10:00:00+02:00", now=now).hour == 10


def test_main_returns_a_status_and_one_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert main(["migrate", "--queue", url]) == ExitCode.OK
    assert main(["enqueue", "t", "--id", "j1", "--queue", url]) == ExitCode.OK
    assert main(["show", "missing", "--queue", url]) == ExitCode.NOT_FOUND
    assert main(["migrate", url, "--queue", url]) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "j1"
    assert err.splitlines() == [
        "jobworker show: no job with id 'missing'",
        "jobworker migrate: give the URL once: as an argument or with --queue",
    ]
    with pytest.raises(SystemExit) as exc_info:
        main(["list", "--queue"])
    assert exc_info.value.code == ExitCode.USAGE
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_an_interrupt_returns_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(handler=interrupted)
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for sub in action.choices.values():  # type: ignore[union-attr]
            sub.set_defaults(handler=interrupted)
    assert main(["stats", "--queue", "memory:"]) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "jobworker stats: interrupted\n"


# -- requeue: the model side of `jobworker retry` ----------------------------------------

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def failed_after_retries() -> jw.FailedJob[Any]:
    job = jw.new_job("t", {"n": 1}, id="j", max_retries=2, priority=3, created=T0)
    meta = attrs.evolve(job.metadata, retry_count=2, run_after=T0)
    running = model.start(
        jw.PendingJob(metadata=meta, params=job.params), claim=model.new_claim("w"), now=T0
    )
    return model.fail(running, "E: boom", now=T0)


def test_requeue_gives_a_failed_job_its_retries_back() -> None:
    failed = failed_after_retries()
    pending = model.requeue(failed)
    assert jw.is_pending_job(pending)
    assert pending.metadata == attrs.evolve(failed.metadata, retry_count=0, run_after=None)
    assert pending.params == {"n": 1}
    # Through apply_update: a compare-and-set on "failed", with no claim.
    stored = model.apply_update(failed, pending, "failed", now=T0)
    assert stored == pending
    # Whatever else the caller submits, only the transition's result is stored.
    forged = jw.PendingJob(metadata=attrs.evolve(failed.metadata, priority=99), params={"x": 0})
    assert model.apply_update(failed, forged, "failed", now=T0) == pending
    with pytest.raises(jw.StaleJobError):
        model.apply_update(pending, pending, "failed", now=T0)


@pytest.mark.parametrize("status", ["pending", "running", "complete", "cancelled"])
def test_only_a_failed_job_is_requeued(status: str) -> None:
    job: jw.AnyJob = jw.new_job("t", {}, id="j", created=T0)
    claim = model.new_claim("w")
    if status != "pending":
        job = model.start(job, claim=claim, now=T0)
    if status == "complete":
        job = model.complete(job, None, now=T0)
    elif status == "cancelled":
        job = model.cancel(job, now=T0)
    with pytest.raises(jw.InvalidTransitionError):
        model.requeue(job)  # type: ignore[arg-type]
    if status in ("complete", "cancelled"):
        back = jw.PendingJob(metadata=job.metadata, params=job.params)
        with pytest.raises(jw.InvalidTransitionError):
            model.apply_update(job, back, status, now=T0)


def test_rich_keeps_ids_whole_on_an_80_column_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("TERM", raising=False)
    job_id = "c02172b2837c47c0908697f9aa802eba"
    headers = (
        "ID",
        "TYPE",
        "STATUS",
        "PRIORITY",
        "RETRIES",
        "CREATED",
        "RUN AFTER",
        "USER",
        "INFO",
    )
    row = [job_id, "email.send", "pending", "0", "0/3", "2026-01-01T00:00:00Z", "-", "u1", "x"]
    terminal = TTY()
    _console.print_table(terminal, headers, [row])
    drawn = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())  # colours off
    lines = drawn.splitlines()
    # Every id, status, number and time whole on one line, never folded or cut.
    for value in row[:7]:
        assert any(value in line for line in lines), drawn


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_mask_passwords(log_format: Any) -> None:
    stream = io.StringIO()
    handler = configure_logging(level="INFO", format=log_format, stream=stream)
    try:
        log = logging.getLogger("jobworker.test-masking")
        try:
            raise ValueError("cannot reach postgresql://app:S3cr3t@db/app?password=S3cr3t")
        except ValueError:
            log.warning("lost postgresql://app@db/app?PASSWORD=S3cr3t", exc_info=True)
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "S3cr3t" not in text
    assert "***" in text and "ValueError" in text
