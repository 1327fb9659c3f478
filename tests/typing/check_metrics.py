"""Checked by mypy --strict, never run: the telemetry observers meet the observer protocol."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY
from typing_extensions import assert_type

import jobworker as jw
from jobworker.metrics import tracing
from jobworker.metrics.prometheus import MetricsServer, PrometheusMetrics, serve_metrics
from jobworker.observe import WorkerObserver, add_global_observer, add_header_source


def check(queue: jw.JobQueue, worker: jw.JobWorker) -> None:
    def workers() -> Iterable[jw.JobWorker]:
        return [worker]

    metrics = PrometheusMetrics(queue, workers=workers, cache_ttl=10.0)
    REGISTRY.register(metrics)
    metrics.watch(worker)
    observers: list[WorkerObserver] = [metrics, tracing.TracingObserver(TracerProvider())]
    worker.observers.extend(observers)
    add_global_observer(metrics)
    add_header_source(lambda: {"traceparent": "00-..."})
    assert_type(tracing.instrument([worker]), tracing.TracingObserver)
    server = serve_metrics(metrics, port=0)
    assert_type(server, MetricsServer)
    assert_type(server.address, tuple[str, int])
    assert_type(queue.get_type_stats(), dict[str, dict[str, int]])
