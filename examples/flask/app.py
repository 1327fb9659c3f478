"""A minimal Flask app that runs its jobs with jobworker.

``POST /jobs`` enqueues a word count and answers at once with the job's id;
a worker runs the job inside an app context; ``GET /jobs/<id>`` shows its
status and, once it is complete, its result. See README.md to run it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, jsonify, request

import jobworker as jw
from jobworker.contrib.flask import FlaskJobworker

jobs = FlaskJobworker()


class WordCountWorker(jw.JobWorker):
    """Counts the words of a text. Runs inside an app context: it reads the app's config."""

    def get_worker_name(self) -> str:
        return "word-count"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "word_count"

    def execute_job(self, job: jw.AnyJob) -> dict[str, Any]:
        assert jw.is_running_job(job)
        words = [word.lower() for word in job.params["text"].split()]
        current_app.logger.info("job %s: counting %d words", job.metadata.id, len(words))
        top = Counter(words).most_common(current_app.config["TOP_WORDS"])
        return {"words": len(words), "top": top}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Return the app, configured here, then by FLASK_* environment variables."""
    app = Flask(__name__)
    app.config.from_mapping(
        TOP_WORDS=3,
        # Relative to the directory the app runs in; shared with `flask jobworker worker`.
        JOBWORKER_QUEUE="sqlite:///jobs.sqlite3",
        JOBWORKER_WORKERS=[WordCountWorker],
        # Run the workers in threads of the app's process, from its first request.
        JOBWORKER_START_WORKERS=True,
    )
    # For example FLASK_JOBWORKER_START_WORKERS=false to leave the jobs to a
    # separate `flask jobworker worker` process.
    app.config.from_prefixed_env()
    if test_config is not None:
        app.config.update(test_config)
    jobs.init_app(app)

    @app.post("/jobs")
    def create_job() -> Any:
        data = request.get_json(silent=True) or {}
        text = data.get("text")
        if not isinstance(text, str):
            return jsonify(error='send JSON like {"text": "..."}'), 400
        try:
            job = jobs.enqueue("word_count", {"text": text})
        except jw.PayloadTooLargeError as exc:
            return jsonify(error=str(exc)), 413
        return jsonify(id=job.metadata.id, status=job.status), 202

    @app.get("/jobs/<job_id>")
    def show_job(job_id: str) -> Any:
        job = jobs.queue.get_job(job_id)
        if job is None:
            return jsonify(error="no such job"), 404
        result = job.result if jw.is_complete_job(job) else None
        error = job.error if jw.is_failed_job(job) else None
        return jsonify(id=job_id, status=job.status, result=result, error=error)

    return app
