"""Output of the command line: rich tables on a terminal, plain text elsewhere.

Plain text is used when the stream is not a terminal (a pipe, a file, a
test) or when rich is not installed (it comes with ``jobworker[cli]``), so
scripts that read the output never see colours or box drawing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import TextIO

__all__ = ["print_fields", "print_table", "use_rich"]


def use_rich(stream: TextIO) -> bool:
    """Return whether to draw on *stream* with rich: a terminal, and rich installed."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: plain text
        return False
    return tty and os.environ.get("TERM") != "dumb" and importlib.util.find_spec("rich") is not None


def print_table(
    stream: TextIO,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
) -> None:
    """Print *rows* under *headers*: a rich table on a terminal, aligned columns elsewhere."""
    if use_rich(stream):
        # Imported here: rich is optional, and only a terminal needs it.
        from ._rich_console import print_rich_table  # noqa: PLC0415

        print_rich_table(stream, headers, rows, title=title)
        return
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    for line in (headers, *rows):
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        stream.write(text.rstrip() + "\n")


def print_fields(
    stream: TextIO, fields: Sequence[tuple[str, str]], *, title: str | None = None
) -> None:
    """Print ``name: value`` lines; a two-column rich table on a terminal."""
    if use_rich(stream):
        from ._rich_console import print_rich_fields  # noqa: PLC0415

        print_rich_fields(stream, fields, title=title)
        return
    for name, value in fields:
        stream.write(f"{name}: {value}" + "\n")
