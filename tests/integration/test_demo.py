"""The demo end to end: as a command in a subprocess, and in process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from typing import Any

import pytest

from jobworker.cli import main
from jobworker.demo import DemoSummary, format_summary, run_demo


def assert_consistent(summary: dict[str, Any], jobs: int) -> None:
    """Every job ended, the counts add up, and each kind of ending happened."""
    assert summary["problems"] == []
    assert summary["ok"] is True
    assert summary["jobs"] == jobs
    assert summary["unfinished"] == 0
    assert summary["complete"] + summary["failed"] + summary["cancelled"] == jobs
    assert summary["cancelled_pending"] + summary["cancelled_running"] == summary["cancelled"]
    assert summary["complete"] >= 1
    assert summary["complete_after_retries"] >= 1
    assert summary["failed"] >= 1
    assert summary["cancelled_pending"] >= 1
    assert summary["cancelled_running"] >= 1
    workers = summary["per_worker"]
    assert sum(worker["processed"] for worker in workers) == summary["complete"]
    # A job that failed after retries ran 1 + max_retries (3) times.
    assert summary["retries"] >= 3 * summary["failed"]
    assert (
        summary["attempts"] == summary["jobs"] - summary["cancelled_pending"] + summary["retries"]
    )


def wait_for_library_threads() -> list[threading.Thread]:
    """Join the library's threads briefly; return those still alive."""
    threads = [t for t in threading.enumerate() if t.name.startswith("jobworker-")]
    for thread in threads:
        thread.join(timeout=5)
    return [thread for thread in threads if thread.is_alive()]


def test_the_command_ends_with_a_consistent_summary() -> None:
    command = [sys.executable, "-m", "jobworker", "demo", "--jobs", "60", "--seed", "1"]
    proc = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Failed attempts are logged as warnings; the demo shows them, it does not spill them.
    assert proc.stderr == ""
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("jobworker demo: 60 jobs")
    summary = json.loads(lines[-1])
    assert summary["seed"] == 1
    assert_consistent(summary, 60)


def test_the_command_prints_a_table_when_piped() -> None:
    command = [sys.executable, "-m", "jobworker", "demo", "--jobs", "30", "--seed", "2"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stdout  # not a terminal: plain lines, no escape codes
    assert "30/30 ended (100%)" in proc.stdout
    assert "failed after retries" in proc.stdout
    assert proc.stdout.rstrip().endswith("the counts add up.")


def test_run_demo_in_process() -> None:
    out = io.StringIO()
    summary = run_demo(jobs=40, workers=2, seed=3, out=out)
    assert isinstance(summary, DemoSummary)
    assert summary.ok, summary.problems
    assert_consistent(summary.to_dict(), 40)
    assert [worker.name for worker in summary.per_worker] == ["generation-1", "detection-1"]
    text = out.getvalue()
    assert text.rstrip().endswith(format_summary(summary))
    assert wait_for_library_threads() == []


def test_the_seed_decides_how_jobs_end() -> None:
    def endings(summary: DemoSummary) -> tuple[int, ...]:
        return (
            summary.complete,
            summary.complete_after_retries,
            summary.failed,
            summary.cancelled_pending,
            summary.cancelled_running,
            summary.retries,
            summary.attempts,
        )

    first = run_demo(jobs=30, workers=3, seed=11, out=io.StringIO(), quiet=True)
    second = run_demo(jobs=30, workers=3, seed=11, out=io.StringIO(), quiet=True)
    assert endings(first) == endings(second)


def test_quiet_prints_the_summary_only() -> None:
    out = io.StringIO()
    summary = run_demo(jobs=20, workers=2, seed=4, out=out, quiet=True)
    assert out.getvalue() == format_summary(summary) + "\n"


def test_live_mode_redraws_in_place_and_restores_the_cursor() -> None:
    out = io.StringIO()
    summary = run_demo(jobs=20, workers=2, seed=5, out=out, live=True)
    assert summary.ok, summary.problems
    text = out.getvalue()
    assert "\x1b[?25l" in text  # cursor hidden while drawing
    assert text.index("\x1b[?25h") < text.index("Summary:")  # and shown before the summary


def test_json_prints_one_line() -> None:
    out = io.StringIO()
    summary = run_demo(jobs=20, workers=2, seed=6, out=out, quiet=True, as_json=True)
    assert json.loads(out.getvalue()) == json.loads(json.dumps(summary.to_dict()))


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--jobs", "-1"],
        ["demo", "--jobs", "many"],
        ["demo", "--workers", "1"],
        ["demo", "--timeout", "0"],
        ["demo", "--no-such-option"],
        ["no-such-command"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(argv)
    assert exc_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert "error:" in captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["demo", "--help"])
    assert exc_info.value.code == 0
    assert "--jobs" in capsys.readouterr().out


def test_run_demo_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="jobs"):
        run_demo(jobs=0, out=io.StringIO())
    with pytest.raises(ValueError, match="workers"):
        run_demo(workers=1, out=io.StringIO())


def test_a_run_that_times_out_reports_it_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--jobs", "200", "--seed", "8", "--timeout", "0.05", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["ok"] is False
    assert summary["problems"][0] == "timed out after 0.05 s"
    assert summary["unfinished"] > 0
    assert wait_for_library_threads() == []
