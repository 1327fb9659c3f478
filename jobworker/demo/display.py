"""The demo's live progress on the terminal, and the handler that feeds it warnings.

On a terminal the display redraws a block in place with ANSI codes (a bar,
the counts by status, what each worker is doing, the last warning); elsewhere
it prints one plain line per interval. Private to the demo.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from typing import Final, TextIO

import jobworker as jw

from .jobs import DemoWorker, DetectionProgress, GenerationProgress


class _LastWarning(logging.Handler):
    """Keep the library's latest warning (usually a failed attempt) for the display."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


# -- the display -------------------------------------------------------------------------------

_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_COLORS: Final = {"running": "36", "complete": "32", "failed": "31", "cancelled": "33"}
_MAX_WORKER_LINES: Final = 8


def _fit(line: str, width: int) -> str:
    """Cut *line* to *width* visible characters, keeping its escape codes whole."""
    texts, codes = _ANSI.split(line), _ANSI.findall(line)
    pieces = []
    for index, text in enumerate(texts):
        pieces.append(text[: max(0, width)])
        width -= len(pieces[-1])
        if index < len(codes):
            pieces.append(codes[index])
    return "".join(pieces)


def _describe(progress: object) -> str:
    if isinstance(progress, GenerationProgress):
        return f"{progress.stage:<9} {progress.percentage:3d}%  {progress.message}"
    if isinstance(progress, DetectionProgress):
        return (
            f"detecting {progress.percentage:3d}%  "
            f"{progress.processed_entities}/{progress.total_entities} candidates"
        )
    return "starting"


class _Display:
    """Live progress: a block redrawn in place on a terminal, a line a second otherwise."""

    def __init__(
        self,
        out: TextIO,
        queue: jw.JobQueue,
        team: Sequence[DemoWorker],
        warnings: _LastWarning,
        *,
        live: bool,
    ) -> None:
        self.out = out
        self.live = live
        self.interval = 0.1 if live else 1.0
        self._queue = queue
        self._team = team
        self._warnings = warnings
        stats = queue.get_stats()
        self._total = sum(stats.values())
        # Jobs that ended before the workers started do not count towards the rate.
        self._settled = self._total - stats["pending"] - stats["running"]
        self._color = live and "NO_COLOR" not in os.environ
        utf8 = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
        self._bar = ("█", "░") if utf8 else ("#", "-")
        self._drawn = 0  # lines of the block on screen

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._color else text

    def _counts(self, stats: dict[str, int]) -> str:
        return "  ".join(
            self._paint(f"{status} {stats[status]}", _COLORS.get(status, "2"))
            for status in jw.STATUSES
        )

    def show(self, elapsed: float) -> None:
        """Draw the current state once, *elapsed* seconds after the workers started."""
        stats = self._queue.get_stats()
        ended = self._total - stats["pending"] - stats["running"]
        rate = (ended - self._settled) / elapsed if elapsed > 0 else 0.0
        share = ended / self._total
        if not self.live:
            print(
                f"{elapsed:6.1f}s  {ended}/{self._total} ended ({share:.0%})  "
                f"{self._counts(stats)}  {rate:.1f} jobs/s",
                file=self.out,
                flush=True,
            )
            return
        width = shutil.get_terminal_size().columns - 1
        bar_width = max(10, min(40, width - 40))
        filled = round(bar_width * share)
        bar = self._paint(self._bar[0] * filled, "32") + self._bar[1] * (bar_width - filled)
        activity = [_activity(self._queue, worker) for worker in self._team]
        lines = [
            f"[{bar}] {share:4.0%}  {ended}/{self._total}  {rate:6.1f} jobs/s  {elapsed:5.1f} s",
            self._counts(stats),
            *(f"  {line}" for line in activity[:_MAX_WORKER_LINES]),
        ]
        if len(activity) > _MAX_WORKER_LINES:
            lines.append(f"  ... and {len(activity) - _MAX_WORKER_LINES} more workers")
        last = self._warnings.message or "none yet"
        lines.append(self._paint(f"last warning: {last}", "2"))
        # Back to the top of the block, clear to the end of the screen, redraw in one write.
        home = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else "\x1b[?25l"
        self.out.write(home + "".join(_fit(line, width) + "\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        if self.live:
            self.out.write("\x1b[?25h")  # show the cursor again
            self.out.flush()


def _activity(queue: jw.JobQueue, worker: jw.JobWorker) -> str:
    """Return what *worker* is doing: its current job and that job's progress."""
    current = worker.get_metrics().current_job
    job = None if current is None else queue.get_job(current)
    if not isinstance(job, jw.RunningJob):
        return f"{worker.get_worker_name():<14} idle"
    return f"{worker.get_worker_name():<14} {job.metadata.id}  {_describe(job.progress)}"
