"""The rich side of :mod:`jobworker._console`; needs ``jobworker[cli]``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["print_rich_fields", "print_rich_table"]

_STATUS_STYLES = {
    "pending": "cyan",
    "running": "yellow",
    "complete": "green",
    "failed": "red",
    "cancelled": "magenta",
}


# Free text folds on a narrow terminal, down to this many characters; every
# other column (ids, statuses, numbers, times) stays whole, so a value can be
# read and copied as it is.
_FOLDS = {"TYPE": 12, "USER": 8, "INFO": 16}


def _cell(header: str, value: str) -> Text:
    # Text, not markup: a value such as ["a"] must print as it is.
    style = _STATUS_STYLES.get(value, "") if header.lower() == "status" else ""
    return Text(value, style=style)


def print_rich_table(
    stream: TextIO,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
) -> None:
    """Print *rows* as a rich table on *stream*."""
    # Light rules and one space of padding: the id column alone takes 34 of
    # an 80-column terminal.
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1))
    widths = []
    for index, header in enumerate(headers):
        width = max([len(header), *(len(row[index]) for row in rows)])
        if header in _FOLDS:
            width = min(width, max(len(header), _FOLDS[header]))
            table.add_column(header, overflow="fold", min_width=width)
        else:
            table.add_column(header, no_wrap=True, min_width=width)
        widths.append(width)
    for row in rows:
        cells = [_cell(header, cell) for header, cell in zip(headers, row, strict=True)]
        table.add_row(*cells)
    console = Console(file=stream, highlight=False, markup=False)
    # A terminal narrower than the whole columns need: rich would cut them, so
    # draw at the width they need (columns, their padding, the dividers and
    # the two edges) and let the terminal wrap the lines instead.
    needed = sum(widths) + 3 * len(widths) + 1
    if needed > console.width:
        console = Console(file=stream, highlight=False, markup=False, width=needed)
    console.print(table)


def print_rich_fields(
    stream: TextIO, fields: Sequence[tuple[str, str]], *, title: str | None = None
) -> None:
    """Print ``name, value`` pairs as a two-column rich table on *stream*."""
    table = Table(title=title, show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in fields:
        table.add_row(name, _cell(name, value))
    Console(file=stream, highlight=False, markup=False).print(table)
