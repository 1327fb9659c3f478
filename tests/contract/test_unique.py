"""Unique keys, on every backend: who holds a key, when it is free again, and races."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.testing import FakeClock

from .conftest import EPOCH, MakeQueue

ALL_ENDINGS = {"pending", "running", "complete", "failed", "cancelled"}


def unique_job(
    key: str = "sync:7", states: set[str] | None = None, **options: object
) -> jw.PendingJob[dict[str, int]]:
    scope = jw.Unique(key=key, states=states or {"pending", "running"})
    return jw.new_job("sync", {"account": 7}, unique=scope, created=EPOCH, **options)  # type: ignore[arg-type]


def finish(queue: jw.JobQueue, outcome: str) -> jw.AnyJob:
    running = queue.poll_next_pending_job(timeout=0)
    assert running is not None
    now = running.started_at
    if outcome == "complete":
        return queue.update_job(m.complete(running, "ok", now=now), "running", claim=running.claim)
    if outcome == "failed":
        return queue.update_job(m.fail(running, "E: no", now=now), "running", claim=running.claim)
    assert queue.cancel_job(running.metadata.id)
    stored = queue.get_job(running.metadata.id)
    assert stored is not None
    return stored


def test_a_taken_key_refuses_a_second_job_and_stores_nothing(queue: jw.JobQueue) -> None:
    first = queue.create_job(unique_job())
    second = unique_job()
    with pytest.raises(jw.UniqueKeyTakenError) as caught:
        queue.create_job(second)
    assert isinstance(caught.value, jw.DuplicateJobError)
    assert (caught.value.unique_key, caught.value.holder_id) == ("sync:7", first.metadata.id)
    assert caught.value.job_id == second.metadata.id
    assert queue.get_job(second.metadata.id) is None
    assert queue.get_stats()["pending"] == 1


def test_create_or_get_returns_the_holder_or_the_new_job(queue: jw.JobQueue) -> None:
    first, created = queue.create_or_get_job(unique_job())
    assert created and first.status == "pending"
    again, created = queue.create_or_get_job(unique_job())
    assert not created and again.metadata.id == first.metadata.id
    other, created = queue.create_or_get_job(unique_job("sync:8"))
    assert created and other.metadata.id != first.metadata.id


def test_the_key_is_held_while_running_and_free_once_complete(queue: jw.JobQueue) -> None:
    queue.create_job(unique_job())
    running = queue.poll_next_pending_job(timeout=0)
    assert running is not None and running.metadata.unique_key == "sync:7"
    with pytest.raises(jw.UniqueKeyTakenError):
        queue.create_job(unique_job())
    queue.update_job(m.complete(running, 1, now=running.started_at), "running", claim=running.claim)
    assert queue.create_or_get_job(unique_job())[1] is True


@pytest.mark.parametrize("outcome", ["complete", "failed", "cancelled"])
def test_an_ending_in_the_scope_keeps_the_key(queue: jw.JobQueue, outcome: str) -> None:
    queue.create_job(unique_job(states={"pending", "running", outcome}, max_retries=0))
    ended = finish(queue, outcome)
    assert ended.status == outcome and jw.holds_unique_key(ended)
    with pytest.raises(jw.UniqueKeyTakenError):
        queue.create_job(unique_job())
    # An ending outside another job's scope frees nothing of this one's.
    assert queue.create_or_get_job(unique_job("other"))[1]


def test_cleanup_frees_a_key_held_by_a_finished_job(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue()
    queue.create_job(unique_job(states=ALL_ENDINGS))
    finish(queue, "complete")
    clock.advance(3 * 3600)
    assert queue.cleanup_old_jobs(retention_hours=1) == 1
    assert queue.create_or_get_job(unique_job())[1]


def test_a_requeue_that_would_take_a_held_key_is_refused(queue: jw.JobQueue) -> None:
    queue.create_job(unique_job(max_retries=0))
    failed = finish(queue, "failed")
    assert not jw.holds_unique_key(failed)
    holder = queue.create_job(unique_job())
    assert jw.is_failed_job(failed)
    with pytest.raises(jw.UniqueKeyTakenError) as caught:
        queue.update_job(m.requeue(failed), "failed")
    assert caught.value.holder_id == holder.metadata.id
    assert queue.get_job(failed.metadata.id) == failed
    queue.cancel_job(holder.metadata.id)
    assert queue.update_job(m.requeue(failed), "failed").status == "pending"


def test_a_retry_and_a_recovery_keep_the_key(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue(lease_duration=10.0)
    job = queue.create_job(unique_job(max_retries=2))
    assert queue.poll_next_pending_job(timeout=0) is not None
    clock.advance(11)  # the lease runs out: recovered to pending, still holding
    stored = queue.get_job(job.metadata.id)
    assert stored is not None and stored.status == "pending" and jw.holds_unique_key(stored)
    with pytest.raises(jw.UniqueKeyTakenError):
        queue.create_job(unique_job())


def test_a_period_makes_one_key_per_period(queue: jw.JobQueue) -> None:
    every_hour = jw.Unique(fields=("account",), states=ALL_ENDINGS, period=3600)

    def at(minutes: int) -> jw.PendingJob[dict[str, int]]:
        created = EPOCH + dt.timedelta(minutes=minutes)
        return jw.new_job("sync", {"account": 7, "n": minutes}, unique=every_hour, created=created)

    assert queue.create_or_get_job(at(0))[1]
    assert not queue.create_or_get_job(at(59))[1]  # same hour: the first job
    assert queue.create_or_get_job(at(60))[1]  # the next hour's key
    assert queue.get_stats()["pending"] == 2


def test_threads_racing_one_key_make_exactly_one_job(queue: jw.JobQueue) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        for _ in range(25):
            job, created = queue.create_or_get_job(unique_job())
            with lock:
                outcomes.append((job.metadata.id, created))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert len(outcomes) == 200
    assert sum(created for _, created in outcomes) == 1
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert queue.get_stats()["pending"] == 1


@pytest.mark.parametrize(
    "states", [{"complete"}, {"pending"}, {"running", "complete"}, {"pending", "running", "lost"}]
)
def test_a_scope_without_pending_and_running_or_with_unknown_states_is_refused(
    states: set[str],
) -> None:
    with pytest.raises(jw.InvalidJobError):
        jw.Unique(key="k", states=states)


def test_a_key_the_store_could_not_hold_is_refused(queue: jw.JobQueue) -> None:
    for key in ("", "a\x00b", "x" * 1001):
        with pytest.raises(jw.InvalidJobError):
            queue.create_job(unique_job(key))
    assert queue.get_stats()["pending"] == 0
