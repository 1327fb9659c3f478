"""A request enqueues a job, a worker thread runs it inside an app context,
another request shows the result: on a memory queue and on a SQLite file."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask, current_app

import jobworker as jw
from jobworker.contrib.flask import AppContextMixin, FlaskJobworker, with_app_context
from jobworker.contrib.flask._extension import get_state

from .conftest import GREETER, MakeApp
from .sample_app import GreetingWorker, SlowWorker, jobs


def test_a_request_enqueues_and_a_worker_thread_runs_the_job(
    make_app: MakeApp, queue_url: str
) -> None:
    app = make_app(
        JOBWORKER_QUEUE=queue_url,
        JOBWORKER_WORKERS=[GREETER],
        JOBWORKER_START_WORKERS=True,
        GREETING="Bonjour",
    )
    client = app.test_client()

    response = client.post("/greetings", json={"name": "Ada"})
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    # The first request started the workers; the job ends without any sleep.
    done = jobs.get_queue(app).wait_for_job(job_id, timeout=10)
    assert done.status == "complete"

    shown = client.get(f"/jobs/{job_id}").get_json()
    assert shown == {
        "id": job_id,
        "status": "complete",
        "result": {"message": "Bonjour, Ada!", "app": app.name},
    }
    assert [w.get_worker_name() for w in jobs.get_workers(app)] == ["greeter"]


def test_each_job_runs_in_its_own_app_context(make_app: MakeApp, queue_url: str) -> None:
    app = make_app(
        JOBWORKER_QUEUE=queue_url,
        JOBWORKER_WORKERS=[GreetingWorker],
        JOBWORKER_CONCURRENCY=2,
    )
    with app.app_context():
        ids = [jobs.enqueue("greet", {"name": f"n{i}"}).metadata.id for i in range(5)]
    assert jobs.start_workers(app) is True
    assert jobs.start_workers(app) is False  # running already
    queue = jobs.get_queue(app)
    for job_id in ids:
        assert queue.wait_for_job(job_id, timeout=10).status == "complete"
    assert jobs.stop_workers(app, timeout=10)
    # teardown_appcontext ran once per job: one context each, popped after the job.
    assert sorted(app.extensions["test_teardowns"]) == sorted(ids)


def test_workers_start_once_when_first_requests_race(make_app: MakeApp, sqlite_url: str) -> None:
    app = make_app(
        JOBWORKER_QUEUE=sqlite_url, JOBWORKER_WORKERS=[GREETER], JOBWORKER_START_WORKERS=True
    )
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def request() -> None:
        barrier.wait(timeout=10)
        statuses.append(app.test_client().get("/jobs/missing").status_code)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert statuses == [404] * 8
    assert len(jobs.get_workers(app)) == 1


def test_workers_do_not_start_before_a_request_or_when_not_configured(
    make_app: MakeApp,
) -> None:
    auto = make_app(
        JOBWORKER_QUEUE="memory:", JOBWORKER_WORKERS=[GREETER], JOBWORKER_START_WORKERS=True
    )
    manual = make_app(JOBWORKER_QUEUE="memory:", JOBWORKER_WORKERS=[GREETER])
    assert jobs.get_workers(auto) == []  # `flask jobworker ...` and `flask shell` stay idle
    manual.test_client().get("/jobs/x")
    assert jobs.get_workers(manual) == []
    auto.test_client().get("/jobs/x")
    assert len(jobs.get_workers(auto)) == 1


def test_stopped_workers_stay_stopped_and_can_start_again(make_app: MakeApp) -> None:
    app = make_app(
        JOBWORKER_QUEUE="memory:", JOBWORKER_WORKERS=[GREETER], JOBWORKER_START_WORKERS=True
    )
    client = app.test_client()
    client.get("/jobs/x")
    first = jobs.get_workers(app)
    assert jobs.stop_workers(app, timeout=10)
    assert jobs.stop_workers(app, timeout=10)  # idempotent
    client.get("/jobs/x")
    assert jobs.get_workers(app) == []  # not restarted behind the caller's back
    assert jobs.start_workers(app)
    job_id = client.post("/greetings", json={"name": "Bo"}).get_json()["id"]
    assert jobs.get_queue(app).wait_for_job(job_id, timeout=10).status == "complete"
    assert jobs.get_workers(app) != first


def test_one_queue_per_app(make_app: MakeApp) -> None:
    first = make_app(JOBWORKER_QUEUE="memory:")
    second = make_app(JOBWORKER_QUEUE="memory:")
    assert jobs.get_queue(first) is jobs.get_queue(first)
    assert jobs.get_queue(first) is not jobs.get_queue(second)
    assert first.extensions["jobworker"].get_queue() is jobs.get_queue(first)
    with first.app_context():
        assert jobs.queue is jobs.get_queue(first)
        job = jobs.enqueue("greet", {"name": "x"}, priority=3, user_id="u1", max_retries=0)
    assert jobs.get_queue(first).get_job(job.metadata.id) == job
    assert job.metadata.priority == 3 and job.metadata.user_id == "u1"
    assert jobs.get_queue(second).get_job(job.metadata.id) is None


def test_close_closes_a_queue_opened_from_a_url_but_not_a_given_one(make_app: MakeApp) -> None:
    given = jw.MemoryQueue()
    owned_app = make_app(JOBWORKER_QUEUE="memory:")
    given_app = make_app(JOBWORKER_QUEUE=given, JOBWORKER_WORKERS=[GREETER])
    owned = jobs.get_queue(owned_app)
    assert jobs.get_queue(given_app) is given
    jobs.start_workers(given_app)

    assert jobs.close(owned_app) and jobs.close(given_app)
    with pytest.raises(jw.QueueClosedError):
        owned.get_stats()
    assert given.get_stats()["pending"] == 0  # still open for its owner
    with pytest.raises(jw.QueueClosedError):
        jobs.get_queue(owned_app)
    with pytest.raises(jw.QueueClosedError):
        jobs.start_workers(given_app)
    given.close()


def test_queue_options_reach_the_queue(make_app: MakeApp, sqlite_url: str) -> None:
    app = make_app(
        JOBWORKER_QUEUE=sqlite_url,
        JOBWORKER_QUEUE_OPTIONS={"lease_duration": 7.5, "synchronous": "FULL"},
        JOBWORKER_WORKERS=[GREETER],
        JOBWORKER_WORKER_OPTIONS={"poll_interval": 0.25},
    )
    queue = jobs.get_queue(app)
    assert isinstance(queue, jw.SQLiteQueue)
    assert (queue.lease_duration, queue.synchronous) == (7.5, "FULL")
    [worker] = jobs.create_workers(app)
    assert worker.poll_interval == 0.25
    assert isinstance(worker, GreetingWorker) and isinstance(worker, AppContextMixin)
    assert type(worker).__name__ == "GreetingWorker"


def test_create_workers_for_a_runner_of_ones_own(make_app: MakeApp, queue_url: str) -> None:
    app = make_app(JOBWORKER_QUEUE=queue_url, JOBWORKER_WORKERS=[GREETER])
    workers = jobs.create_workers(app, concurrency=3)
    assert len(workers) == 3
    runner = jw.Runner(workers, stop_timeout=10)
    runner.start()
    try:
        job = jobs.enqueue("greet", {"name": "Cy"}, app=app)
        done = jobs.get_queue(app).wait_for_job(job.metadata.id, timeout=10)
    finally:
        assert runner.stop()
    assert jw.is_complete_job(done)
    assert done.result["message"] == "Hello, Cy!"


def test_with_app_context_for_a_worker_built_by_hand(make_app: MakeApp) -> None:
    app = make_app(JOBWORKER_QUEUE="memory:", GREETING="Hej")
    queue = jw.MemoryQueue()
    bound = with_app_context(GreetingWorker, app)
    assert issubclass(bound, GreetingWorker)
    assert bound.__qualname__ == GreetingWorker.__qualname__
    # Binding a bound class again makes a valid class for the other app.
    rebound = with_app_context(bound, Flask("other"))
    assert issubclass(rebound, AppContextMixin) and rebound.flask_app is not app
    queue.create_job(jw.new_job("greet", {"name": "Di"}))
    from jobworker.testing import run_pending

    [outcome] = run_pending(bound(queue))
    assert jw.is_complete_job(outcome.job)
    assert outcome.job.result["message"] == "Hej, Di!"
    queue.close()


def test_the_mixin_without_an_app_refuses_to_run() -> None:
    class Unbound(AppContextMixin, GreetingWorker):
        pass

    with jw.MemoryQueue() as queue, pytest.raises(jw.WorkerStateError, match="flask_app"):
        Unbound(queue).run_once()


def test_an_extension_given_the_app_sets_it_up_at_once() -> None:
    app = Flask(__name__)
    app.config["JOBWORKER_QUEUE"] = "memory:"
    extension = FlaskJobworker(app)
    assert isinstance(extension.get_queue(app), jw.MemoryQueue)
    assert app.config["JOBWORKER_CONCURRENCY"] == 1  # the defaults are filled in
    with app.app_context():
        assert current_app.extensions["jobworker"] is get_state()
    assert extension.close(app)


def test_a_request_and_a_worker_thread_on_postgres(
    postgres_schema: tuple[str, str], make_app: MakeApp
) -> None:
    # make_app after postgres_schema: the app closes before its schema is dropped.
    dsn, schema = postgres_schema
    if not dsn.startswith(("postgresql://", "postgres://")):
        pytest.skip("JOBWORKER_QUEUE takes a URL; the test server is given as a conninfo")
    app = make_app(
        JOBWORKER_QUEUE=dsn,
        JOBWORKER_QUEUE_OPTIONS={"schema": schema, "migrate": True, "pool_size": 2},
        JOBWORKER_WORKERS=[GREETER],
        JOBWORKER_START_WORKERS=True,
    )
    client = app.test_client()
    job_id = client.post("/greetings", json={"name": "Pg"}).get_json()["id"]
    assert jobs.get_queue(app).wait_for_job(job_id, timeout=20).status == "complete"
    assert client.get(f"/jobs/{job_id}").get_json()["result"]["message"] == "Hello, Pg!"


def test_the_exit_path_stops_idle_and_busy_workers_without_new_threads(
    make_app: MakeApp, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Semaphore(0)

    class CountingSlowWorker(SlowWorker):
        def on_job_start(self, job: jw.RunningJob[Any, Any]) -> None:
            started.release()

    app = make_app(
        JOBWORKER_QUEUE=sqlite_url,
        JOBWORKER_WORKERS=[CountingSlowWorker],
        JOBWORKER_CONCURRENCY=3,
    )
    jobs.start_workers(app)
    ids = [jobs.enqueue("slow", {"n": n}, app=app).metadata.id for n in range(2)]
    assert started.acquire(timeout=10) and started.acquire(timeout=10)  # two busy, one idle

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    # As Python 3.12 does once the interpreter shuts down.
    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert get_state(app).stop_at_exit()
    monkeypatch.undo()

    queue = jobs.get_queue(app)
    for job_id in ids:
        done = queue.get_job(job_id)
        assert done is not None and jw.is_complete_job(done)
        assert done.result["stopped_gracefully"] is True
    assert jobs.get_workers(app) == []
