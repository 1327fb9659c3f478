"""Tests for jobworker.metrics.prometheus: what a scrape reports, read back by prometheus_client's
own text parser, after real attempts on the in-memory queue and the fake clock."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import jobworker as jw
from jobworker.metrics.prometheus import PrometheusMetrics
from jobworker.observe import remove_global_observer
from jobworker.testing import FakeClock, run_pending

TIMEOUT = 5.0


class Worker(jw.JobWorker):
    """Runs ``ok`` jobs, fails ``bad`` ones (retried while retries remain), waits on ``block``."""

    def __init__(self, queue: jw.JobQueue, **options: Any) -> None:
        super().__init__(queue, **options)
        self.entered = threading.Event()
        self.release = threading.Event()

    def get_worker_name(self) -> str:
        return "metered"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        if job.metadata.type == "bad":
            raise ValueError("bad job")
        if job.metadata.type == "block":
            self.entered.set()
            assert self.release.wait(TIMEOUT)
        return 1


def scrape(metrics: PrometheusMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Serialize *metrics* as a scrape would and parse it back: ``{(sample, labels): value}``."""
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def enqueue(queue: jw.JobQueue, job_type: str, count: int = 1, **meta: Any) -> None:
    meta.setdefault("created", queue.clock.now())
    for _ in range(count):
        queue.create_job(jw.new_job(job_type, {}, **meta))


def test_counters_match_the_attempts_made(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    metrics = PrometheusMetrics(queue)
    worker = Worker(queue)
    metrics.watch(worker)
    enqueue(queue, "ok", 3)
    enqueue(queue, "bad", 1, max_retries=2)  # three attempts: retry, retry, failed
    for _ in range(4):  # the retries wait for their backoff on the fake clock
        run_pending(worker, fail_fast=False)
        clock.advance(3600)
    samples = scrape(metrics)
    assert samples["jobworker_attempts_total", labels(type="ok", outcome="complete")] == 3
    assert samples["jobworker_attempts_total", labels(type="bad", outcome="retry")] == 2
    assert samples["jobworker_attempts_total", labels(type="bad", outcome="failed")] == 1
    assert ("jobworker_attempts_total", labels(type="ok", outcome="failed")) not in samples
    # Every attempt is timed; the buckets are cumulative.
    assert samples["jobworker_attempt_duration_seconds_count", labels(type="ok")] == 3
    assert samples["jobworker_attempt_duration_seconds_count", labels(type="bad")] == 3
    assert samples["jobworker_attempt_duration_seconds_bucket", labels(type="ok", le="+Inf")] == 3
    # The store: one query's counts, every status of every type.
    assert samples["jobworker_jobs", labels(type="ok", status="complete")] == 3
    assert samples["jobworker_jobs", labels(type="bad", status="failed")] == 1
    assert samples["jobworker_jobs", labels(type="bad", status="pending")] == 0
    # The worker's own counters agree.
    assert worker.get_metrics().processed == 3
    assert worker.get_metrics().errors == 3


def test_queue_wait_runs_from_when_the_job_could_run(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    metrics = PrometheusMetrics(queue)
    worker = Worker(queue)
    metrics.watch(worker)
    enqueue(queue, "ok")
    clock.advance(7)  # waited 7 s
    run_pending(worker)
    # Scheduled 100 s ahead and taken 2 s after it was due: waited 2 s, not 102.
    enqueue(queue, "ok", run_after=clock.now() + dt.timedelta(seconds=100))
    clock.advance(102)
    run_pending(worker)
    samples = scrape(metrics)
    assert samples["jobworker_queue_wait_seconds_count", labels(type="ok")] == 2
    assert samples["jobworker_queue_wait_seconds_sum", labels(type="ok")] == pytest.approx(9)
    assert samples["jobworker_queue_wait_seconds_bucket", labels(type="ok", le="2.5")] == 1
    assert samples["jobworker_queue_wait_seconds_bucket", labels(type="ok", le="5.0")] == 1
    assert samples["jobworker_queue_wait_seconds_bucket", labels(type="ok", le="10.0")] == 2


def test_a_retry_waits_from_the_end_of_its_previous_attempt(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    metrics = PrometheusMetrics(queue)
    worker = Worker(queue, retry_policy=jw.RetryPolicy.immediate())
    metrics.watch(worker)
    enqueue(queue, "bad", max_retries=1)
    clock.advance(50)
    first = worker.run_once()  # waited 50 s; fails, back to pending at once
    assert first is not None and first.status == "retry"
    clock.advance(3)
    second = worker.run_once()  # waited 3 s since the first attempt ended
    assert second is not None and second.status == "failed"
    samples = scrape(metrics)
    assert samples["jobworker_queue_wait_seconds_sum", labels(type="bad")] == pytest.approx(53)


def test_a_scrape_costs_one_query_per_cache_ttl(queue: jw.MemoryQueue) -> None:
    calls: list[int] = []
    counting = CountingQueue(calls)
    try:
        cached = PrometheusMetrics(counting, cache_ttl=3600)
        enqueue(counting, "ok")
        assert scrape(cached)["jobworker_jobs", labels(type="ok", status="pending")] == 1
        enqueue(counting, "ok")
        for _ in range(3):  # within the TTL: the first count, no new query
            assert scrape(cached)["jobworker_jobs", labels(type="ok", status="pending")] == 1
        assert len(calls) == 1
        fresh = PrometheusMetrics(counting, cache_ttl=0)
        assert scrape(fresh)["jobworker_jobs", labels(type="ok", status="pending")] == 2
        assert len(calls) == 2
    finally:
        counting.close()


class CountingQueue(jw.MemoryQueue):
    """A MemoryQueue that notes each count by type."""

    def __init__(self, calls: list[int]) -> None:
        super().__init__()
        self.calls = calls

    def get_type_stats(self) -> dict[str, dict[str, int]]:
        self.calls.append(1)
        return super().get_type_stats()


def test_registering_queries_nothing() -> None:
    calls: list[int] = []
    counting = CountingQueue(calls)
    try:
        registry = CollectorRegistry()
        registry.register(PrometheusMetrics(counting))
        assert calls == []
    finally:
        counting.close()


def test_a_failing_store_leaves_the_other_metrics(
    queue: jw.MemoryQueue, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = PrometheusMetrics(queue)
    worker = Worker(queue)
    metrics.watch(worker)
    enqueue(queue, "ok")
    run_pending(worker)
    queue.close()
    samples = scrape(metrics)
    assert samples["jobworker_attempts_total", labels(type="ok", outcome="complete")] == 1
    assert not any(name == "jobworker_jobs" for name, _ in samples)
    assert "cannot count the jobs in the store" in caplog.text


def test_without_a_queue_there_is_no_jobs_metric(queue: jw.MemoryQueue) -> None:
    enqueue(queue, "ok")
    samples = scrape(PrometheusMetrics())
    assert not any(name == "jobworker_jobs" for name, _ in samples)


def test_worker_gauges_follow_a_worker_in_its_thread() -> None:
    queue = jw.MemoryQueue()
    metrics = PrometheusMetrics(queue)
    worker = Worker(queue)
    metrics.watch(worker)
    thread = worker.start_in_thread()
    try:
        samples = scrape(metrics)
        assert samples["jobworker_workers", labels(worker="metered", state="idle")] == 1
        assert samples["jobworker_workers", labels(worker="metered", state="busy")] == 0
        enqueue(queue, "block")
        assert worker.entered.wait(TIMEOUT)
        samples = scrape(metrics)
        assert samples["jobworker_workers", labels(worker="metered", state="busy")] == 1
        assert samples["jobworker_workers", labels(worker="metered", state="idle")] == 0
        # No job of it ran past a time limit.
        assert samples["jobworker_workers", labels(worker="metered", state="abandoned")] == 0
    finally:
        worker.release.set()
        assert worker.stop(TIMEOUT)
        thread.join(TIMEOUT)
        queue.close()


def test_watch_new_workers_counts_workers_made_later(queue: jw.MemoryQueue) -> None:
    metrics = PrometheusMetrics()
    metrics.watch_new_workers()
    try:
        worker = Worker(queue)
    finally:
        remove_global_observer(metrics)
    assert Worker(queue).observers == []
    enqueue(queue, "ok", 2)
    run_pending(worker)
    samples = scrape(metrics)
    assert samples["jobworker_attempts_total", labels(type="ok", outcome="complete")] == 2


@pytest.mark.parametrize(
    "buckets", [(), (0.0, 1.0), (-1.0,), (float("nan"),)], ids=["empty", "zero", "neg", "nan"]
)
def test_bad_buckets_are_refused(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets"):
        PrometheusMetrics(duration_buckets=buckets)


def test_a_negative_cache_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_ttl"):
        PrometheusMetrics(cache_ttl=-1)


def test_an_observer_that_raises_changes_no_outcome(
    queue: jw.MemoryQueue, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def job_started(self, worker: Any, job: Any) -> object:
            raise RuntimeError("observer start")

        def job_ended(self, *args: Any) -> None:
            raise RuntimeError("observer end")

    worker = Worker(queue)
    worker.observers.append(Broken())
    ended: list[Callable[..., None]] = []

    class Ending:
        def job_started(self, worker: Any, job: Any) -> object:
            return "token"

        def job_ended(self, worker: Any, job: Any, outcome: Any, duration: float, t: Any) -> None:
            ended.append(t)
            raise RuntimeError("observer end")

    worker.observers.append(Ending())
    enqueue(queue, "ok")
    run_pending(worker)
    assert [job.status for job in queue.list_jobs()] == ["complete"]
    assert ended == ["token"]
    assert "observer" in caplog.text and "failed as job" in caplog.text


def test_an_interrupted_attempt_counts_nowhere(queue: jw.MemoryQueue) -> None:
    class Interrupted(Worker):
        def execute_job(self, job: jw.AnyJob) -> Any:
            raise KeyboardInterrupt

    metrics = PrometheusMetrics(queue)
    worker = Interrupted(queue)
    metrics.watch(worker)
    enqueue(queue, "ok")
    with pytest.raises(KeyboardInterrupt):
        worker.run_once()
    samples = scrape(metrics)
    assert not any(name.startswith("jobworker_attempt") for name, _ in samples)
    assert samples["jobworker_jobs", labels(type="ok", status="pending")] == 1
