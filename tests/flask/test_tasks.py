"""Function tasks in a Flask app: the extension enqueues them, a TaskWorker runs them.

The same registry and handles as everywhere: ``@jobworker.task`` registers,
``JOBWORKER_WORKERS = ["jobworker:TaskWorker"]`` runs them in an app context.
"""

from __future__ import annotations

import pytest
from flask import current_app

import jobworker as jw

from .conftest import MakeApp
from .sample_app import jobs


@jw.task(name="tests.flask.greet")
def greet(name: str) -> str:
    return f"{current_app.config['GREETING']}, {name}!"


def test_a_task_enqueued_through_the_extension_runs_in_an_app_context(
    make_app: MakeApp, queue_url: str
) -> None:
    app = make_app(
        JOBWORKER_QUEUE=queue_url,
        JOBWORKER_WORKERS=["jobworker:TaskWorker"],
        JOBWORKER_WORKER_OPTIONS={"poll_interval": 0.05},
        GREETING="Hello",
    )
    with app.app_context():
        handle = jobs.enqueue_task(greet, "Ada")
        with pytest.raises(TypeError, match=r"task tests\.flask\.greet"):
            jobs.enqueue_task(greet, "Ada", "Lovelace")  # type: ignore[call-arg]
    assert jobs.start_workers(app)
    assert handle.result(timeout=10) == "Hello, Ada!"
    assert jobs.handle(handle.id, app).status == "complete"
    assert len(jobs.get_queue(app).list_jobs()) == 1
