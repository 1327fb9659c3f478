"""Many producer threads, several worker threads, one MemoryQueue.

The interpreter's switch interval is lowered so threads interleave at many
more points than usual. Every job must run exactly once per attempt, and
every job must end in the state its script says.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import pytest

import jobworker as jw

PRODUCERS = 4
JOBS_PER_PRODUCER = 300
WORKERS = 4


class LedgerWorker(jw.JobWorker):
    """Records every attempt; fails the attempts its params ask it to."""

    def __init__(self, queue: jw.JobQueue, ledger: list[tuple[str, str]], **kw: Any) -> None:
        super().__init__(queue, retry_policy=jw.RetryPolicy.immediate(), **kw)
        self.ledger = ledger

    def get_worker_name(self) -> str:
        return "ledger"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        assert jw.is_running_job(job)
        # list.append is atomic: the ledger needs no lock of its own.
        self.ledger.append((job.metadata.id, job.claim.token))
        if job.metadata.retry_count < job.params["fail_attempts"]:
            raise RuntimeError("scripted failure")
        return job.metadata.id


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize("typed", [True, False], ids=["job_types", "predicate"])
def test_every_job_runs_once_per_attempt(fast_switching: None, round_: int, typed: bool) -> None:
    queue = jw.MemoryQueue()
    ledger: list[tuple[str, str]] = []
    workers = [
        LedgerWorker(queue, ledger, job_types={"x", "y"} if typed else None) for _ in range(WORKERS)
    ]
    threads = [worker.start_in_thread() for worker in workers]
    created: list[jw.PendingJob[Any]] = []
    start = threading.Barrier(PRODUCERS)

    def produce(n: int) -> None:
        start.wait()
        for i in range(JOBS_PER_PRODUCER):
            job = jw.new_job(
                "x" if i % 2 else "y",
                {"fail_attempts": i % 3},  # 0, 1 or 2 failed attempts before success
                id=f"p{n}-{i}",
                max_retries=2,
            )
            created.append(queue.create_job(job))

    producers = [threading.Thread(target=produce, args=(n,)) for n in range(PRODUCERS)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(timeout=60)
        assert not thread.is_alive()

    for job in created:
        done = queue.wait_for_job(job.metadata.id, timeout=60)
        assert jw.is_complete_job(done), done
        assert done.result == job.metadata.id
        assert done.metadata.retry_count == job.params["fail_attempts"]

    assert all(worker.stop(timeout=30) for worker in workers)
    assert not any(thread.is_alive() for thread in threads)

    total = PRODUCERS * JOBS_PER_PRODUCER
    attempts = collections.Counter(job_id for job_id, _ in ledger)
    expected = {job.metadata.id: job.params["fail_attempts"] + 1 for job in created}
    assert len(created) == total
    assert attempts == expected, "a job ran more or fewer times than its attempts"
    # One claim token per attempt: no attempt was handed to two workers.
    assert len({token for _, token in ledger}) == len(ledger)
    assert queue.get_stats() == {**dict.fromkeys(jw.STATUSES, 0), "complete": total}
    metrics = [worker.get_metrics() for worker in workers]
    assert sum(m.processed for m in metrics) == total
    assert sum(m.retried for m in metrics) == sum(j.params["fail_attempts"] for j in created)
