"""Checked by mypy --strict, never run: the public API reads as typed."""

from __future__ import annotations

from typing import Any

import attrs

import jobworker as jw


@attrs.frozen
class GenerationParams:
    title: str
    prompt: str


class GenerationWorker(jw.JobWorker):
    def get_worker_name(self) -> str:
        return "GenerationWorker"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "generation"

    def execute_job(self, job: jw.AnyJob) -> dict[str, str]:
        assert jw.is_running_job(job)
        running: jw.RunningJob[GenerationParams, int] = job
        running = self.report_progress(running, 50)
        progress: int | None = running.progress
        assert progress is None or progress >= 0
        return {"resource_name": running.params.title}


def narrowing(job: jw.AnyJob) -> str:
    if jw.is_complete_job(job):
        result: Any = job.result
        return str(result)
    if jw.is_failed_job(job):
        return job.error
    if job.status == "running":
        return job.claim.worker
    if jw.is_cancelled_job(job):
        return job.completed_at.isoformat()
    return job.metadata.type


def queue_calls() -> None:
    queue: jw.JobQueue = jw.MemoryQueue(lease_duration=10.0)
    created: jw.PendingJob[dict[str, int]] = queue.create_job(jw.new_job("count", {"n": 1}))
    found: jw.AnyJob | None = queue.get_job(created.metadata.id)
    assert found is not None
    claimed: jw.RunningJob[Any, Any] | None = queue.poll_next_pending_job(timeout=None)
    stats: dict[str, int] = queue.get_stats()
    cancelled: bool = queue.cancel_job(jw.job_id("x"))
    removed: int = queue.cleanup_old_jobs(retention_hours=1.5)
    jobs: list[jw.AnyJob] = queue.list_jobs(status="pending", limit=10)
    worker = GenerationWorker(queue, poll_interval=0.5, retry_policy=jw.RetryPolicy(jitter=0.1))
    thread = worker.start_in_thread()
    stopped: bool = worker.stop(timeout=1.0)
    metrics: jw.WorkerMetrics = worker.get_metrics()
    rate: float = metrics.error_rate
    del claimed, stats, cancelled, removed, jobs, thread, stopped, rate


def time_limit_calls(queue: jw.JobQueue) -> None:
    job = jw.new_job("report", {"n": 1}, time_limit=30.0)
    limit: float | None = job.metadata.time_limit
    jw.JobTypeRegistry().register("report", time_limit=300.0, soft_time_limit=240.0)
    worker = GenerationWorker(queue, time_limit=60.0, soft_time_limit=50.0, time_limit_grace=2.0)
    resolved: float | None = worker.get_time_limit(job)
    soft: float | None = worker.get_soft_time_limit(job)
    abandoned: int = worker.get_metrics().abandoned
    stopped: bool = worker.wait_stopped(0.0)
    error: TimeoutError = jw.JobTimeoutError("late", limit=1.0)
    del limit, resolved, soft, abandoned, stopped, error
