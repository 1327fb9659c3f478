"""Django: the Tasks backend carries a trace from ``enqueue`` into the worker's span, and the
project registers the Prometheus collector on its queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobworker import RetryPolicy
from jobworker.contrib.django import get_queue
from jobworker.contrib.django.tasks import TaskWorker
from jobworker.metrics import tracing
from jobworker.metrics.prometheus import PrometheusMetrics
from jobworker.testing import run_pending
from tests.django.shop import tasks


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, trace.Tracer]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(tracer_provider=provider)
    try:
        yield exporter, provider.get_tracer("test")
    finally:
        tracing.uninstrument()
        provider.shutdown()


def test_a_task_enqueued_in_a_span_runs_in_its_child_span(
    db: str, exporter: tuple[InMemorySpanExporter, trace.Tracer]
) -> None:
    spans, tracer = exporter
    with tracer.start_as_current_span("view") as view:
        result = tasks.add.enqueue(2, 3)
    stored = get_queue().get_job(result.id)
    assert stored is not None and "traceparent" in stored.params["headers"]
    assert [o.status for o in run_pending(TaskWorker(retry_policy=RetryPolicy.immediate()))] == [
        "complete"
    ]
    result.refresh()
    assert result.return_value == 5 and result.args == [2, 3]
    [span] = [s for s in spans.get_finished_spans() if s.name.startswith("process ")]
    assert span.parent is not None and span.context is not None
    assert span.parent.span_id == view.get_span_context().span_id
    assert span.context.trace_id == view.get_span_context().trace_id
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == result.id


def test_the_collector_counts_the_tasks_run_on_the_projects_queue(db: str) -> None:
    metrics = PrometheusMetrics(get_queue)  # as the docs show: looked up when scraped
    worker = TaskWorker(retry_policy=RetryPolicy.immediate())
    metrics.watch(worker)
    registry = CollectorRegistry()
    registry.register(metrics)
    for n in range(3):
        tasks.add.enqueue(n, 1)
    run_pending(worker)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    job_type = get_queue().list_jobs(limit=1)[0].metadata.type
    complete = (("outcome", "complete"), ("type", job_type))
    assert samples["jobworker_attempts_total", complete] == 3
    assert samples["jobworker_jobs", (("status", "complete"), ("type", job_type))] == 3
