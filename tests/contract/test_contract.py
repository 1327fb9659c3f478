"""The JobQueue contract (DESIGN.md section 3), run against every backend.

Only the public API is used: ``jobworker`` and the pure transition functions
of ``jobworker.model`` to build what a worker would submit. Time comes from a
FakeClock; tests with threads wait on Events and joins with a timeout.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobworker as jw
from jobworker import model as m
from jobworker.testing import FakeClock, run_pending
from tests.unit.test_model import UPDATE_ALLOWED

from .conftest import BACKENDS, EPOCH, MakeQueue, ReportingClock

NAIVE = dt.datetime(2026, 1, 1)
JOIN = 10.0  # seconds a test waits for one of its own threads before failing


# -- helpers ---------------------------------------------------------------------------------


def make_job(
    job_id: str = "job-1",
    job_type: str = "generation",
    *,
    created: dt.datetime = EPOCH,
    params: Any = None,
    **meta: Any,
) -> m.PendingJob[Any]:
    meta.setdefault("user_id", "user@example.com")
    return m.PendingJob(
        metadata=m.JobMetadata(id=m.job_id(job_id), type=job_type, created=created, **meta),
        params={"title": "Test Article"} if params is None else params,
    )


class Background:
    """Run *call* in a daemon thread and keep its return value or exception."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # handed to the test, which asserts on it
            self.error = exc

    def join(self) -> None:
        self.thread.join(JOIN)
        assert not self.thread.is_alive(), "the background call did not return"


def poll_now(queue: jw.JobQueue, **options: Any) -> m.RunningJob[Any, Any] | None:
    """Poll with ``timeout=0``; a predicate poll runs in a thread, so one that spins fails."""
    if options.get("predicate") is None:
        return queue.poll_next_pending_job(timeout=0, **options)
    call = Background(lambda: queue.poll_next_pending_job(timeout=0, **options))
    call.join()
    if call.error is not None:
        raise call.error
    return call.result  # type: ignore[no-any-return]


def claim(queue: jw.JobQueue, **options: Any) -> m.RunningJob[Any, Any]:
    job = poll_now(queue, **options)
    assert job is not None
    return job


def drain(queue: jw.JobQueue, **options: Any) -> list[str]:
    ids = []
    while (job := poll_now(queue, **options)) is not None:
        ids.append(job.metadata.id)
    return ids


def stored(queue: jw.JobQueue, job_id: str = "job-1") -> m.AnyJob:
    job = queue.get_job(job_id)
    assert job is not None
    return job


def snapshot(queue: jw.JobQueue) -> tuple[dict[str, int], list[m.AnyJob]]:
    return queue.get_stats(), queue.list_jobs(limit=10_000)


def ids_of(jobs: list[m.AnyJob]) -> list[str]:
    return [job.metadata.id for job in jobs]


def finish(queue: jw.JobQueue, running: m.RunningJob[Any, Any], result: Any = 1) -> m.AnyJob:
    now = queue.clock.now()
    return queue.update_job(m.complete(running, result, now=now), "running", claim=running.claim)


def to_status(queue: jw.JobQueue, status: str) -> m.RunningJob[Any, Any]:
    """Store job-1 in *status*; return the running job it is (or would be) claimed as."""
    queue.create_job(make_job())
    now = queue.clock.now()
    if status == "pending":
        pending = stored(queue)
        assert isinstance(pending, m.PendingJob)
        return m.start(pending, claim=m.new_claim("nobody"), now=now)
    running = claim(queue)
    if status == "complete":
        finish(queue, running, {"r": 1})
    elif status == "failed":
        queue.update_job(m.fail(running, "E: x", now=now), "running", claim=running.claim)
    elif status == "cancelled":
        assert queue.cancel_job("job-1")
    assert stored(queue).status == status
    return running


# -- basics ----------------------------------------------------------------------------------


def test_a_new_queue_has_all_five_statuses_at_zero(queue: jw.JobQueue) -> None:
    stats = queue.get_stats()
    assert stats == dict.fromkeys(m.STATUSES, 0)
    assert list(stats) == list(m.STATUSES)
    stats["pending"] = 99  # the caller's copy
    assert queue.get_stats()["pending"] == 0


def test_get_job_of_an_unknown_id_is_none(queue: jw.JobQueue) -> None:
    assert queue.get_job("nope") is None
    queue.create_job(make_job("job-1"))
    assert queue.get_job("job-2") is None
    assert queue.get_job("job-1") is not None


def test_create_job_stores_and_returns_the_job(queue: jw.JobQueue) -> None:
    job = make_job(priority=3, max_retries=5)
    returned = queue.create_job(job)
    assert returned == job
    assert stored(queue) == job
    assert queue.get_stats() == {**dict.fromkeys(m.STATUSES, 0), "pending": 1}


def test_the_guides_first_example(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(
        jw.PendingJob(
            metadata=jw.JobMetadata(
                id=jw.job_id("job-123"),
                type="generation",
                user_id=jw.user_id("user@example.com"),
                created=clock.now(),
                retry_count=0,
                max_retries=3,
            ),
            params={"title": "Test Article", "prompt": "Test prompt"},
        )
    )
    running = claim(queue, types=["generation"], worker="GenerationWorker")
    assert running.claim.worker == "GenerationWorker"
    assert running.started_at == clock.now()
    finish(queue, running, {"resource_name": running.params["title"]})
    job = queue.get_job(jw.job_id("job-123"))
    assert job is not None
    assert job.status == "complete"
    assert jw.is_complete_job(job)
    assert job.result == {"resource_name": "Test Article"}


# -- create_job refuses bad input, typed, and stores nothing ------------------------------------


def is_storable(text: str) -> bool:
    """Return whether *text* is valid UTF-8 without NUL, as every store takes it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def assert_refused(queue: jw.JobQueue, job: Any, error: type[Exception]) -> Exception:
    before = snapshot(queue)
    with pytest.raises(error) as info:
        queue.create_job(job)
    job_id = getattr(getattr(job, "metadata", None), "id", None)
    if isinstance(job_id, str) and is_storable(job_id):
        # (Lookups by text no store can hold have a test of their own.)
        assert queue.get_job(job_id) is None
    assert snapshot(queue) == before
    assert queue.poll_next_pending_job(timeout=0) is None
    return info.value


@attrs.frozen
class Article:
    title: str
    when: dt.datetime


@attrs.frozen
class Progress:
    done: int
    of: int


@attrs.frozen
class Summary:
    words: int
    at: dt.datetime


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"tags": {"a", "b"}}, id="set"),
        pytest.param({"score": float("nan")}, id="nan"),
        pytest.param({"score": float("inf")}, id="inf"),
        pytest.param(object(), id="object"),
        pytest.param({"when": EPOCH}, id="datetime"),
        pytest.param(Article(title="t", when=EPOCH), id="unregistered-attrs"),
        pytest.param({(1, 2): "x"}, id="tuple-key"),
        pytest.param(b"raw", id="bytes"),
    ],
)
def test_create_job_refuses_params_that_cannot_be_stored(queue: jw.JobQueue, params: Any) -> None:
    error = assert_refused(queue, make_job(params=params), jw.SerializationError)
    assert isinstance(error, jw.InvalidJobError)


def test_create_job_refuses_a_lone_surrogate_in_params(queue: jw.JobQueue) -> None:
    # Not encodable as UTF-8: no durable store takes it, so no backend may.
    assert_refused(queue, make_job(params={"s": "\ud800"}), jw.SerializationError)


@pytest.mark.parametrize("text", ["x\ud800", "a\x00b"], ids=["surrogate", "nul"])
def test_lookups_by_text_no_job_can_hold_find_nothing(queue: jw.JobQueue, text: str) -> None:
    # No job can carry such an id, type or user, so a lookup by one finds nothing.
    queue.create_job(make_job())
    before = snapshot(queue)
    assert queue.get_job(text) is None
    assert queue.cancel_job(text) is False
    with pytest.raises(jw.JobNotFoundError):
        queue.wait_for_job(text, timeout=0)
    assert queue.list_jobs(type=text) == []
    assert queue.list_jobs(user_id=text) == []
    assert queue.poll_next_pending_job(types=[text], timeout=0) is None
    assert snapshot(queue) == before


def test_create_job_refuses_params_over_max_payload(make_queue: MakeQueue) -> None:
    queue = make_queue(max_payload=100)
    # "é" is two bytes: the JSON text is 52 characters but 102 bytes.
    error = assert_refused(queue, make_job(params="é" * 50), jw.PayloadTooLargeError)
    assert isinstance(error, jw.PayloadTooLargeError)
    assert (error.size, error.limit) == (102, 100)
    returned = queue.create_job(make_job(params="é" * 49))  # exactly 100 bytes
    assert returned.params == "é" * 49
    assert stored(queue).params == "é" * 49


def test_create_job_refuses_an_unknown_type_with_a_strict_registry(
    make_queue: MakeQueue,
) -> None:
    registry = jw.JobTypeRegistry(strict=True)
    registry.register("known")
    queue = make_queue(registry=registry)
    error = assert_refused(queue, make_job(job_type="unknown"), jw.UnknownJobTypeError)
    assert isinstance(error, jw.InvalidJobError)
    queue.create_job(make_job("job-2", job_type="known"))
    assert queue.get_stats()["pending"] == 1


def test_create_job_accepts_unknown_types_with_a_lenient_registry(queue: jw.JobQueue) -> None:
    queue.create_job(make_job(job_type="anything"))
    assert stored(queue).metadata.type == "anything"


BAD_METADATA = [
    pytest.param({"id": ""}, id="empty-id"),
    pytest.param({"retry_count": -1}, id="negative-retry-count"),
    pytest.param({"max_retries": -1}, id="negative-max-retries"),
    pytest.param({"retry_count": 4, "max_retries": 3}, id="retry-count-over-max"),
    pytest.param({"retry_count": True}, id="bool-retry-count"),
    pytest.param({"created": NAIVE}, id="naive-created"),
    pytest.param({"run_after": NAIVE}, id="naive-run-after"),
    pytest.param({"type": 5}, id="int-type"),
    pytest.param({"type": ""}, id="empty-type"),
    pytest.param({"user_id": None}, id="none-user-id"),
    pytest.param({"priority": "high"}, id="str-priority"),
    # What a durable store cannot hold, every backend refuses: text that is
    # not valid UTF-8 or holds NUL, integers beyond a 32-bit signed column.
    pytest.param({"id": "x\ud800"}, id="surrogate-id"),
    pytest.param({"type": "\udfff"}, id="surrogate-type"),
    pytest.param({"user_id": "u\ud800"}, id="surrogate-user-id"),
    pytest.param({"id": "a\x00b"}, id="nul-id"),
    pytest.param({"priority": 2**31}, id="priority-over-int32"),
    pytest.param({"priority": -(2**31) - 1}, id="priority-under-int32"),
    pytest.param({"max_retries": 2**31}, id="max-retries-over-int32"),
]


@pytest.mark.parametrize("overrides", BAD_METADATA)
def test_create_job_refuses_invalid_metadata(queue: jw.JobQueue, overrides: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"id": "job-1", "type": "generation", "user_id": "u", "created": EPOCH}
    fields.update(overrides)
    with pytest.raises(jw.InvalidJobError):
        m.JobMetadata(**fields)
    with attrs.validators.disabled():
        meta = m.JobMetadata(**fields)
    assert_refused(queue, m.PendingJob(metadata=meta, params={}), jw.InvalidJobError)


@pytest.mark.parametrize("status", ["running", "complete", "failed", "cancelled"])
def test_create_job_refuses_a_job_that_is_not_pending(
    queue: jw.JobQueue, clock: FakeClock, status: str
) -> None:
    running = m.start(make_job(), claim=m.new_claim("w"), now=clock.now())
    job = {
        "running": running,
        "complete": m.complete(running, 1, now=clock.now()),
        "failed": m.fail(running, "E: x", now=clock.now()),
        "cancelled": m.cancel(running, now=clock.now()),
    }[status]
    assert_refused(queue, job, jw.InvalidJobError)


@pytest.mark.parametrize("value", [None, {"metadata": {}, "params": {}}, "job-1"])
def test_create_job_refuses_a_value_that_is_not_a_job(queue: jw.JobQueue, value: Any) -> None:
    assert_refused(queue, value, jw.InvalidJobError)


def test_create_job_refuses_a_duplicate_id_and_keeps_the_first(queue: jw.JobQueue) -> None:
    first = queue.create_job(make_job(params={"v": 1}))
    before = snapshot(queue)
    with pytest.raises(jw.DuplicateJobError) as info:
        queue.create_job(make_job(params={"v": 2}, priority=9, created=EPOCH + dt.timedelta(1)))
    assert info.value.job_id == "job-1"
    assert stored(queue) == first
    assert stored(queue).params == {"v": 1}
    assert snapshot(queue) == before


def test_an_id_stays_taken_after_the_job_ran(queue: jw.JobQueue) -> None:
    queue.create_job(make_job())
    finish(queue, claim(queue))
    done = stored(queue)
    with pytest.raises(jw.DuplicateJobError):
        queue.create_job(make_job())
    assert stored(queue) == done


# -- values handed out are copies --------------------------------------------------------------


def test_params_are_stored_as_a_copy(queue: jw.JobQueue) -> None:
    params = {"title": "T", "tags": ["a"]}
    queue.create_job(make_job(params=params))
    params["title"] = "changed"
    params["tags"].append("b")
    assert stored(queue).params == {"title": "T", "tags": ["a"]}


def test_params_come_back_as_a_json_round_trip_returns_them(queue: jw.JobQueue) -> None:
    returned = queue.create_job(make_job(params={"pair": (1, 2), "n": None, "f": 1.5}))
    assert stored(queue).params == {"pair": [1, 2], "n": None, "f": 1.5}
    assert returned == stored(queue)


def test_progress_and_result_are_stored_as_copies(queue: jw.JobQueue) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    progress = {"done": [1]}
    queue.update_job(attrs.evolve(running, progress=progress))
    progress["done"].append(2)
    job = stored(queue)
    assert isinstance(job, m.RunningJob)
    assert job.progress == {"done": [1]}
    result: dict[str, Any] = {"pair": (1, 2)}
    finish(queue, running, result)
    result["extra"] = True
    job = stored(queue)
    assert isinstance(job, m.CompleteJob)
    assert job.result == {"pair": [1, 2]}


def test_jobs_handed_out_share_no_values_with_the_store(queue: jw.JobQueue) -> None:
    returned = queue.create_job(make_job(params={"tags": ["a"]}))
    returned.params["tags"].append("from-create")
    fetched = stored(queue)
    fetched.params["tags"].append("from-get")
    queue.list_jobs()[0].params["tags"].append("from-list")
    running = claim(queue)
    running.params["tags"].append("from-poll")
    assert stored(queue).params == {"tags": ["a"]}
    written = queue.update_job(attrs.evolve(running, progress={"p": [1]}))
    assert isinstance(written, m.RunningJob)
    written.progress["p"].append(2)
    job = stored(queue)
    assert isinstance(job, m.RunningJob)
    assert job.progress == {"p": [1]}


# -- typed values and times ----------------------------------------------------------------------


@pytest.mark.parametrize("micros", [123_457, 0], ids=["fraction", "whole-second"])
def test_registered_attrs_values_round_trip_equal(
    make_queue: MakeQueue, clock: FakeClock, micros: int
) -> None:
    registry = jw.JobTypeRegistry()
    registry.register("generation", params=Article, progress=Progress, result=Summary)
    queue = make_queue(registry=registry)
    # A whole second has no fraction in ISO text: both forms must come back.
    article = Article(title="T", when=EPOCH + dt.timedelta(microseconds=micros))
    assert queue.create_job(make_job(params=article)).params == article
    job = stored(queue)
    assert job.params == article
    assert isinstance(job.params, Article)
    assert job.params.when.utcoffset() is not None
    running = claim(queue)
    assert running.params == article
    queue.update_job(attrs.evolve(running, progress=Progress(done=1, of=3)))
    job = stored(queue)
    assert isinstance(job, m.RunningJob)
    assert job.progress == Progress(done=1, of=3)
    summary = Summary(words=12, at=clock.now())
    finish(queue, running, summary)
    done = stored(queue)
    assert isinstance(done, m.CompleteJob)
    assert done.result == summary
    assert isinstance(done.result, Summary)
    assert queue.list_jobs()[0] == done
    # A value of the wrong class is refused, and nothing is stored.
    assert_refused(queue, make_job("job-2", params={"title": "T"}), jw.SerializationError)


def test_times_come_back_equal_and_timezone_aware(queue: jw.JobQueue, clock: FakeClock) -> None:
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    brazil = dt.timezone(dt.timedelta(hours=-3))
    created = dt.datetime(2025, 12, 31, 23, 59, 58, 123_456, tzinfo=india)
    run_after = dt.datetime(2025, 12, 31, 20, 59, 59, 999_999, tzinfo=brazil)  # due 1 µs ago
    queue.create_job(make_job(created=created, run_after=run_after))
    for job in (stored(queue), queue.list_jobs()[0]):
        assert job.metadata.created == created
        assert job.metadata.run_after == run_after
        assert job.metadata.created.utcoffset() is not None
        assert job.metadata.run_after is not None
        assert job.metadata.run_after.utcoffset() is not None
    clock.advance(0.000_001)
    running = claim(queue)
    assert running.started_at == clock.now()
    assert running.started_at.utcoffset() is not None
    clock.advance(1.5)
    finish(queue, running)
    done = stored(queue)
    assert isinstance(done, m.CompleteJob)
    assert done.started_at == running.started_at
    assert done.completed_at == clock.now()
    assert done.completed_at.utcoffset() is not None


# -- update_job: compare-and-set ---------------------------------------------------------------


def _submitted(base: m.RunningJob[Any, Any], status: str, now: dt.datetime) -> m.AnyJob:
    return {
        "pending": lambda: m.release(base),
        "running": lambda: attrs.evolve(base, progress={"pct": 10}),
        "complete": lambda: m.complete(base, {"r": 2}, now=now),
        "failed": lambda: m.fail(base, "E: y", now=now),
        "cancelled": lambda: m.cancel(base, now=now),
    }[status]()


@pytest.mark.parametrize(
    ("old", "new"),
    list(itertools.product(m.STATUSES, m.STATUSES)),
    ids=lambda status: status,
)
def test_update_job_allows_exactly_the_designed_moves(
    queue: jw.JobQueue, clock: FakeClock, old: str, new: str
) -> None:
    base = to_status(queue, old)
    clock.advance(1)
    submitted = _submitted(base, new, clock.now())
    before = snapshot(queue)
    if (old, new) in UPDATE_ALLOWED:
        written = queue.update_job(submitted, old, claim=base.claim)
        assert written.status == new
        assert stored(queue) == written
        assert queue.get_stats()[new] == 1
        assert sum(queue.get_stats().values()) == 1
    else:
        with pytest.raises(jw.InvalidTransitionError) as info:
            queue.update_job(submitted, old, claim=base.claim)
        assert (info.value.old_status, info.value.new_status) == (old, new)
        if (old, new) == ("pending", "running"):
            assert "poll_next_pending_job" in str(info.value)  # how to claim instead
        assert snapshot(queue) == before


def test_update_job_with_a_stale_old_status_raises_and_changes_nothing(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = snapshot(queue)
    done = m.complete(running, {"r": 1}, now=clock.now())
    for old_status in ("pending", "complete", "failed", "cancelled"):
        with pytest.raises(jw.StaleJobError) as info:
            queue.update_job(done, old_status, claim=running.claim)
        assert (info.value.expected, info.value.actual) == (old_status, "running")
        assert snapshot(queue) == before


def test_update_job_defaults_old_status_to_the_submitted_status(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = snapshot(queue)
    with pytest.raises(jw.StaleJobError):
        queue.update_job(m.complete(running, 1, now=clock.now()), claim=running.claim)
    assert snapshot(queue) == before


def test_only_one_of_two_writers_wins(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    finish(queue, running, "first")
    winner = stored(queue)
    with pytest.raises(jw.StaleJobError):
        queue.update_job(
            m.fail(running, "E: late", now=clock.now()), "running", claim=running.claim
        )
    assert stored(queue) == winner


def test_update_job_of_an_unknown_id_raises(queue: jw.JobQueue, clock: FakeClock) -> None:
    running = m.start(make_job("ghost"), claim=m.new_claim("w"), now=clock.now())
    with pytest.raises(jw.JobNotFoundError) as info:
        queue.update_job(attrs.evolve(running, progress=1))
    assert info.value.job_id == "ghost"
    assert isinstance(info.value, LookupError)
    assert queue.get_job("ghost") is None


def test_update_job_with_a_wrong_claim_raises_lease_lost(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = snapshot(queue)
    other = m.new_claim(running.claim.worker)
    with pytest.raises(jw.LeaseLostError):
        queue.update_job(m.complete(running, 1, now=clock.now()), "running", claim=other)
    with pytest.raises(jw.LeaseLostError):
        queue.update_job(attrs.evolve(running, claim=other, progress=5))
    with pytest.raises(jw.LeaseLostError):
        queue.update_job(m.cancel(running, now=clock.now()), "running", claim=other)
    assert snapshot(queue) == before


def test_a_write_to_a_running_job_must_carry_its_claim(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = snapshot(queue)
    with pytest.raises(jw.InvalidJobError, match="claim"):
        queue.update_job(m.complete(running, 1, now=clock.now()), "running")
    assert snapshot(queue) == before


def test_progress_updates_take_only_progress(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    clock.advance(5)
    tampered = attrs.evolve(
        running,
        progress={"pct": 50},
        params={"evil": True},
        started_at=clock.now(),
        metadata=attrs.evolve(running.metadata, max_retries=99, priority=7, user_id="mallory"),
    )
    written = queue.update_job(tampered)
    assert written == attrs.evolve(running, progress={"pct": 50})
    assert stored(queue) == written


def test_a_refused_value_in_an_update_changes_nothing(make_queue: MakeQueue) -> None:
    queue = make_queue(max_payload=100)
    queue.create_job(make_job())
    running = claim(queue)
    now = queue.clock.now()
    before = snapshot(queue)
    with pytest.raises(jw.PayloadTooLargeError):
        queue.update_job(attrs.evolve(running, progress="é" * 60))
    with pytest.raises(jw.SerializationError):
        queue.update_job(attrs.evolve(running, progress={1, 2}))
    with pytest.raises(jw.SerializationError):
        queue.update_job(m.complete(running, float("nan"), now=now), claim=running.claim)
    with pytest.raises(jw.SerializationError):
        queue.update_job(m.complete(running, "\udc80", now=now), claim=running.claim)
    assert snapshot(queue) == before


def test_a_retry_through_update_job_counts_from_the_stored_job(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job(max_retries=2))
    running = claim(queue)
    retry = m.fail_or_retry(running, "E: x", now=clock.now(), delay=30)
    written = queue.update_job(retry, "running", claim=running.claim)
    assert isinstance(written, m.PendingJob)
    assert written.metadata.retry_count == 1
    assert written.metadata.run_after == clock.now() + dt.timedelta(seconds=30)
    assert stored(queue) == written
    assert queue.poll_next_pending_job(timeout=0) is None
    clock.advance(30)
    again = claim(queue)
    assert again.metadata.id == "job-1"
    assert again.metadata.retry_count == 1


def test_a_retry_is_refused_when_none_is_left(queue: jw.JobQueue) -> None:
    queue.create_job(make_job(max_retries=0))
    running = claim(queue)
    before = snapshot(queue)
    # One more retry than the job has left (the constructor refuses a count over the max).
    meta = attrs.evolve(running.metadata, retry_count=1, max_retries=1)
    for params in (running.params, {}):
        retry = m.PendingJob(metadata=meta, params=params)
        with pytest.raises(jw.InvalidTransitionError, match="no retry left"):
            queue.update_job(retry, "running", claim=running.claim)
    assert snapshot(queue) == before


@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_released_job_goes_back_unrun(queue: jw.JobQueue, max_retries: int) -> None:
    queue.create_job(make_job(max_retries=max_retries))
    running = claim(queue)
    written = queue.update_job(m.release(running), "running", claim=running.claim)
    assert isinstance(written, m.PendingJob)
    assert written.metadata == running.metadata
    assert queue.get_stats()["pending"] == 1
    assert queue.get_stats()["running"] == 0
    again = claim(queue)
    assert again.metadata.retry_count == 0
    assert again.claim.token != running.claim.token


# -- cancel_job ----------------------------------------------------------------------------------


def test_cancel_job_of_a_missing_job_is_false(queue: jw.JobQueue) -> None:
    assert queue.cancel_job("nope") is False
    assert queue.get_stats() == dict.fromkeys(m.STATUSES, 0)
    assert queue.get_job("nope") is None


def test_cancel_job_of_a_pending_job(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    clock.advance(3)
    assert queue.cancel_job("job-1") is True
    job = stored(queue)
    assert isinstance(job, m.CancelledJob)
    assert job.started_at is None
    assert job.completed_at == clock.now()
    assert queue.poll_next_pending_job(timeout=0) is None
    assert queue.get_stats()["cancelled"] == 1
    assert queue.get_stats()["pending"] == 0


def test_cancel_job_of_a_running_job(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    clock.advance(3)
    assert queue.cancel_job("job-1") is True
    job = stored(queue)
    assert isinstance(job, m.CancelledJob)
    assert job.started_at == running.started_at
    assert job.completed_at == clock.now()
    # The late result of the cancelled attempt does not resurrect the job.
    with pytest.raises(jw.StaleJobError):
        finish(queue, running)
    with pytest.raises(jw.StaleJobError):
        queue.update_job(attrs.evolve(running, progress=5))
    assert queue.renew_lease(running) is False
    assert stored(queue) == job
    assert queue.get_stats()["running"] == 0


@pytest.mark.parametrize("status", ["complete", "failed", "cancelled"])
def test_cancel_job_of_a_terminal_job_is_false(queue: jw.JobQueue, status: str) -> None:
    to_status(queue, status)
    before = snapshot(queue)
    assert queue.cancel_job("job-1") is False
    assert snapshot(queue) == before


# -- list_jobs ----------------------------------------------------------------------------------


def _populate(queue: jw.JobQueue) -> list[str]:
    """Create six jobs a minute apart, ids unlike creation order; return ids, oldest first."""
    specs = [
        ("job-f", "x", "u1"),
        ("job-a", "y", "u2"),
        ("job-d", "x", "u2"),
        ("job-c", "y", "u1"),
        ("job-b", "x", "u1"),
        ("job-e", "y", "u2"),
    ]
    for minute, (job_id, job_type, user) in enumerate(specs):
        created = EPOCH + dt.timedelta(minutes=minute)
        queue.create_job(make_job(job_id, job_type, created=created, user_id=user))
    return [job_id for job_id, _, _ in specs]


def test_list_jobs_is_newest_first(queue: jw.JobQueue) -> None:
    oldest_first = _populate(queue)
    assert ids_of(queue.list_jobs()) == oldest_first[::-1]


def test_list_jobs_orders_by_created_not_by_arrival(queue: jw.JobQueue) -> None:
    for job_id, minute in [("mid", 5), ("new", 9), ("old", 1)]:
        queue.create_job(make_job(job_id, created=EPOCH + dt.timedelta(minutes=minute)))
    assert ids_of(queue.list_jobs()) == ["new", "mid", "old"]


def test_list_jobs_filters(queue: jw.JobQueue) -> None:
    _populate(queue)
    assert claim(queue, types=["x"]).metadata.id == "job-f"  # the oldest x
    assert ids_of(queue.list_jobs(type="x")) == ["job-b", "job-d", "job-f"]
    assert ids_of(queue.list_jobs(user_id="u1")) == ["job-b", "job-c", "job-f"]
    assert ids_of(queue.list_jobs(status="running")) == ["job-f"]
    assert ids_of(queue.list_jobs(status="pending", type="x")) == ["job-b", "job-d"]
    assert ids_of(queue.list_jobs(status="pending", type="x", user_id="u2")) == ["job-d"]
    assert queue.list_jobs(status="complete") == []
    assert queue.list_jobs(user_id="nobody") == []
    assert queue.list_jobs(type="nothing") == []


def test_list_jobs_limit_and_offset(queue: jw.JobQueue) -> None:
    newest_first = _populate(queue)[::-1]
    assert ids_of(queue.list_jobs(limit=2)) == newest_first[:2]
    assert ids_of(queue.list_jobs(limit=2, offset=1)) == newest_first[1:3]
    assert ids_of(queue.list_jobs(offset=4)) == newest_first[4:]
    assert queue.list_jobs(offset=6) == []
    assert queue.list_jobs(limit=0) == []
    assert ids_of(queue.list_jobs(type="y", limit=1, offset=1)) == ["job-c"]


def test_list_jobs_default_limit_is_100(queue: jw.JobQueue) -> None:
    for n in range(105):
        queue.create_job(make_job(f"job-{n:03}", created=EPOCH + dt.timedelta(seconds=n)))
    jobs = queue.list_jobs()
    assert len(jobs) == 100
    assert jobs[0].metadata.id == "job-104"
    assert jobs[-1].metadata.id == "job-005"


@pytest.mark.parametrize(
    "options",
    [
        {"status": "done"},
        {"status": "Pending"},
        {"limit": -1},
        {"limit": 1.5},
        {"offset": -1},
        {"offset": "0"},
    ],
)
def test_list_jobs_refuses_bad_arguments(queue: jw.JobQueue, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        queue.list_jobs(**options)  # an empty queue checks its arguments too
    queue.create_job(make_job())
    with pytest.raises(ValueError):
        queue.list_jobs(**options)


# -- get_stats and cleanup_old_jobs --------------------------------------------------------------


def test_get_stats_counts_every_status(queue: jw.JobQueue, clock: FakeClock) -> None:
    for n in range(6):
        queue.create_job(make_job(f"job-{n}", created=EPOCH + dt.timedelta(seconds=n)))
    first, second, third, fourth = (claim(queue) for _ in range(4))
    finish(queue, first)
    queue.update_job(m.fail(second, "E", now=clock.now()), "running", claim=second.claim)
    assert queue.cancel_job(third.metadata.id)
    assert queue.cancel_job("job-5")
    assert fourth.metadata.id == "job-3"
    assert queue.get_stats() == {
        "pending": 1,
        "running": 1,
        "complete": 1,
        "failed": 1,
        "cancelled": 2,
    }
    counted = collections.Counter(job.status for job in queue.list_jobs())
    assert queue.get_stats() == {status: counted[status] for status in m.STATUSES}


def test_get_type_stats_counts_each_type_and_status(queue: jw.JobQueue, clock: FakeClock) -> None:
    assert queue.get_type_stats() == {}
    for n in range(3):
        queue.create_job(make_job(f"a-{n}", "alpha", created=EPOCH + dt.timedelta(seconds=n)))
    queue.create_job(make_job("b-0", "beta", created=EPOCH + dt.timedelta(seconds=9)))
    finish(queue, claim(queue))  # a-0
    running = claim(queue)  # a-1
    assert queue.cancel_job("b-0")
    zero = dict.fromkeys(m.STATUSES, 0)
    assert queue.get_type_stats() == {
        "alpha": {**zero, "complete": 1, "running": 1, "pending": 1},
        "beta": {**zero, "cancelled": 1},
    }
    queue.update_job(m.fail(running, "E", now=clock.now()), "running", claim=running.claim)
    stats = queue.get_type_stats()
    assert stats["alpha"] == {**zero, "complete": 1, "failed": 1, "pending": 1}
    # The same jobs as get_stats counts, split by type.
    totals = {s: sum(counts[s] for counts in stats.values()) for s in m.STATUSES}
    assert totals == queue.get_stats()


def test_cleanup_old_jobs_removes_only_old_terminal_jobs(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    for n, job_id in enumerate(["complete", "failed", "cancelled", "pending", "running"]):
        queue.create_job(make_job(job_id, created=EPOCH + dt.timedelta(seconds=n)))
    first, second, third = (claim(queue) for _ in range(3))
    finish(queue, first)
    queue.update_job(m.fail(second, "E", now=clock.now()), "running", claim=second.claim)
    assert queue.cancel_job(third.metadata.id)
    claim(queue, predicate=lambda job: job.metadata.id == "running")

    clock.advance(23 * 3600)
    assert queue.cleanup_old_jobs(retention_hours=24) == 0
    assert len(queue.list_jobs()) == 5

    clock.advance(2 * 3600)
    queue.create_job(make_job("recent", created=clock.now()))
    finish(queue, claim(queue, types=["generation"], predicate=lambda j: j.metadata.id == "recent"))

    assert queue.cleanup_old_jobs(retention_hours=24) == 3
    for gone in ("complete", "failed", "cancelled"):
        assert queue.get_job(gone) is None
    assert sorted(ids_of(queue.list_jobs())) == ["pending", "recent", "running"]
    stats = queue.get_stats()
    assert sum(stats.values()) == 3
    assert stats["complete"] == 1
    assert stats["failed"] == stats["cancelled"] == 0
    assert queue.cleanup_old_jobs(retention_hours=24) == 0

    clock.advance(60)
    assert queue.cleanup_old_jobs(retention_hours=0) == 1
    assert queue.get_job("recent") is None
    # Its id is free again once the job is gone.
    queue.create_job(make_job("recent", created=clock.now()))
    assert stored(queue, "recent").status == "pending"


def test_cleanup_old_jobs_keeps_a_job_that_ended_exactly_at_the_cutoff(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    assert queue.cancel_job("job-1")
    clock.advance(3600)
    assert queue.cleanup_old_jobs(retention_hours=1) == 0
    clock.advance(0.000_001)
    assert queue.cleanup_old_jobs(retention_hours=1) == 1


def test_cleanup_old_jobs_refuses_a_negative_retention(queue: jw.JobQueue) -> None:
    with pytest.raises(ValueError):
        queue.cleanup_old_jobs(retention_hours=-1)


# -- claim order ---------------------------------------------------------------------------------


def test_poll_takes_the_oldest_first_not_by_id(queue: jw.JobQueue) -> None:
    # Ids in reverse alphabetical order of creation time.
    for minute, job_id in enumerate(["job-c", "job-b", "job-a"]):
        queue.create_job(make_job(job_id, created=EPOCH + dt.timedelta(minutes=minute)))
    assert drain(queue) == ["job-c", "job-b", "job-a"]


def test_poll_takes_the_oldest_created_not_the_first_arrived(queue: jw.JobQueue) -> None:
    for job_id, minute in [("mid", 5), ("new", 9), ("old", 1)]:
        queue.create_job(make_job(job_id, created=EPOCH + dt.timedelta(minutes=minute)))
    assert drain(queue) == ["old", "mid", "new"]


def test_poll_breaks_ties_in_created_by_arrival_not_by_id(queue: jw.JobQueue) -> None:
    for job_id in ["job-z", "job-m", "job-a"]:
        queue.create_job(make_job(job_id))
    assert drain(queue) == ["job-z", "job-m", "job-a"]


def test_poll_takes_higher_priority_first(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("old-low", created=EPOCH, priority=0))
    queue.create_job(make_job("new-high", created=EPOCH + dt.timedelta(hours=1), priority=5))
    queue.create_job(make_job("negative", created=EPOCH - dt.timedelta(hours=1), priority=-1))
    assert drain(queue) == ["new-high", "old-low", "negative"]


@pytest.mark.parametrize("backend", list(BACKENDS))
@given(
    specs=st.lists(
        st.tuples(st.integers(-2, 2), st.integers(0, 3), st.sampled_from(["a", "b", "c"])),
        min_size=1,
        max_size=25,
    ),
    data=st.data(),
    with_predicate=st.booleans(),
    types=st.sampled_from([None, ("a", "b", "c"), ("a", "c")]),
)
@settings(deadline=None)  # a durable backend may be slow on a busy machine
def test_claim_order_is_priority_then_created_then_arrival(
    backend: str,
    specs: list[tuple[int, int, str]],
    data: st.DataObject,
    with_predicate: bool,
    types: tuple[str, ...] | None,
) -> None:
    # Ids are a random permutation, unrelated to the order the jobs must come out in.
    ids = data.draw(st.permutations([f"job-{n:02}" for n in range(len(specs))]))
    keys = []
    with tempfile.TemporaryDirectory() as directory:
        queue = BACKENDS[backend](Path(directory), {"clock": FakeClock(EPOCH)})
        with queue:
            for arrival, ((priority, minute, job_type), job_id) in enumerate(
                zip(specs, ids, strict=True)
            ):
                created = EPOCH - dt.timedelta(minutes=minute)
                queue.create_job(make_job(job_id, job_type, created=created, priority=priority))
                if types is None or job_type in types:
                    keys.append((-priority, created, arrival, job_id))
            expected = [key[-1] for key in sorted(keys)]
            predicate = (lambda job: True) if with_predicate else None
            assert drain(queue, types=types, predicate=predicate) == expected
            assert queue.get_stats()["running"] == len(expected)


def test_poll_with_timeout_zero_on_an_empty_queue_is_none(queue: jw.JobQueue) -> None:
    assert queue.poll_next_pending_job(timeout=0) is None
    assert queue.poll_next_pending_job(timeout=0, types=["x"]) is None
    assert poll_now(queue, predicate=lambda job: True) is None


def test_poll_refuses_a_negative_timeout(queue: jw.JobQueue) -> None:
    with pytest.raises(ValueError):
        queue.poll_next_pending_job(timeout=-1)  # an empty queue checks it too
    queue.create_job(make_job())
    with pytest.raises(ValueError):
        queue.poll_next_pending_job(timeout=-1)
    assert stored(queue).status == "pending"


def test_poll_returns_the_job_running(queue: jw.JobQueue, clock: FakeClock) -> None:
    pending = queue.create_job(make_job())
    clock.advance(7)
    running = claim(queue, worker="w-1")
    assert isinstance(running, m.RunningJob)
    assert running.metadata == pending.metadata
    assert running.params == pending.params
    assert running.started_at == clock.now()
    assert running.claim.worker == "w-1"
    assert running.progress is None
    assert stored(queue) == running
    assert queue.get_stats()["running"] == 1
    assert queue.poll_next_pending_job(timeout=0) is None


def test_concurrent_polls_claim_each_job_exactly_once(queue: jw.JobQueue) -> None:
    count = 300
    for n in range(count):
        queue.create_job(make_job(f"job-{n:03}", created=EPOCH + dt.timedelta(seconds=n)))
    claimed: list[list[str]] = [[] for _ in range(6)]

    def work(mine: list[str], use_predicate: bool) -> None:
        predicate = (lambda job: True) if use_predicate else None
        while (job := queue.poll_next_pending_job(timeout=0, predicate=predicate)) is not None:
            mine.append(job.metadata.id)

    # Half the pollers take the predicate path, half the plain one.
    pollers = [
        Background(functools.partial(work, mine, n % 2 == 0)) for n, mine in enumerate(claimed)
    ]
    for poller in pollers:
        poller.join()
        assert poller.error is None
    every = [job_id for mine in claimed for job_id in mine]
    assert len(every) == count
    assert set(every) == {f"job-{n:03}" for n in range(count)}
    assert queue.get_stats()["running"] == count


# -- run_after -----------------------------------------------------------------------------------


def test_a_job_is_not_claimed_before_run_after(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job(run_after=clock.now() + dt.timedelta(seconds=60)))
    assert queue.poll_next_pending_job(timeout=0) is None
    clock.advance(59.999_999)
    assert queue.poll_next_pending_job(timeout=0) is None
    assert poll_now(queue, predicate=lambda job: True) is None
    assert stored(queue).status == "pending"
    clock.advance(0.000_001)
    assert claim(queue).metadata.id == "job-1"


def test_a_past_run_after_is_due_at_once(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job(run_after=clock.now() - dt.timedelta(seconds=1)))
    assert claim(queue).metadata.id == "job-1"


def test_a_scheduled_job_does_not_block_ready_ones(queue: jw.JobQueue, clock: FakeClock) -> None:
    later = clock.now() + dt.timedelta(seconds=10)
    queue.create_job(make_job("scheduled", priority=9, created=EPOCH, run_after=later))
    queue.create_job(make_job("ready", created=EPOCH + dt.timedelta(seconds=1)))
    assert drain(queue) == ["ready"]
    clock.advance(10)
    assert drain(queue) == ["scheduled"]


def test_due_jobs_are_ordered_by_priority_and_created_not_run_after(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    now = clock.now()
    queue.create_job(make_job("newer", created=now, run_after=now + dt.timedelta(seconds=5)))
    queue.create_job(
        make_job(
            "older", created=now - dt.timedelta(hours=1), run_after=now + dt.timedelta(seconds=9)
        )
    )
    clock.advance(10)
    assert drain(queue) == ["older", "newer"]


# -- types and predicates ------------------------------------------------------------------------


@pytest.mark.parametrize("with_predicate", [False, True], ids=["plain", "predicate"])
def test_poll_takes_only_the_given_types(queue: jw.JobQueue, with_predicate: bool) -> None:
    predicate = (lambda job: True) if with_predicate else None
    queue.create_job(make_job("a-1", "a", created=EPOCH))
    queue.create_job(make_job("b-1", "b", created=EPOCH + dt.timedelta(seconds=1)))
    assert poll_now(queue, types=["c"], predicate=predicate) is None
    assert poll_now(queue, types=[], predicate=predicate) is None  # no type: no job
    assert queue.get_stats()["pending"] == 2
    assert claim(queue, types=["b"], predicate=predicate).metadata.id == "b-1"
    assert poll_now(queue, types={"b"}, predicate=predicate) is None
    assert claim(queue, types=("b", "a"), predicate=predicate).metadata.id == "a-1"


def test_poll_without_types_takes_the_best_of_all_types(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("b-1", "b", created=EPOCH + dt.timedelta(seconds=1)))
    queue.create_job(make_job("a-1", "a", created=EPOCH))
    queue.create_job(make_job("c-1", "c", created=EPOCH + dt.timedelta(seconds=2), priority=1))
    assert drain(queue) == ["c-1", "a-1", "b-1"]


def test_a_predicate_that_rejects_the_head_still_gets_a_later_job(queue: jw.JobQueue) -> None:
    for n in range(3):
        queue.create_job(make_job(f"job-{n}", created=EPOCH + dt.timedelta(seconds=n)))
    seen: list[str] = []

    def not_the_head(job: m.PendingJob[Any]) -> bool:
        assert isinstance(job, m.PendingJob)
        seen.append(job.metadata.id)
        return job.metadata.id != "job-0"

    assert claim(queue, predicate=not_the_head).metadata.id == "job-1"
    assert "job-0" in seen
    assert stored(queue, "job-0").status == "pending"
    assert stored(queue, "job-2").status == "pending"


@pytest.mark.parametrize("same_created", [True, False], ids=["by-arrival", "by-created"])
def test_a_job_a_predicate_turned_down_keeps_its_place(
    queue: jw.JobQueue, same_created: bool
) -> None:
    # A backend may claim the head before asking the predicate, and hand it
    # back on a no: it must go back where it was, not behind later arrivals.
    for n, job_id in enumerate(["a", "b", "c"]):
        created = EPOCH if same_created else EPOCH + dt.timedelta(seconds=n)
        queue.create_job(make_job(job_id, created=created))
    assert claim(queue, predicate=lambda job: job.metadata.id != "a").metadata.id == "b"
    turned_down = stored(queue, "a")
    assert isinstance(turned_down, m.PendingJob)
    assert turned_down.metadata.retry_count == 0  # not an attempt
    assert drain(queue) == ["a", "c"]


def test_a_predicate_that_rejects_everything_claims_nothing(queue: jw.JobQueue) -> None:
    for n in range(3):
        queue.create_job(make_job(f"job-{n}", created=EPOCH + dt.timedelta(seconds=n)))
    before = snapshot(queue)
    assert poll_now(queue, predicate=lambda job: False) is None
    assert snapshot(queue) == before


def test_a_predicate_combines_with_types(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("a-0", "a", created=EPOCH))
    queue.create_job(make_job("b-0", "b", created=EPOCH + dt.timedelta(seconds=1)))
    queue.create_job(make_job("b-1", "b", created=EPOCH + dt.timedelta(seconds=2)))
    running = claim(queue, types=["b"], predicate=lambda job: job.metadata.id != "b-0")
    assert running.metadata.id == "b-1"


def test_a_predicate_sees_params(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("small", params={"size": 1}, created=EPOCH))
    queue.create_job(make_job("big", params={"size": 100}, created=EPOCH))
    assert claim(queue, predicate=lambda job: job.params["size"] > 10).metadata.id == "big"


# -- leases --------------------------------------------------------------------------------------


def test_renew_lease_keeps_a_live_job(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    step = queue.lease_duration * 2 / 3
    clock.advance(step)
    assert queue.renew_lease(running) is True
    clock.advance(step)  # past the first lease, inside the renewed one
    assert queue.renew_lease(running) is True
    clock.advance(step)
    assert queue.poll_next_pending_job(timeout=0) is None
    assert stored(queue) == running


@pytest.mark.parametrize("lease", [30.0, 7.7])
def test_a_lease_lasts_exactly_lease_duration(make_queue: MakeQueue, lease: float) -> None:
    # An odd start: a backend that keeps times as floats may round the deadline.
    clock = FakeClock(EPOCH + dt.timedelta(seconds=126.614242))
    queue = make_queue(clock=clock, lease_duration=lease, retry_policy=jw.RetryPolicy.immediate())
    queue.create_job(make_job())
    running = claim(queue)
    clock.advance(lease - 0.000_001)
    assert stored(queue) == running
    clock.advance(0.000_001)
    recovered = stored(queue)
    assert isinstance(recovered, m.PendingJob)
    assert recovered.metadata.retry_count == 1


def test_an_expired_lease_is_recovered_as_a_failed_attempt(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job(max_retries=3))
    old = claim(queue, worker="doomed")
    clock.advance(queue.lease_duration + 1)
    assert queue.poll_next_pending_job(timeout=0) is None  # recovered, backing off
    recovered = stored(queue)
    assert isinstance(recovered, m.PendingJob)
    assert recovered.metadata.retry_count == 1
    backoff = dt.timedelta(seconds=queue.retry_policy.delay(0))
    assert backoff > dt.timedelta(0)
    assert recovered.metadata.run_after == clock.now() + backoff
    assert queue.get_stats()["running"] == 0
    assert queue.get_stats()["pending"] == 1

    # The old holder has lost the job: it cannot renew or write.
    assert queue.renew_lease(old) is False
    before = snapshot(queue)
    with pytest.raises(jw.StaleJobError):
        finish(queue, old, "late")
    with pytest.raises(jw.StaleJobError):
        queue.update_job(attrs.evolve(old, progress=99))
    assert snapshot(queue) == before

    # Once claimed again, the old claim is fenced off from the new attempt.
    clock.advance(backoff.total_seconds())
    new = claim(queue, worker="fresh")
    assert new.metadata.id == "job-1"
    assert new.metadata.retry_count == 1
    assert new.claim.token != old.claim.token
    before = snapshot(queue)
    with pytest.raises(jw.LeaseLostError):
        finish(queue, old, "late")
    with pytest.raises(jw.LeaseLostError):
        queue.update_job(attrs.evolve(old, progress=99))
    with pytest.raises(jw.LeaseLostError):
        queue.update_job(m.fail(old, "E: late", now=clock.now()), "running", claim=old.claim)
    assert queue.renew_lease(old) is False
    assert snapshot(queue) == before
    assert queue.renew_lease(new) is True
    finish(queue, new, "ok")
    done = stored(queue)
    assert isinstance(done, m.CompleteJob)
    assert done.result == "ok"


def test_a_late_write_right_after_expiry_is_refused(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    old = claim(queue)
    clock.advance(queue.lease_duration + 1)
    # No other call in between: the write itself must find the lease gone.
    with pytest.raises(jw.StaleJobError):
        finish(queue, old, "late")
    job = stored(queue)
    assert isinstance(job, m.PendingJob)
    assert job.metadata.retry_count == 1


def test_renew_after_expiry_is_refused(queue: jw.JobQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    old = claim(queue)
    clock.advance(queue.lease_duration + 1)
    assert queue.renew_lease(old) is False
    assert stored(queue).status == "pending"


def test_an_expired_lease_with_no_retry_left_fails_the_job(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job(max_retries=0))
    old = claim(queue)
    clock.advance(queue.lease_duration + 1)
    assert queue.poll_next_pending_job(timeout=0) is None
    job = stored(queue)
    assert isinstance(job, m.FailedJob)
    assert job.error == m.WORKER_LOST
    assert job.error.startswith("WorkerLost")
    assert job.started_at == old.started_at
    assert job.completed_at == clock.now()
    assert queue.get_stats()["failed"] == 1
    assert queue.wait_for_job("job-1", timeout=0) == job
    with pytest.raises(jw.StaleJobError):
        finish(queue, old, "late")
    assert stored(queue) == job


def test_a_killed_worker_s_job_runs_again_within_a_minute(make_queue: MakeQueue) -> None:
    queue = make_queue()  # the default lease and retry policy
    queue.create_job(make_job())
    old = claim(queue)
    clock = queue.clock
    assert isinstance(clock, FakeClock)
    again = None
    for _ in range(60):
        clock.advance(1)
        again = queue.poll_next_pending_job(timeout=0)
        if again is not None:
            break
    assert again is not None
    assert again.metadata.id == "job-1"
    assert again.claim != old.claim
    assert again.metadata.retry_count == 1


def test_with_immediate_retries_one_poll_recovers_and_claims(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(retry_policy=jw.RetryPolicy.immediate(), lease_duration=5)
    queue.create_job(make_job())
    old = claim(queue)
    clock.advance(6)
    again = claim(queue)
    assert again.metadata.id == "job-1"
    assert again.metadata.retry_count == 1
    assert again.claim.token != old.claim.token


@pytest.mark.parametrize(
    "options", [{"lease_duration": 0}, {"lease_duration": -1}, {"max_payload": 0}]
)
def test_bad_options_are_refused(make_queue: MakeQueue, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_queue(**options)


# -- wait_for_job --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["complete", "failed", "cancelled"])
def test_wait_for_job_returns_a_terminal_job(queue: jw.JobQueue, status: str) -> None:
    to_status(queue, status)
    job = queue.wait_for_job("job-1", timeout=0)
    assert job.status == status
    assert job == stored(queue)


@pytest.mark.parametrize("status", ["pending", "running"])
def test_wait_for_job_times_out_on_a_live_job(queue: jw.JobQueue, status: str) -> None:
    to_status(queue, status)
    before = stored(queue)
    with pytest.raises(jw.WaitTimeoutError) as info:
        queue.wait_for_job("job-1", timeout=0)
    assert info.value.job_id == "job-1"
    assert isinstance(info.value, TimeoutError)
    assert stored(queue) == before


def test_wait_for_job_of_an_unknown_id_raises(queue: jw.JobQueue) -> None:
    with pytest.raises(jw.JobNotFoundError):
        queue.wait_for_job("nope", timeout=0)
    with pytest.raises(jw.JobNotFoundError):
        queue.wait_for_job("nope", timeout=None)


def test_wait_for_job_refuses_a_negative_timeout(queue: jw.JobQueue) -> None:
    queue.create_job(make_job())
    with pytest.raises(ValueError):
        queue.wait_for_job("job-1", timeout=-1)


def test_wait_for_job_wakes_when_the_job_ends(queue: jw.JobQueue) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    waiter = Background(lambda: queue.wait_for_job("job-1", timeout=None))
    finish(queue, running, "done")
    waiter.join()
    assert waiter.error is None
    assert waiter.result.result == "done"


def test_wait_for_job_wakes_when_the_job_is_cancelled(queue: jw.JobQueue) -> None:
    queue.create_job(make_job())
    waiter = Background(lambda: queue.wait_for_job("job-1", timeout=None))
    assert queue.cancel_job("job-1")
    waiter.join()
    assert waiter.error is None
    assert waiter.result.status == "cancelled"


# -- blocking polls ------------------------------------------------------------------------------


#: Blocking timeouts, both far longer than the join: a poll returns in time only if woken.
BLOCKING = [pytest.param(None, id="forever"), pytest.param(3 * JOIN, id="bounded")]


@pytest.mark.parametrize("timeout", BLOCKING)
def test_a_blocked_poll_is_woken_by_create_job(
    make_queue: MakeQueue, timeout: float | None
) -> None:
    clock = ReportingClock()
    queue = make_queue(clock=clock)
    poller = Background(lambda: queue.poll_next_pending_job(types=["a"], timeout=timeout))
    assert clock.read_elsewhere.wait(JOIN)
    queue.create_job(make_job("b-1", "b"))
    queue.create_job(make_job("a-1", "a"))
    poller.join()
    assert poller.error is None
    assert poller.result is not None
    assert poller.result.metadata.id == "a-1"
    assert stored(queue, "b-1").status == "pending"


@pytest.mark.parametrize("timeout", BLOCKING)
def test_a_blocked_poll_returns_none_on_wake_with_its_stop_event_set(
    make_queue: MakeQueue, timeout: float | None
) -> None:
    clock = ReportingClock()
    queue = make_queue(clock=clock)
    stop = threading.Event()
    poller = Background(lambda: queue.poll_next_pending_job(timeout=timeout, stop_event=stop))
    assert clock.read_elsewhere.wait(JOIN)
    stop.set()
    queue.wake()
    poller.join()
    assert poller.error is None
    assert poller.result is None


@pytest.mark.parametrize("timeout", BLOCKING)
def test_wake_without_the_stop_event_keeps_the_poll_waiting_for_work(
    make_queue: MakeQueue, timeout: float | None
) -> None:
    clock = ReportingClock()
    queue = make_queue(clock=clock)
    stop = threading.Event()
    poller = Background(lambda: queue.poll_next_pending_job(timeout=timeout, stop_event=stop))
    assert clock.read_elsewhere.wait(JOIN)
    queue.wake()  # stop is not set: the poll goes back to waiting
    queue.create_job(make_job())
    poller.join()
    assert poller.error is None
    assert poller.result is not None
    assert poller.result.metadata.id == "job-1"


def test_a_set_stop_event_returns_none_without_claiming(queue: jw.JobQueue) -> None:
    queue.create_job(make_job())
    stop = threading.Event()
    stop.set()
    assert queue.poll_next_pending_job(timeout=None, stop_event=stop) is None
    assert stored(queue).status == "pending"


def test_close_ends_every_call_in_flight_with_queue_closed_error(
    backend: str, tmp_path: Path
) -> None:
    # Blocked polls and waits, and busy callers: each must end with QueueClosedError.
    # In a child process, so that a backend that crashes fails this test, not the run.
    script = Path(__file__).with_name("close_scenario.py")
    here = str(Path(jw.__file__).resolve().parent.parent)  # the jobworker under test
    path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    child = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script), backend, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    report = f"exit status {child.returncode}\n{child.stdout}\n{child.stderr[-3000:]}"
    assert child.returncode == 0, report


# -- a closed queue ------------------------------------------------------------------------------

CLOSED_CALLS: dict[str, Callable[[jw.JobQueue, m.RunningJob[Any, Any]], Any]] = {
    "create_job": lambda q, r: q.create_job(make_job("job-9")),
    "get_job": lambda q, r: q.get_job("job-1"),
    "update_job": lambda q, r: q.update_job(attrs.evolve(r, progress=1)),
    "poll": lambda q, r: q.poll_next_pending_job(timeout=0),
    "poll-blocking": lambda q, r: q.poll_next_pending_job(timeout=JOIN),
    "renew_lease": lambda q, r: q.renew_lease(r),
    "list_jobs": lambda q, r: q.list_jobs(),
    "cancel_job": lambda q, r: q.cancel_job("job-2"),
    "cleanup_old_jobs": lambda q, r: q.cleanup_old_jobs(),
    "get_stats": lambda q, r: q.get_stats(),
    "wait_for_job": lambda q, r: q.wait_for_job("job-1", timeout=JOIN),
}


@pytest.mark.parametrize("name", list(CLOSED_CALLS))
def test_a_closed_queue_refuses_every_call(queue: jw.JobQueue, name: str) -> None:
    queue.create_job(make_job("job-1"))
    queue.create_job(make_job("job-2"))
    running = claim(queue)
    queue.close()
    with pytest.raises(jw.QueueClosedError):
        CLOSED_CALLS[name](queue, running)


def test_close_is_idempotent_and_the_queue_is_a_context_manager(make_queue: MakeQueue) -> None:
    with make_queue() as queue:
        queue.create_job(make_job())
    with pytest.raises(jw.QueueClosedError):
        queue.get_stats()
    queue.close()
    queue.wake()
    with pytest.raises(RuntimeError):  # QueueClosedError is a RuntimeError
        queue.get_job("job-1")


# -- a JobWorker on each backend -----------------------------------------------------------------


class ScriptedWorker(jw.JobWorker):
    """Fails every attempt of a job whose params say ``fail``; records each attempt."""

    def __init__(self, queue: jw.JobQueue, **options: Any) -> None:
        self.attempts: list[tuple[str, int]] = []
        super().__init__(queue, **options)

    def get_worker_name(self) -> str:
        return "ScriptedWorker"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        self.attempts.append((job.metadata.id, job.metadata.retry_count))
        if job.params.get("fail"):
            raise ValueError(f"boom at {job.metadata.retry_count}")
        return {"done": job.metadata.id}


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_a_worker_runs_a_failing_job_one_plus_max_retries_times(
    queue: jw.JobQueue, clock: FakeClock, max_retries: int
) -> None:
    worker = ScriptedWorker(queue)  # the default policy: 1, 2, 4 s before retries 1, 2, 3
    queue.create_job(make_job("doomed", params={"fail": True}, max_retries=max_retries))
    for attempt in range(max_retries):
        outcomes = run_pending(worker, fail_fast=False)
        assert [outcome.status for outcome in outcomes] == ["retry"]
        job = stored(queue, "doomed")
        assert isinstance(job, m.PendingJob)
        assert job.metadata.retry_count == attempt + 1
        delay = dt.timedelta(seconds=2.0**attempt)
        assert job.metadata.run_after == clock.now() + delay
        assert run_pending(worker) == []  # not due yet
        clock.advance(delay.total_seconds())

    last_start = clock.now()
    outcomes = run_pending(worker, fail_fast=False)
    assert [outcome.status for outcome in outcomes] == ["failed"]
    job = stored(queue, "doomed")
    assert isinstance(job, m.FailedJob)
    assert job.error == f"ValueError: boom at {max_retries}"
    assert job.started_at == last_start
    assert job.metadata.retry_count == max_retries
    assert worker.attempts == [("doomed", n) for n in range(1 + max_retries)]
    clock.advance(3600)
    assert run_pending(worker) == []
    assert len(worker.attempts) == 1 + max_retries


def test_a_worker_completes_jobs_oldest_first(queue: jw.JobQueue, clock: FakeClock) -> None:
    for job_id, minute in [("second", 2), ("third", 3), ("first", 1)]:
        queue.create_job(make_job(job_id, created=EPOCH + dt.timedelta(minutes=minute)))
    worker = ScriptedWorker(queue)
    outcomes = run_pending(worker)
    assert [(o.status, o.job.metadata.id) for o in outcomes] == [
        ("complete", "first"),
        ("complete", "second"),
        ("complete", "third"),
    ]
    done = stored(queue, "third")
    assert isinstance(done, m.CompleteJob)
    assert done.result == {"done": "third"}
    assert worker.get_metrics().processed == 3


def test_an_idle_worker_is_woken_by_create_job(
    make_queue: MakeQueue, start_worker: Callable[[jw.JobWorker], threading.Thread]
) -> None:
    clock = ReportingClock()
    queue = make_queue(clock=clock)
    # A poll interval far longer than any wait below: only a wake-up can be in time.
    worker = ScriptedWorker(queue, poll_interval=3 * JOIN)
    start_worker(worker)
    assert clock.read_elsewhere.wait(JOIN)
    queue.create_job(make_job("late"))
    job = queue.wait_for_job("late", timeout=JOIN)
    assert isinstance(job, m.CompleteJob)
    assert job.result == {"done": "late"}


def test_stop_wakes_an_idle_worker_at_once(
    make_queue: MakeQueue, start_worker: Callable[[jw.JobWorker], threading.Thread]
) -> None:
    clock = ReportingClock()
    queue = make_queue(clock=clock)
    worker = ScriptedWorker(queue, poll_interval=3 * JOIN)
    thread = start_worker(worker)
    assert clock.read_elsewhere.wait(JOIN)  # the worker is in its poll
    # Stopped in time only if stop() wakes the poll: it would sleep 30 s.
    assert worker.stop(timeout=JOIN) is True
    thread.join(JOIN)
    assert not thread.is_alive()
    queue.create_job(make_job("after-stop"))
    assert stored(queue, "after-stop").status == "pending"
