"""Write the intersphinx inventories the documentation links through.

The docs build must not need the network, so ``docs/conf.py`` reads the
inventories of Python, attrs, Django, Flask and psycopg from the ``*.inv``
files beside this script instead of downloading each project's
``objects.inv``. Each file lists only the names the documentation refers to,
with the address of each name in that project's own documentation, in the
format Sphinx writes (a four-line header, then zlib-compressed lines of
``name domain:role priority uri display-name``).

When a page or docstring refers to another external name, nitpicky mode fails
the build with "reference target not found": add the name to ``PROJECTS``
below and run::

    python docs/_inventories/make_inventories.py

``--check`` writes nothing and exits with status 1 when a committed file does
not hold what ``PROJECTS`` lists (tests/unit/test_docs_inventories.py runs
it).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent


class Entry(NamedTuple):
    """One documented name: ``role`` is ``domain:type``, ``uri`` is relative."""

    name: str
    role: str
    uri: str


class Project(NamedTuple):
    """One project's inventory: its title, version and names."""

    title: str
    version: str
    base_url: str
    entries: tuple[Entry, ...]


# The key is the intersphinx name in docs/conf.py and the file's stem. Keep
# each list sorted by name; a "$" at the end of a uri stands for the name.
# Names and addresses are those of each project's own objects.inv, so a name
# links here exactly where it would with the downloaded inventory. (Sphinx
# itself resolves unqualified typing names such as Literal without a link,
# as it does with the full inventories.)
PROJECTS: dict[str, Project] = {
    "python": Project(
        "Python",
        "3",
        "https://docs.python.org/3/",
        (
            Entry("BaseException", "py:exception", "library/exceptions.html#$"),
            Entry("Exception", "py:exception", "library/exceptions.html#$"),
            Entry("ImportError", "py:exception", "library/exceptions.html#$"),
            Entry("KeyboardInterrupt", "py:exception", "library/exceptions.html#$"),
            Entry("LookupError", "py:exception", "library/exceptions.html#$"),
            Entry("None", "py:data", "library/constants.html#$"),
            Entry("RuntimeError", "py:exception", "library/exceptions.html#$"),
            Entry("SystemExit", "py:exception", "library/exceptions.html#$"),
            Entry("TimeoutError", "py:exception", "library/exceptions.html#$"),
            Entry("TypeError", "py:exception", "library/exceptions.html#$"),
            Entry("ValueError", "py:exception", "library/exceptions.html#$"),
            Entry("bool", "py:class", "library/functions.html#$"),
            Entry("collections.abc.Callable", "py:class", "library/collections.abc.html#$"),
            Entry("collections.abc.Mapping", "py:class", "library/collections.abc.html#$"),
            Entry("datetime.datetime", "py:class", "library/datetime.html#$"),
            Entry("datetime.timedelta", "py:class", "library/datetime.html#$"),
            Entry("zoneinfo", "py:module", "library/zoneinfo.html#module-$"),
            Entry("float", "py:class", "library/functions.html#$"),
            Entry("int", "py:class", "library/functions.html#$"),
            Entry("multiprocessing", "py:module", "library/multiprocessing.html#module-$"),
            Entry("os.PathLike", "py:class", "library/os.html#$"),
            Entry("sqlite3", "py:module", "library/sqlite3.html#module-$"),
            Entry("sqlite3.Connection", "py:class", "library/sqlite3.html#$"),
            Entry("sqlite3.Connection.backup", "py:method", "library/sqlite3.html#$"),
            Entry("str", "py:class", "library/stdtypes.html#$"),
            Entry("time.time", "py:function", "library/time.html#$"),
            Entry("tuple", "py:class", "library/stdtypes.html#$"),
            Entry("typing.NewType", "py:class", "library/typing.html#$"),
            Entry("typing.ParamSpec", "py:class", "library/typing.html#$"),
            Entry("typing.Protocol", "py:class", "library/typing.html#$"),
        ),
    ),
    "attrs": Project(
        "attrs",
        "stable",
        "https://www.attrs.org/en/stable/",
        (Entry("attrs.evolve", "py:function", "api.html#$"),),
    ),
    "django": Project(
        "Django",
        "stable",
        "https://docs.djangoproject.com/en/stable/",
        (Entry("django.db.transaction.atomic", "py:function", "topics/db/transactions/#$"),),
    ),
    "flask": Project(
        "Flask",
        "stable",
        "https://flask.palletsprojects.com/en/stable/",
        (
            Entry("flask.Flask", "py:class", "api/#$"),
            Entry("flask.current_app", "py:data", "api/#$"),
            Entry("flask.g", "py:data", "api/#$"),
        ),
    ),
    "psycopg": Project(
        "psycopg",
        "3",
        "https://www.psycopg.org/psycopg3/docs/",
        (Entry("psycopg.Connection", "py:class", "api/connections.html#$"),),
    ),
}


def render(project: Project) -> str:
    """Return the inventory's text, before compression."""
    lines = [f"{e.name} {e.role} 1 {e.uri} -" for e in sorted(project.entries)]
    return "".join(line + "\n" for line in lines)


def header(project: Project) -> bytes:
    """Return the inventory's uncompressed header."""
    return (
        "# Sphinx inventory version 2\n"
        f"# Project: {project.title}\n"
        f"# Version: {project.version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()


def read(path: Path) -> tuple[bytes, str]:
    """Return a committed file's header and its decompressed text."""
    data = path.read_bytes()
    head_end = 0
    for _ in range(4):
        head_end = data.index(b"\n", head_end) + 1
    return data[:head_end], zlib.decompress(data[head_end:]).decode()


def stale(name: str, project: Project) -> str | None:
    """Say why the committed file of *name* does not match, or return None."""
    path = HERE / f"{name}.inv"
    if not path.exists():
        return f"{path.name} is missing"
    try:
        head, text = read(path)
    except (ValueError, zlib.error) as exc:
        return f"{path.name} is not an inventory: {exc}"
    if head != header(project) or text != render(project):
        return f"{path.name} does not list what PROJECTS says"
    return None


def main(argv: list[str] | None = None) -> int:
    """Write every inventory, or with ``--check`` compare them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    problems = [p for name, project in PROJECTS.items() if (p := stale(name, project))]
    if args.check:
        for problem in problems:
            print(f"{problem}: run python docs/_inventories/make_inventories.py", file=sys.stderr)
        return 1 if problems else 0
    for name, project in PROJECTS.items():
        body = zlib.compress(render(project).encode(), 9)
        (HERE / f"{name}.inv").write_bytes(header(project) + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
