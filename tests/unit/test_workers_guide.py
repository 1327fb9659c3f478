"""Each section of the workers guide runs alone, as a reader would paste it.

The docs build runs the guide's examples one after the other in one namespace,
which would hide an example that needs a name or an import from an earlier
section. Here the code of each section (the examples under one heading, in
order) runs by itself in a fresh interpreter, and must print what the page
says it prints.
"""

from __future__ import annotations

import doctest
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "guide" / "workers.rst"
ROOT = GUIDE.parents[2]

_HEADING = re.compile(r"^(?P<title>\S.*)\n(?P<rule>[-~=^])(?P=rule){2,}$", re.M)
_DIRECTIVE = re.compile(r"^\.\. (testcode|testoutput)::.*$", re.M)


def _block(text: str, start: int) -> str:
    """The indented body of the directive whose line ends at *start*."""
    lines = text[start:].split("\n")[1:]
    body: list[str] = []
    for line in lines:
        if line.strip() and not line.startswith(" "):
            break
        body.append(line)
    # Options (":hide:", ":options: ...") come first, before a blank line.
    while body and body[0].strip().startswith(":"):
        body.pop(0)
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n"


def sections() -> list[tuple[str, str, str]]:
    """(title, code, expected output) of every section that has code."""
    text = GUIDE.read_text()
    headings = list(_HEADING.finditer(text))
    found = []
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        code: list[str] = []
        output: list[str] = []
        for directive in _DIRECTIVE.finditer(text, heading.end(), end):
            body = _block(text, directive.end())
            (code if directive.group(1) == "testcode" else output).append(body)
        if code:
            found.append((heading.group("title"), "".join(code), "".join(output)))
    return found


def test_the_guide_has_sections_with_code() -> None:
    titles = [title for title, _, _ in sections()]
    assert "Basic Worker" in titles
    assert "Separate Worker Process" in titles
    assert len(titles) >= 20


@pytest.mark.parametrize(
    ("title", "code", "output"), sections(), ids=[title for title, _, _ in sections()]
)
def test_section_runs_alone(title: str, code: str, output: str, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{title}:\n{done.stderr}"
    # Compared as the docs build compares them ("..." matches anything).
    checker = doctest.OutputChecker()
    assert checker.check_output(output, done.stdout, doctest.ELLIPSIS), (
        f"{title}: printed\n{done.stdout}\nbut the page says\n{output}"
    )
