"""A small Flask app for the tests: a factory, three workers and two routes.

``POST /greetings`` enqueues a job that a worker thread runs inside an app
context (it reads ``current_app.config``); ``GET /jobs/<id>`` shows it.
Configured from a mapping, or from ``FLASK_*`` environment variables when run
as a separate process (``flask --app tests.flask.sample_app:create_app ...``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, g, jsonify, request

import jobworker as jw
from jobworker.contrib.flask import FlaskJobworker

log = logging.getLogger("tests.flask.sample_app")

jobs = FlaskJobworker()


class GreetingWorker(jw.JobWorker):
    """Greets by the app's GREETING: works only inside an app context."""

    def get_worker_name(self) -> str:
        return "greeter"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "greet"

    def execute_job(self, job: jw.AnyJob) -> dict[str, Any]:
        assert jw.is_running_job(job)
        g.job_id = job.metadata.id  # for the app's teardown_appcontext
        return {
            "message": f"{current_app.config['GREETING']}, {job.params['name']}!",
            "app": current_app.name,
        }


class SlowWorker(jw.JobWorker):
    """Holds each job until the worker is asked to stop, then completes it."""

    def __init__(self, queue: jw.JobQueue, **options: Any) -> None:
        super().__init__(queue, **options)
        self.started = threading.Event()
        self.stopping = threading.Event()

    def get_worker_name(self) -> str:
        return "slow"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "slow"

    def execute_job(self, job: jw.AnyJob) -> dict[str, Any]:
        log.info("job %s started", job.metadata.id)
        self.started.set()
        if not self.stopping.wait(timeout=60):
            raise RuntimeError("the worker was never asked to stop")
        return {"stopped_gracefully": True, "app": current_app.name}

    def request_stop(self) -> None:
        self.stopping.set()
        super().request_stop()


class StuckWorker(jw.JobWorker):
    """Holds each job until its release event is set (never, in a subprocess)."""

    release = threading.Event()

    def get_worker_name(self) -> str:
        return "stuck"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "stuck"

    def execute_job(self, job: jw.AnyJob) -> str:
        log.info("job %s started", job.metadata.id)
        self.release.wait(timeout=60)
        return "released"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Return a new app, configured by *config* or by FLASK_* environment variables."""
    app = Flask(__name__)
    app.config["GREETING"] = "Hello"
    if config is None:
        app.config.from_prefixed_env()
    else:
        app.config.update(config)
    jobs.init_app(app)

    @app.teardown_appcontext
    def count_job_contexts(exc: BaseException | None) -> None:
        job_id = g.pop("job_id", None)
        if job_id is not None:
            app.extensions["test_teardowns"].append(job_id)

    app.extensions["test_teardowns"] = []

    @app.post("/greetings")
    def create_greeting() -> tuple[Any, int]:
        job = jobs.enqueue("greet", {"name": request.get_json()["name"]})
        return jsonify(id=job.metadata.id, status=job.status), 202

    @app.get("/jobs/<job_id>")
    def show_job(job_id: str) -> Any:
        job = jobs.queue.get_job(job_id)
        if job is None:
            return jsonify(error="no such job"), 404
        result = job.result if jw.is_complete_job(job) else None
        return jsonify(id=job_id, status=job.status, result=result)

    return app
