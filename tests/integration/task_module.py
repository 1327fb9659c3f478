"""Tasks the process tests run: ``jobworker worker --tasks tests.integration.task_module``."""

from __future__ import annotations

import datetime as dt
import threading

import attrs

import jobworker as jw


@attrs.frozen
class Window:
    start: dt.datetime
    days: int


@jw.task(name="add", max_retries=0)
def add(a: int, b: int = 1) -> int:
    return a + b


@jw.task(name="widen")
def widen(window: Window, extra: int) -> Window:
    """Takes and returns an attrs class holding a datetime: both go through the converter."""
    return Window(window.start, window.days + extra)


@jw.task(name="boom", max_retries=1, retry_policy=jw.RetryPolicy.immediate())
def boom(message: str) -> None:
    raise ValueError(message)


@jw.task(name="flaky", max_retries=2, retry_policy=jw.RetryPolicy.immediate(), takes_context=True)
def flaky(context: jw.TaskContext, succeed_on: int) -> int:
    """Fail until attempt *succeed_on*, then return the attempt."""
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return context.attempt


@jw.task(name="until_cancelled", max_retries=0, takes_context=True)
def until_cancelled(context: jw.TaskContext, label: str) -> str:
    """Report progress, then run until the job is cancelled from elsewhere."""
    context.report_progress({"label": label, "step": 1}, force=True)
    pause = threading.Event()
    while not context.is_cancelled():
        pause.wait(0.02)  # the job's own work, between two checks
    context.raise_if_cancelled()
    return "not reached"
