"""The example app of examples/flask, as its README runs it."""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask

import jobworker as jw

from .test_worker_process import Process, flask_env

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jobworker_flask_example", EXAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(example: ModuleType, sqlite_url: str) -> Iterator[Flask]:
    app: Flask = example.create_app({"TESTING": True, "JOBWORKER_QUEUE": sqlite_url})
    yield app
    assert example.jobs.close(app, timeout=10)


def test_a_posted_text_is_counted_by_a_worker_thread(example: ModuleType, app: Flask) -> None:
    client = app.test_client()
    response = client.post("/jobs", json={"text": "the cat saw the other cat and the dog"})
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    example.jobs.get_queue(app).wait_for_job(job_id, timeout=10)

    assert client.get(f"/jobs/{job_id}").get_json() == {
        "id": job_id,
        "status": "complete",
        "result": {"words": 9, "top": [["the", 3], ["cat", 2], ["saw", 1]]},
        "error": None,
    }
    assert client.get("/jobs/nope").status_code == 404
    assert client.post("/jobs", json={"txt": 1}).status_code == 400


def test_the_readme_worker_command_runs_the_jobs(
    example: ModuleType, app: Flask, sqlite_url: str
) -> None:
    job = example.jobs.enqueue("word_count", {"text": "a b a"}, app=app)
    # As in the README: `flask --app app jobworker worker`, in the example's folder.
    process = Process(
        [sys.executable, "-m", "flask", "--app", "app", "jobworker", "worker"],
        flask_env(JOBWORKER_QUEUE=sqlite_url),
        cwd=EXAMPLE,
    )
    try:
        with jw.SQLiteQueue(sqlite_url.removeprefix("sqlite:///")) as queue:
            done = queue.wait_for_job(job.metadata.id, timeout=30)
        process.popen.send_signal(signal.SIGTERM)
        assert process.wait() == 0, process.output
    finally:
        process.kill()
    assert jw.is_complete_job(done)
    assert done.result == {"words": 3, "top": [["a", 2], ["b", 1]]}
    assert "counting 3 words" in process.output
