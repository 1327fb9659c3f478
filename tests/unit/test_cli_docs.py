"""The command lines and the unit file of the CLI, deployment and operations how-tos agree.

The job commands' examples run as doctests (docs/howto/cli.rst); the
``worker`` lines and the systemd unit cannot run in a doctest, so they are
checked here: every ``$ jobworker ...`` line and ``ExecStart=`` parses with the
command's own parser, and the unit stops the way the page says.
"""

from __future__ import annotations

import configparser
import pathlib
import re
import shlex

import pytest

from jobworker.cli import build_parser

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "howto"
PAGES = ("cli.rst", "deployment.rst", "operations.rst")


def command_lines(page: str) -> list[str]:
    """Every ``$ jobworker ...`` line of *page*, continuation lines joined."""
    text = (DOCS / page).read_text().replace("\\\n", " ")
    return [match.group(1) for match in re.finditer(r"^\s*\$ jobworker (.*)$", text, re.M)]


@pytest.mark.parametrize(
    "line", [line for page in PAGES for line in command_lines(page)], ids=lambda line: line[:40]
)
def test_documented_command_lines_parse(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    if "--help" in line:
        with pytest.raises(SystemExit) as exc_info:
            build_parser().parse_args(shlex.split(line))
        assert exc_info.value.code == 0
        assert "exit status:" in capsys.readouterr().out
        return
    args = build_parser().parse_args(shlex.split(line))
    assert callable(args.handler)


def test_every_page_has_command_lines() -> None:
    assert all(command_lines(page) for page in PAGES)


def unit_file() -> configparser.ConfigParser:
    text = (DOCS / "deployment.rst").read_text()
    block = text.split(".. code-block:: ini\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    unit = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string("\n".join(lines))
    return unit


def test_the_unit_file_stops_the_worker_gracefully() -> None:
    service = unit_file()["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].endswith("/jobworker")
    args = build_parser().parse_args(exec_start[1:])
    assert args.command == "worker"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    # systemd's SIGKILL must come after the command's own deadline.
    assert float(service["TimeoutStopSec"]) > args.stop_timeout
