"""OpenTelemetry traces of attempts (the ``otel`` extra, on ``opentelemetry-api``).

:func:`instrument` turns tracing on in this process; until it is called,
jobworker makes no span and imports nothing of OpenTelemetry. Then:

- each attempt is a span of kind ``CONSUMER`` named ``process <job type>``,
  current while ``execute_job`` runs (spans the job makes are its children),
  with attributes after OpenTelemetry's messaging conventions
  (``messaging.system``, ``messaging.operation.type``,
  ``messaging.destination.name`` for the job type, ``messaging.message.id``
  for the job id, ``messaging.consumer.group.name`` for the worker's name)
  and ``jobworker.attempt`` and ``jobworker.outcome``; an attempt that failed
  records its exception and ends with an error status;
- a function task (:func:`jobworker.task`, or a Django task of the
  jobworker backend) enqueued while a span is current stores that span's
  context (W3C ``traceparent``, ``tracestate``, by the globally configured
  propagator) in its job's params envelope, beside the call's arguments:
  ``{"args": ..., "kwargs": ..., "headers": {...}}``. Its
  attempts' spans are children of that span, in whichever process runs them.

The task's own function never sees the headers, and a job made with
``create_job`` keeps its params exactly as given: its params are the
application's, so its attempts start traces of their own.

With the API installed but no SDK configured, OpenTelemetry's tracer does
nothing and stores no headers: the cost is a few calls per attempt.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final, cast

from opentelemetry import context, propagate, trace

from .. import __version__
from ..errors import JobCancelledError
from ..observe import (
    add_global_observer,
    add_header_source,
    params_headers,
    remove_global_observer,
    remove_header_source,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from contextvars import Token

    from opentelemetry.context import Context

    from ..model import RunningJob
    from ..worker import JobOutcome, JobWorker

__all__ = ["TracingObserver", "instrument", "uninstrument"]

#: The value of ``messaging.system`` on every span.
MESSAGING_SYSTEM: Final = "jobworker"

_lock = threading.Lock()
_installed: TracingObserver | None = None  # guarded by _lock


def _inject() -> dict[str, str] | None:
    """Return the current trace context as headers, or ``None`` outside any recorded span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


class TracingObserver:
    """Make a span of each attempt of the workers that hold it (see the module's doc).

    :param tracer_provider: where spans go; the global provider by default,
        looked up at each attempt, so one configured later is used.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        # Without a provider, the global one's proxy: it follows a provider set later.
        self._tracer = trace.get_tracer("jobworker", __version__, tracer_provider=tracer_provider)

    def job_started(self, worker: JobWorker, job: RunningJob[Any, Any]) -> object:
        """Start the attempt's span and make it current in this thread."""
        headers = params_headers(worker, job)
        parent = propagate.extract(headers) if headers else None
        meta = job.metadata
        span = self._tracer.start_span(
            f"process {meta.type}", context=parent, kind=trace.SpanKind.CONSUMER
        )
        if span.is_recording():
            span.set_attributes(
                {
                    "messaging.system": MESSAGING_SYSTEM,
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.destination.name": meta.type,
                    "messaging.message.id": meta.id,
                    "messaging.consumer.group.name": worker.get_worker_name(),
                    "jobworker.attempt": meta.retry_count + 1,
                }
            )
        elif not span.get_span_context().is_valid:
            return None  # no SDK and no trace to continue: nothing to make current
        return span, context.attach(trace.set_span_in_context(span))

    def job_ended(
        self,
        worker: JobWorker,
        job: RunningJob[Any, Any],
        outcome: JobOutcome | None,
        duration: float,
        started: object,
    ) -> None:
        """Record the outcome on the attempt's span, end it and restore the context."""
        if started is None:
            return
        # What job_started returned.
        span, token = cast("tuple[trace.Span, Token[Context]]", started)
        try:
            if span.is_recording():
                _record_outcome(span, outcome)
            span.end()
        finally:
            context.detach(token)


def _record_outcome(span: trace.Span, outcome: JobOutcome | None) -> None:
    status = "interrupted" if outcome is None else outcome.status
    span.set_attribute("jobworker.outcome", status)
    error = None if outcome is None else outcome.error
    if error is not None and not isinstance(error, JobCancelledError):
        span.set_attribute("error.type", type(error).__qualname__)
        span.record_exception(error)
        span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: attempt {status}")
    elif status in ("lost", "interrupted"):
        span.set_attribute("error.type", status)
        span.set_status(trace.StatusCode.ERROR, f"attempt {status}")


def instrument(
    workers: Iterable[JobWorker] = (), *, tracer_provider: trace.TracerProvider | None = None
) -> TracingObserver:
    """Turn tracing on in this process and return its observer.

    Workers constructed from now on trace their attempts, and so do
    *workers* (constructed before); function tasks enqueued from now on
    carry the current trace context. Calling it again adds *workers* and
    returns the same observer. Thread-safe.
    """
    global _installed
    with _lock:
        if _installed is None:
            _installed = TracingObserver(tracer_provider)
            add_global_observer(_installed)
            add_header_source(_inject)
        observer = _installed
    for worker in workers:
        if observer not in worker.observers:
            worker.observers.append(observer)
    return observer


def uninstrument() -> None:
    """Turn tracing off for workers constructed and tasks enqueued from now on.

    Workers that hold the observer keep it; remove it from their
    :attr:`~jobworker.JobWorker.observers` to stop them.
    """
    global _installed
    with _lock:
        if _installed is not None:
            remove_global_observer(_installed)
            remove_header_source(_inject)
            _installed = None
