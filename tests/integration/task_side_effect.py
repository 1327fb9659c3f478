"""A module whose import leaves a mark: no task job may ever make a worker import it."""

from __future__ import annotations

import os
import pathlib

pathlib.Path(os.environ["JOBWORKER_TEST_LEDGER"] + ".imported").write_text("imported\n")


def run() -> str:
    return "ran"
