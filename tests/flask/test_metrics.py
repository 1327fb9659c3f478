"""A Flask app registers jobworker's Prometheus collector and serves it at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import TestResponse

from jobworker.metrics.prometheus import PrometheusMetrics
from jobworker.observe import remove_global_observer

from .conftest import GREETER, MakeApp
from .sample_app import jobs


def scrape(response: TestResponse) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return the samples of a ``/metrics`` response by name and sorted labels."""
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_the_app_serves_the_counts_of_its_worker_threads_and_its_store(
    make_app: MakeApp, queue_url: str
) -> None:
    app = make_app(
        JOBWORKER_QUEUE=queue_url, JOBWORKER_WORKERS=[GREETER], JOBWORKER_START_WORKERS=True
    )
    # As the docs show it: count the workers the extension starts, report
    # their state, and mount the registry beside the app.
    metrics = PrometheusMetrics(jobs.get_queue(app), workers=lambda: jobs.get_workers(app))
    metrics.watch_new_workers()
    try:
        registry = CollectorRegistry()
        registry.register(metrics)
        app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, {"/metrics": make_wsgi_app(registry)}
        )
        client = app.test_client()
        ids = [client.post("/greetings", json={"name": n}).get_json()["id"] for n in "ABC"]
        for job_id in ids:
            assert jobs.get_queue(app).wait_for_job(job_id, timeout=10).status == "complete"
        while_running = scrape(client.get("/metrics"))
        # An attempt is counted just after its outcome is stored, so the last
        # one may not be yet: the counters are read once the thread has stopped.
        assert jobs.stop_workers(app, timeout=10)
        samples = scrape(client.get("/metrics"))
    finally:
        remove_global_observer(metrics)
    [job_type] = {jobs.get_queue(app).get_job(i).metadata.type for i in ids}  # type: ignore[union-attr]
    assert samples["jobworker_attempts_total", (("outcome", "complete"), ("type", job_type))] == 3
    assert samples["jobworker_jobs", (("status", "complete"), ("type", job_type))] == 3
    # One thread, busy or (once it has stored the last outcome and let go of it) idle.
    threads = [
        while_running["jobworker_workers", (("state", state), ("worker", "greeter"))]
        for state in ("busy", "idle")
    ]
    assert sorted(threads) == [0, 1]
