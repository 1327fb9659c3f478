"""Tests for jobworker.metrics.tracing: spans of attempts, kept by OpenTelemetry's SDK in memory.

The trace context travels as a real job does: stored with a function task's
job on enqueue, read back by a worker thread that claims it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import jobworker as jw
from jobworker.metrics import tracing
from jobworker.testing import run_pending

TIMEOUT = 5.0


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans ended while tracing is instrumented, on a provider of the test's own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        tracing.uninstrument()
        provider.shutdown()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> trace.Tracer:
    observer = tracing.instrument()
    assert observer._provider is not None
    return observer._provider.get_tracer("test")


@pytest.fixture
def registry() -> jw.TaskRegistry[jw.Task[Any, Any]]:
    return jw.TaskRegistry()


@pytest.fixture
def mq() -> Iterator[jw.MemoryQueue]:
    queue = jw.MemoryQueue()
    yield queue
    queue.close()


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def test_a_trace_started_around_an_enqueue_continues_in_the_worker_thread(
    exporter: InMemorySpanExporter,
    tracer: trace.Tracer,
    mq: jw.MemoryQueue,
    registry: jw.TaskRegistry[jw.Task[Any, Any]],
) -> None:
    inner: list[trace.SpanContext] = []

    @jw.task(name="add", registry=registry)
    def add(a: int, b: int) -> int:
        # The attempt's span is current while the task runs.
        inner.append(trace.get_current_span().get_span_context())
        return a + b

    with tracer.start_as_current_span("request") as request:
        handle = add.enqueue_on(mq, 2, 3)
    stored = mq.get_job(handle.id)
    assert stored is not None and set(stored.params) == {"args", "kwargs", "headers"}
    assert "traceparent" in stored.params["headers"]

    worker = jw.TaskWorker(mq, registry=registry, poll_interval=0.05)
    thread = worker.start_in_thread()
    try:
        assert handle.result(timeout=TIMEOUT) == 5
    finally:
        assert worker.stop(TIMEOUT)
        thread.join(TIMEOUT)

    [span] = spans_named(exporter, f"process {stored.metadata.type}")
    parent = request.get_span_context()
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == parent.trace_id
    assert span.parent.span_id == parent.span_id
    assert inner == [span.context]
    assert span.kind is trace.SpanKind.CONSUMER
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "messaging.system": "jobworker",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": stored.metadata.type,
        "messaging.message.id": handle.id,
        "messaging.consumer.group.name": "TaskWorker",
        "jobworker.attempt": 1,
        "jobworker.outcome": "complete",
    }
    assert span.status.status_code is trace.StatusCode.UNSET


def test_each_attempt_is_a_span_and_a_failure_records_its_exception(
    exporter: InMemorySpanExporter,
    tracer: trace.Tracer,
    mq: jw.MemoryQueue,
    registry: jw.TaskRegistry[jw.Task[Any, Any]],
) -> None:
    @jw.task(name="boom", registry=registry, max_retries=1, retry_policy=jw.RetryPolicy.immediate())
    def boom() -> None:
        raise KeyError("nope")

    with tracer.start_as_current_span("request") as request:
        boom.enqueue_on(mq)
    run_pending(jw.TaskWorker(mq, registry=registry), fail_fast=False)
    spans = spans_named(exporter, f"process {boom.job_type}")
    assert [s.attributes["jobworker.attempt"] for s in spans if s.attributes] == [1, 2]
    assert [s.attributes["jobworker.outcome"] for s in spans if s.attributes] == [
        "retry",
        "failed",
    ]
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.status.status_code is trace.StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == "KeyError"
        [event] = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "KeyError"


def test_no_current_span_stores_no_headers_and_starts_a_new_trace(
    exporter: InMemorySpanExporter, mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="one", registry=registry)
    def one() -> int:
        return 1

    handle = one.enqueue_on(mq)
    stored = mq.get_job(handle.id)
    assert stored is not None and set(stored.params) == {"args", "kwargs"}
    run_pending(jw.TaskWorker(mq, registry=registry))
    [span] = spans_named(exporter, f"process {one.job_type}")
    assert span.parent is None


class Plain(jw.JobWorker):
    def get_worker_name(self) -> str:
        return "plain"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        return job.params


def test_a_create_job_job_keeps_its_params_and_its_own_trace(
    exporter: InMemorySpanExporter, tracer: trace.Tracer, mq: jw.MemoryQueue
) -> None:
    # Params are the application's, even when they look like a task's envelope.
    params = {"headers": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}}
    with tracer.start_as_current_span("request"):
        job = mq.create_job(jw.new_job("plain", params))
    assert mq.get_job(job.metadata.id).params == params  # type: ignore[union-attr]
    [outcome] = run_pending(Plain(mq))
    assert outcome.job.result == params  # type: ignore[union-attr]
    [span] = spans_named(exporter, "process plain")
    assert span.parent is None
    assert span.attributes is not None and span.attributes["jobworker.outcome"] == "complete"


def test_uninstrumented_workers_and_enqueues_make_nothing(
    exporter: InMemorySpanExporter,
    tracer: trace.Tracer,
    mq: jw.MemoryQueue,
    registry: jw.TaskRegistry[jw.Task[Any, Any]],
) -> None:
    @jw.task(name="one", registry=registry)
    def one() -> int:
        return 1

    tracing.uninstrument()
    worker = jw.TaskWorker(mq, registry=registry)
    assert worker.observers == []
    with tracer.start_as_current_span("request"):
        handle = one.enqueue_on(mq)
    assert set(mq.get_job(handle.id).params) == {"args", "kwargs"}  # type: ignore[union-attr]
    run_pending(worker)
    assert spans_named(exporter, f"process {one.job_type}") == []


def test_jobworker_imports_no_telemetry_library_unless_asked() -> None:
    code = textwrap.dedent(
        """
        import sys
        import jobworker as jw
        import jobworker.metrics
        from jobworker.testing import run_pending

        queue = jw.MemoryQueue()

        @jw.task(name="one")
        def one() -> int:
            return 1

        handle = one.enqueue_on(queue)
        run_pending(jw.TaskWorker(queue))
        assert handle.result(timeout=0) == 1
        assert set(queue.get_job(handle.id).params) == {"args", "kwargs"}
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ("opentelemetry", "prometheus_client")
        )
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_without_an_sdk_no_span_is_recorded_but_the_trace_still_flows(
    tracer: trace.Tracer, mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    seen: list[trace.SpanContext] = []

    @jw.task(name="nested", registry=registry)
    def nested() -> None:
        seen.append(trace.get_current_span().get_span_context())

    with tracer.start_as_current_span("request") as request:
        nested.enqueue_on(mq)
    worker = jw.TaskWorker(mq, registry=registry)
    worker.observers = [tracing.TracingObserver(trace.NoOpTracerProvider())]
    run_pending(worker)
    [context] = seen
    # The API's no-op span carries the enqueue's context, so a task enqueued
    # here would carry it on; nothing is recorded.
    assert context.trace_id == request.get_span_context().trace_id
    assert not trace.get_current_span().get_span_context().is_valid


class Interrupted(Plain):
    def execute_job(self, job: jw.AnyJob) -> Any:
        raise KeyboardInterrupt


def test_an_interrupted_attempt_ends_its_span_and_restores_the_context(
    exporter: InMemorySpanExporter, mq: jw.MemoryQueue
) -> None:
    job = mq.create_job(jw.new_job("plain", {}))
    with pytest.raises(KeyboardInterrupt):
        Interrupted(mq).run_once()
    assert mq.get_job(job.metadata.id).status == "pending"  # type: ignore[union-attr]
    [span] = spans_named(exporter, "process plain")
    assert span.attributes is not None and span.attributes["jobworker.outcome"] == "interrupted"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert not trace.get_current_span().get_span_context().is_valid
