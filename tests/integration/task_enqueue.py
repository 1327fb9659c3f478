"""Enqueue the process tests' tasks from a process of its own; print the ids as JSON.

``python -m tests.integration.task_enqueue URL [SCHEMA]``
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import jobworker as jw

from .task_module import Window, add, boom, flaky, until_cancelled, widen


def main(argv: list[str]) -> None:
    url = argv[0]
    if url.startswith("sqlite"):
        queue = jw.open_queue(url)
    else:
        queue = jw.PostgresQueue(url, schema=argv[1], notify=False)
    with queue:
        start = dt.datetime(2024, 2, 28, 12, tzinfo=dt.timezone.utc)
        ids = {
            "add": add.enqueue_on(queue, 2, b=3).id,
            "widen": widen.enqueue_on(queue, Window(start, 1), extra=2).id,
            "boom": boom.enqueue_on(queue, "it broke").id,
            "flaky": flaky.enqueue_on(queue, 2).id,
            "until_cancelled": until_cancelled.enqueue_on(queue, "first").id,
        }
        # A job naming a task no process defined: the module exists, and importing
        # it would leave a mark.
        unknown = jw.new_job(
            jw.TASK_TYPE_PREFIX + "tests.integration.task_side_effect.run",
            {"args": [], "kwargs": {}},
            max_retries=3,
        )
        ids["unknown"] = queue.create_job(unknown).metadata.id
    print(json.dumps(ids))


if __name__ == "__main__":
    main(sys.argv[1:])
