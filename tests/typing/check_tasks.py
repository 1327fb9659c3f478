"""Checked by mypy --strict, never run: tasks carry their function's types.

Each ``# type: ignore[code]`` marks a call mypy must refuse: strict mode
warns about an unused ignore, so a call that stopped being an error fails
the check. tests/unit/test_tasks_typing.py also runs mypy on this file with
the ignores removed and expects each of those lines to be reported.
"""

from __future__ import annotations

import datetime as dt

from typing_extensions import assert_type

import jobworker as jw


@jw.task
def send_email(to: str, subject: str) -> str:
    return f"{to}: {subject}"


@jw.task(max_retries=3, priority=2, name="emails.digest")
def digest(day: dt.date, *, limit: int = 10) -> list[str]:
    return []


@jw.task(takes_context=True)
def crunch(context: jw.TaskContext, numbers: list[int]) -> float:
    context.report_progress(len(numbers))
    context.raise_if_cancelled()
    return sum(numbers) / len(numbers)


def typed(queue: jw.JobQueue) -> None:
    handle = send_email.enqueue("ada@example.com", subject="Hi")
    assert_type(handle, jw.JobHandle[str])
    assert_type(handle.result(timeout=10), str)
    assert_type(send_email.enqueue_on(queue, "a", "b").result(), str)
    assert_type(digest.enqueue_on(queue, dt.date.today(), limit=3).result(), list[str])
    assert_type(crunch.enqueue_on(queue, [1, 2]).result(), float)
    assert_type(crunch([1, 2]), float)
    assert_type(send_email.run_eagerly("a", "b"), str)
    assert_type(send_email.handle("job-1", queue=queue), jw.JobHandle[str])
    assert_type(jw.JobHandle("job-1", queue=queue).status, jw.JobStatus)
    assert_type(send_email("a", "b"), str)
    assert_type(send_email.using(delay=60, priority=5).enqueue("a", "b").result(), str)
    assert_type(send_email.using(id="job-2").enqueue_on(queue, "a", "b"), jw.JobHandle[str])
    worker = jw.TaskWorker(queue, [send_email, digest, crunch], poll_interval=0.5)
    assert_type(worker, jw.TaskWorker)


def wrong(queue: jw.JobQueue) -> None:
    send_email.enqueue(1, subject="Hi")  # type: ignore[arg-type]
    send_email.enqueue("ada@example.com")  # type: ignore[call-arg]
    send_email.enqueue_on(queue, "a", "b", "c")  # type: ignore[call-arg]
    send_email.enqueue_on(queue, "a", subjekt="b")  # type: ignore[call-arg]
    digest.enqueue_on(queue, dt.date.today(), 3)  # type: ignore[call-arg]
    crunch.enqueue_on(queue, ["1"])  # type: ignore[list-item]
    send_email.run_eagerly("a", 2)  # type: ignore[arg-type]
    send_email.using(delay=5).enqueue_on(queue, "a", 2)  # type: ignore[arg-type]
    send_email.using(delay=5).enqueue("a")  # type: ignore[call-arg]
    number: int = send_email.enqueue("a", "b").result()  # type: ignore[assignment]
    print(number)
