"""Tests for jobworker.default: the process-wide default queue."""

from __future__ import annotations

import pathlib
import stat
import threading

import pytest

import jobworker as jw
import jobworker.default
from jobworker.testing import run_pending

# Every test starts with no default queue (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_default_queue")


def test_get_job_queue_before_initialize_raises() -> None:
    with pytest.raises(jw.QueueNotInitializedError) as info:
        jw.get_job_queue()

    assert isinstance(info.value, jw.JobworkerError)
    assert isinstance(info.value, RuntimeError)
    assert "initialize_job_queue" in str(info.value)


def test_initialize_returns_a_memory_queue_that_get_returns() -> None:
    queue = jw.initialize_job_queue()

    assert isinstance(queue, jw.MemoryQueue)
    assert jw.get_job_queue() is queue
    assert jobworker.default.get_job_queue() is queue
    assert queue.get_stats()["pending"] == 0  # open and usable


def test_initialize_with_a_given_queue() -> None:
    mine = jw.MemoryQueue()

    assert jw.initialize_job_queue(queue=mine) is mine
    assert jw.get_job_queue() is mine


@pytest.mark.parametrize("as_path", [False, True], ids=["str", "Path"])
def test_data_dir_makes_a_durable_queue(tmp_path: pathlib.Path, as_path: bool) -> None:
    data_dir = tmp_path / "test-data"
    queue = jw.initialize_job_queue(data_dir=data_dir if as_path else str(data_dir))

    assert isinstance(queue, jw.SQLiteQueue)
    assert jw.get_job_queue() is queue
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    queue.create_job(jw.new_job("t", {"kept": True}, id="durable"))
    queue.close()
    # A new queue on the same directory sees the job: it was stored on disk.
    again = jw.initialize_job_queue(data_dir=data_dir)
    kept = again.get_job("durable")
    assert kept is not None and kept.params == {"kept": True}
    again.close()


def test_queue_and_data_dir_together_are_refused(tmp_path: pathlib.Path) -> None:
    first = jw.initialize_job_queue()

    with pytest.raises(ValueError, match="not both"):
        jw.initialize_job_queue(queue=jw.MemoryQueue(), data_dir=tmp_path)

    assert jw.get_job_queue() is first
    assert first.get_stats()["pending"] == 0


def test_reinitializing_closes_the_old_queue() -> None:
    old = jw.initialize_job_queue()
    new = jw.initialize_job_queue()

    assert new is not old
    assert jw.get_job_queue() is new
    with pytest.raises(jw.QueueClosedError):
        old.get_stats()
    assert new.get_stats()["pending"] == 0


def test_reinitializing_with_the_same_queue_keeps_it_open() -> None:
    queue = jw.initialize_job_queue()

    assert jw.initialize_job_queue(queue=queue) is queue
    assert queue.get_stats()["pending"] == 0


def test_the_default_is_shared_across_threads() -> None:
    queue = jw.initialize_job_queue()
    seen: list[jw.JobQueue] = []
    thread = threading.Thread(target=lambda: seen.append(jw.get_job_queue()))

    thread.start()
    thread.join(5.0)

    assert not thread.is_alive()
    assert seen == [queue]
    assert seen[0] is queue


def test_the_guides_unit_test_flow() -> None:
    class GenerationWorker(jw.JobWorker):
        def get_worker_name(self) -> str:
            return "GenerationWorker"

        def can_process_job(self, job: jw.AnyJob) -> bool:
            return job.metadata.type == "generation"

        def execute_job(self, job: jw.AnyJob) -> dict[str, str]:
            assert jw.is_running_job(job)
            return {"resource_name": job.params["title"]}

    jw.initialize_job_queue()
    queue = jw.get_job_queue()
    queue.create_job(jw.new_job("generation", {"title": "Test Article"}, id="test-1"))

    outcomes = run_pending(GenerationWorker(queue))

    assert [o.status for o in outcomes] == ["complete"]
    job = queue.get_job(jw.job_id("test-1"))
    assert job is not None and job.status == "complete"
    assert job.result == {"resource_name": "Test Article"}
