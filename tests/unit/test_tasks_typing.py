"""mypy refuses wrong task calls: tests/typing/check_tasks.py, with and without its ignores.

The typing check (``tox -e typing``) runs mypy on that file, where each wrong
call carries a ``# type: ignore[code]`` that strict mode reports if unused.
Here the same file, its ignores removed, must produce each of those errors,
so a silently untyped ``enqueue`` (``Any`` parameters) cannot pass.
"""

from __future__ import annotations

import pathlib
import re

from mypy import api

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "typing" / "check_tasks.py"
IGNORE = re.compile(r"  # type: ignore\[([a-z-]+)\]$")


def run_mypy(path: pathlib.Path, cache: pathlib.Path) -> tuple[str, int]:
    out, err, status = api.run(
        [
            "--config-file",
            str(ROOT / "setup.cfg"),
            "--cache-dir",
            str(cache),
            "--no-error-summary",
            str(path),
        ]
    )
    return out + err, status


def test_wrong_task_calls_are_type_errors(tmp_path: pathlib.Path) -> None:
    text = CHECK.read_text()
    out, status = run_mypy(CHECK, tmp_path / "cache")
    assert status == 0, out
    expected: dict[int, str] = {}
    stripped = []
    for number, line in enumerate(text.splitlines(), start=1):
        found = IGNORE.search(line)
        if found:
            expected[number] = found.group(1)
        stripped.append(line[: found.start()] if found else line)
    assert len(expected) >= 8
    bad = tmp_path / "check_tasks_bad.py"
    bad.write_text("\n".join(stripped) + "\n")
    out, status = run_mypy(bad, tmp_path / "cache")
    assert status == 1
    reported = {
        int(match.group(1)): match.group(2)
        for match in re.finditer(r"check_tasks_bad\.py:(\d+): error: .*\[([a-z-]+)\]$", out, re.M)
    }
    assert reported == expected, out
