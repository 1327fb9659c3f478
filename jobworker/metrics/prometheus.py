"""Prometheus metrics of workers and of the store (the ``prometheus`` extra).

One object, :class:`PrometheusMetrics`, is both a worker observer (it counts
the attempts of the workers it :meth:`~PrometheusMetrics.watch`\\ es) and a
``prometheus_client`` collector (it reports them, with the jobs in the store,
when scraped). ``jobworker worker --metrics-port`` serves one over HTTP;
a Django or Flask app registers one with its own registry.

Metrics (every name starts with ``jobworker_``):

- ``attempts_total{type, outcome}``: attempts that ended, by job type and
  outcome (``complete``, ``retry``, ``failed``, ``cancelled``, ``lost``);
- ``attempt_duration_seconds{type}``: how long attempts ran (histogram);
- ``queue_wait_seconds{type}``: from when a job could first run (enqueued,
  its ``run_after``, or its previous attempt's end) to when an attempt
  started (histogram);
- ``workers{worker, state}``: worker threads ``busy`` (running a job) and
  ``idle``, and threads ``abandoned`` to a job past its time limit;
- ``jobs{type, status}``: jobs in the store, from one query
  (:meth:`JobQueue.get_type_stats <jobworker.JobQueue.get_type_stats>`)
  at most every ``cache_ttl`` seconds however often it is scraped.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..model import STATUSES, RunningJob
from ..observe import add_global_observer
from ..queues.base import JobQueue

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ..worker import JobOutcome, JobWorker

__all__ = [
    "DURATION_BUCKETS",
    "WAIT_BUCKETS",
    "MetricsServer",
    "PrometheusMetrics",
    "serve_metrics",
]

log = logging.getLogger("jobworker.metrics")

#: Upper bounds, in seconds, of the ``attempt_duration_seconds`` buckets.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
#: Upper bounds, in seconds, of the ``queue_wait_seconds`` buckets.
WAIT_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 14400.0,
)  # fmt: skip

_OUTCOMES: Final = ("complete", "retry", "failed", "cancelled", "lost")


class _Histogram:
    """Counts per bucket and a sum, per job type; guarded by the owner's lock."""

    def __init__(self, bounds: Sequence[float]) -> None:
        bounds = sorted(float(b) for b in bounds)
        if not bounds or any(math.isnan(b) or b <= 0 for b in bounds):
            raise ValueError(f"buckets must be positive numbers, got {bounds!r}")
        self.bounds = bounds
        # type -> [count per bucket..., count above the last bound]
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, job_type: str, value: float) -> None:
        counts = self.counts.get(job_type)
        if counts is None:
            counts = self.counts[job_type] = [0] * (len(self.bounds) + 1)
            self.sums[job_type] = 0.0
        counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sums[job_type] += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=["type"])
        for job_type, counts in sorted(self.counts.items()):
            buckets: list[tuple[str, float]] = []
            total = 0
            for bound, count in zip([*self.bounds, math.inf], counts, strict=True):
                total += count
                buckets.append(("+Inf" if bound == math.inf else repr(bound), total))
            family.add_metric([job_type], buckets, self.sums[job_type])
        return family


def _ready_since(job: RunningJob[Any, Any]) -> Any:
    """Return when *job* could first have started this attempt."""
    meta = job.metadata
    ready = meta.created
    if meta.run_after is not None and meta.run_after > ready:
        ready = meta.run_after
    if job.attempts and job.attempts[-1].ended_at > ready:
        ready = job.attempts[-1].ended_at
    return ready


class PrometheusMetrics(Collector):
    """Count the attempts of watched workers; report them and the store's jobs when scraped.

    :param queue: the store whose jobs ``jobworker_jobs`` counts, or a
        function that returns it when a scrape needs it (Django's
        ``get_queue``, so that nothing opens at start-up); ``None`` leaves
        that metric out.
    :param workers: called at each scrape, returns more workers whose state
        ``jobworker_workers`` reports, beside the watched ones: for workers
        a framework starts (``Jobworker.get_workers`` in Flask).
    :param cache_ttl: seconds a count of the store's jobs is reused, so that
        scrapes cost one query per ``cache_ttl`` however many there are.
    :param duration_buckets: bucket bounds of ``attempt_duration_seconds``.
    :param wait_buckets: bucket bounds of ``queue_wait_seconds``.

    Thread-safe: workers record from their threads while a scrape collects.
    Register it with a ``prometheus_client`` registry to expose it (the
    global ``REGISTRY`` by default in most apps), or serve it with
    :func:`serve_metrics`. Counts are this process's, from when a worker
    was watched: Prometheus adds the processes up.
    """

    def __init__(
        self,
        queue: JobQueue | Callable[[], JobQueue] | None = None,
        *,
        workers: Callable[[], Iterable[JobWorker]] | None = None,
        cache_ttl: float = 5.0,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        wait_buckets: Sequence[float] = WAIT_BUCKETS,
    ) -> None:
        if not cache_ttl >= 0:
            raise ValueError(f"cache_ttl must be >= 0, got {cache_ttl!r}")
        self.queue = queue
        self.cache_ttl = float(cache_ttl)
        self._more_workers = workers
        self._lock = threading.Lock()
        self._attempts: dict[tuple[str, str], int] = {}  # guarded by _lock
        self._durations = _Histogram(duration_buckets)  # guarded by _lock
        self._waits = _Histogram(wait_buckets)  # guarded by _lock
        self._workers: list[JobWorker] = []  # guarded by _lock
        # One query at a time; a scrape that waited reuses the fresh answer.
        self._stats_lock = threading.Lock()
        self._stats: dict[str, dict[str, int]] | None = None  # guarded by _stats_lock
        self._stats_at = float("-inf")  # guarded by _stats_lock

    # -- the observer side ----------------------------------------------------------------

    def watch(self, worker: JobWorker) -> None:
        """Count *worker*'s attempts from now on and report its state. Thread-safe.

        Call it before the worker starts, so it sees every attempt.
        """
        with self._lock:
            if worker not in self._workers:
                self._workers.append(worker)
        if self not in worker.observers:
            worker.observers.append(self)

    def watch_new_workers(self) -> None:
        """Count the attempts of every worker constructed from now on in this process.

        Their state is not reported (``jobworker_workers``): this object
        does not hold them; :meth:`watch` the ones to report.
        """
        add_global_observer(self)

    def job_started(self, worker: JobWorker, job: RunningJob[Any, Any]) -> object:
        """Return how long *job* waited for this attempt (recorded as it ends)."""
        return (job.started_at - _ready_since(job)).total_seconds()

    def job_ended(
        self,
        worker: JobWorker,
        job: RunningJob[Any, Any],
        outcome: JobOutcome | None,
        duration: float,
        started: object,
    ) -> None:
        """Count the attempt: its wait, outcome and time (an interrupted one counts nowhere)."""
        if outcome is None:
            return
        job_type = job.metadata.type
        key = (job_type, outcome.status)
        wait = max(cast("float", started), 0.0)
        with self._lock:
            self._attempts[key] = self._attempts.get(key, 0) + 1
            self._durations.observe(job_type, duration)
            self._waits.observe(job_type, wait)

    # -- the collector side ---------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """Return the metric families without samples (so registering queries nothing)."""
        yield from self._families(jobs=self.queue is not None, sample=False)

    def collect(self) -> Iterable[Metric]:
        """Return every metric with its samples; counts the store's jobs if the cache is stale."""
        yield from self._families(jobs=self.queue is not None, sample=True)

    def _families(self, *, jobs: bool, sample: bool) -> Iterable[Metric]:
        attempts = CounterMetricFamily(
            "jobworker_attempts",
            "Attempts that ended, by job type and outcome.",
            labels=["type", "outcome"],
        )
        workers = GaugeMetricFamily(
            "jobworker_workers",
            "Worker threads busy (running a job), idle, or abandoned past a time limit.",
            labels=["worker", "state"],
        )
        if not sample:
            yield attempts
            yield HistogramMetricFamily("jobworker_attempt_duration_seconds", "", labels=["type"])
            yield HistogramMetricFamily("jobworker_queue_wait_seconds", "", labels=["type"])
            yield workers
            if jobs:
                yield GaugeMetricFamily("jobworker_jobs", "", labels=["type", "status"])
            return
        with self._lock:
            for (job_type, outcome), count in sorted(self._attempts.items()):
                attempts.add_metric([job_type, outcome], count)
            durations = self._durations.family(
                "jobworker_attempt_duration_seconds", "How long attempts ran, by job type."
            )
            waits = self._waits.family(
                "jobworker_queue_wait_seconds",
                "From when a job could run to when its attempt started, by job type.",
            )
            watched = list(self._workers)
        if self._more_workers is not None:
            watched += [w for w in self._more_workers() if w not in watched]
        yield attempts
        yield durations
        yield waits
        states: dict[tuple[str, str], int] = {}
        for worker in watched:
            name = worker.get_worker_name()
            snapshot = worker.get_metrics()
            state = "idle" if snapshot.current_job is None else "busy"
            states[name, state] = states.get((name, state), 0) + 1
            states.setdefault((name, "busy"), 0)
            states.setdefault((name, "idle"), 0)
            states[name, "abandoned"] = states.get((name, "abandoned"), 0) + snapshot.abandoned
        for (name, state), count in sorted(states.items()):
            workers.add_metric([name, state], count)
        yield workers
        if jobs:
            stats = self._type_stats()
            if stats is not None:
                family = GaugeMetricFamily(
                    "jobworker_jobs", "Jobs in the store, by type and status.",
                    labels=["type", "status"],
                )  # fmt: skip
                for job_type, counts in sorted(stats.items()):
                    for status in STATUSES:
                        family.add_metric([job_type, status], counts.get(status, 0))
                yield family

    def _type_stats(self) -> dict[str, dict[str, int]] | None:
        """Return the store's counts, queried at most once per ``cache_ttl``.

        ``None`` if the query failed (it is logged).
        """
        source = self.queue
        assert source is not None  # else collect() does not ask
        with self._stats_lock:
            now = time.monotonic()
            if self._stats is not None and now - self._stats_at < self.cache_ttl:
                return self._stats
            try:
                queue = source if isinstance(source, JobQueue) else source()
                stats = queue.get_type_stats()
            except Exception:  # broad: a failing store must not fail the scrape's other metrics
                log.warning("metrics: cannot count the jobs in the store", exc_info=True)
                return None
            self._stats, self._stats_at = stats, time.monotonic()
            return stats


class MetricsServer:
    """An HTTP server of ``/metrics`` in a thread of its own; :meth:`close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on (the port chosen when 0 was asked for)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop serving and wait up to *timeout* seconds for the thread to end."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)


def serve_metrics(
    metrics: PrometheusMetrics, *, port: int, host: str = "127.0.0.1"
) -> MetricsServer:
    """Serve *metrics*, with the process's own (CPU, memory, files), on ``http://host:port/``.

    Listens on the loopback interface unless *host* says otherwise; port 0
    picks a free one (see :attr:`MetricsServer.address`).

    :raises OSError: the address cannot be bound.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)
    ProcessCollector(registry=registry)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
