"""MemoryQueue: create-time refusals, compare-and-set updates, claims, leases, waiting."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import threading
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jobworker as jw
from jobworker import model as m
from jobworker.errors import (
    DuplicateJobError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    LeaseLostError,
    PayloadTooLargeError,
    QueueClosedError,
    SerializationError,
    StaleJobError,
    UnknownJobTypeError,
    WaitTimeoutError,
)
from jobworker.jobtypes import JobTypeRegistry
from jobworker.retry import RetryPolicy
from jobworker.testing import FakeClock

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
NAIVE = dt.datetime(2026, 1, 1)
JOIN = 10.0  # seconds a test waits for one of its own threads before failing

UPDATE_ALLOWED = frozenset(
    {
        ("pending", "cancelled"),
        ("running", "running"),
        ("running", "complete"),
        ("running", "pending"),
        ("running", "failed"),
        ("running", "cancelled"),
    }
)


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


def poll_now(queue: jw.MemoryQueue, **options: Any) -> m.RunningJob[Any, Any] | None:
    """Poll with ``timeout=0`` in a thread, so a poll that spins fails instead of hanging."""
    if options.get("predicate") is None:
        return queue.poll_next_pending_job(timeout=0, **options)
    call = Background(lambda: queue.poll_next_pending_job(timeout=0, **options))
    call.join()
    if call.error is not None:
        raise call.error
    return call.result  # type: ignore[no-any-return]


def claim(queue: jw.MemoryQueue, **options: Any) -> m.RunningJob[Any, Any]:
    job = poll_now(queue, **options)
    assert job is not None
    return job


def drain(queue: jw.MemoryQueue, **options: Any) -> list[str]:
    ids = []
    while (job := poll_now(queue, **options)) is not None:
        ids.append(job.metadata.id)
    return ids


def status_of(queue: jw.MemoryQueue, job_id: str) -> str:
    job = queue.get_job(job_id)
    assert job is not None
    return job.status


def snapshot(queue: jw.MemoryQueue) -> tuple[dict[str, int], list[m.AnyJob]]:
    return queue.get_stats(), queue.list_jobs(limit=10_000)


class ReportingClock(FakeClock):
    """A FakeClock that sets ``read_elsewhere`` when a thread other than its creator reads it.

    A poll reads the clock with the queue lock held just before it sleeps, so once
    the event is set, the next call that takes the lock runs after the poll sleeps.
    """

    def __init__(self) -> None:
        super().__init__(EPOCH)
        self.read_elsewhere = threading.Event()
        self._owner = threading.get_ident()

    def now(self) -> dt.datetime:
        if threading.get_ident() != self._owner:
            self.read_elsewhere.set()
        return super().now()


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


# -- basics ------------------------------------------------------------------------------


def test_a_new_queue_has_all_five_statuses_at_zero(queue: jw.MemoryQueue) -> None:
    stats = queue.get_stats()
    assert stats == dict.fromkeys(m.STATUSES, 0)
    stats["pending"] = 99
    assert queue.get_stats()["pending"] == 0


def test_get_job_of_an_unknown_id_is_none(queue: jw.MemoryQueue) -> None:
    assert queue.get_job("nope") is None
    queue.create_job(make_job("job-1"))
    assert queue.get_job("job-2") is None


def test_create_job_stores_and_returns_the_job(queue: jw.MemoryQueue) -> None:
    job = make_job()
    stored = queue.create_job(job)
    assert stored == job
    assert queue.get_job("job-1") == job
    assert queue.get_stats()["pending"] == 1


def test_the_guides_first_example(queue: jw.MemoryQueue, clock: FakeClock) -> None:
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
    done = m.complete(running, {"resource_name": running.params["title"]}, now=clock.now())
    queue.update_job(done, "running", claim=running.claim)
    job = queue.get_job(jw.job_id("job-123"))
    assert job is not None
    assert job.status == "complete"
    assert jw.is_complete_job(job)
    assert job.result == {"resource_name": "Test Article"}


# -- create_job refuses, and stores nothing -------------------------------------------------


def assert_refused(queue: jw.MemoryQueue, job: Any, error: type[Exception]) -> Exception:
    before = snapshot(queue)
    with pytest.raises(error) as info:
        queue.create_job(job)
    job_id = getattr(getattr(job, "metadata", None), "id", None)
    if isinstance(job_id, str):
        assert queue.get_job(job_id) is None
    assert snapshot(queue) == before
    assert queue.poll_next_pending_job(timeout=0) is None
    return info.value


@attrs.frozen
class Article:
    title: str
    when: dt.datetime


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
def test_create_job_refuses_params_that_cannot_be_stored(
    queue: jw.MemoryQueue, params: Any
) -> None:
    error = assert_refused(queue, make_job(params=params), SerializationError)
    assert isinstance(error, InvalidJobError)


def test_create_job_refuses_a_lone_surrogate(queue: jw.MemoryQueue) -> None:
    # Not encodable as UTF-8: a durable backend cannot store it, so neither may this one.
    assert_refused(queue, make_job(params={"s": "\ud800"}), SerializationError)


def test_create_job_refuses_params_over_max_payload(clock: FakeClock) -> None:
    queue = jw.MemoryQueue(clock=clock, max_payload=100)
    # "é" is two bytes: the JSON text is 52 characters but 102 bytes.
    error = assert_refused(queue, make_job(params="é" * 50), PayloadTooLargeError)
    assert isinstance(error, PayloadTooLargeError)
    assert (error.size, error.limit) == (102, 100)
    stored = queue.create_job(make_job(params="é" * 49))  # exactly 100 bytes
    assert stored.params == "é" * 49


def test_create_job_refuses_an_unknown_type_with_a_strict_registry(clock: FakeClock) -> None:
    registry = JobTypeRegistry(strict=True)
    registry.register("known")
    queue = jw.MemoryQueue(clock=clock, registry=registry)
    error = assert_refused(queue, make_job(job_type="unknown"), UnknownJobTypeError)
    assert isinstance(error, InvalidJobError)
    queue.create_job(make_job("job-2", job_type="known"))
    assert queue.get_stats()["pending"] == 1


def test_create_job_accepts_unknown_types_with_a_lenient_registry(
    queue: jw.MemoryQueue,
) -> None:
    queue.create_job(make_job(job_type="anything"))
    assert queue.get_job("job-1") is not None


def test_create_job_with_registered_attrs_params(clock: FakeClock) -> None:
    registry = JobTypeRegistry()
    registry.register("generation", params=Article)
    queue = jw.MemoryQueue(clock=clock, registry=registry)
    article = Article(title="T", when=EPOCH)
    queue.create_job(make_job(params=article))
    stored = queue.get_job("job-1")
    assert stored is not None
    assert stored.params == article
    assert isinstance(stored.params, Article)
    assert claim(queue).params == article
    assert_refused(queue, make_job("job-2", params={"title": "T"}), SerializationError)


BAD_METADATA = [
    pytest.param({"id": ""}, id="empty-id"),
    pytest.param({"retry_count": -1}, id="negative-retry-count"),
    pytest.param({"max_retries": -1}, id="negative-max-retries"),
    pytest.param({"retry_count": 4, "max_retries": 3}, id="retry-count-over-max"),
    pytest.param({"retry_count": True}, id="bool-retry-count"),
    pytest.param({"created": NAIVE}, id="naive-created"),
    pytest.param({"run_after": NAIVE}, id="naive-run-after"),
    pytest.param({"type": 5}, id="int-type"),
    pytest.param({"priority": "high"}, id="str-priority"),
]


def _metadata(**overrides: Any) -> m.JobMetadata:
    fields: dict[str, Any] = {
        "id": "job-1",
        "type": "generation",
        "user_id": "u",
        "created": EPOCH,
    }
    fields.update(overrides)
    return m.JobMetadata(**fields)


@pytest.mark.parametrize("overrides", BAD_METADATA)
def test_create_job_refuses_invalid_metadata(
    queue: jw.MemoryQueue, overrides: dict[str, Any]
) -> None:
    with pytest.raises(InvalidJobError):
        _metadata(**overrides)
    with attrs.validators.disabled():
        meta = _metadata(**overrides)
    assert_refused(queue, m.PendingJob(metadata=meta, params={}), InvalidJobError)


@pytest.mark.parametrize("status", ["running", "complete", "failed", "cancelled"])
def test_create_job_refuses_a_job_that_is_not_pending(
    queue: jw.MemoryQueue, clock: FakeClock, status: str
) -> None:
    running = m.start(make_job(), claim=m.new_claim("w"), now=clock.now())
    job = {
        "running": running,
        "complete": m.complete(running, 1, now=clock.now()),
        "failed": m.fail(running, "E: x", now=clock.now()),
        "cancelled": m.cancel(running, now=clock.now()),
    }[status]
    assert_refused(queue, job, InvalidJobError)


@pytest.mark.parametrize("value", [None, {"metadata": {}, "params": {}}, "job-1"])
def test_create_job_refuses_a_value_that_is_not_a_job(queue: jw.MemoryQueue, value: Any) -> None:
    assert_refused(queue, value, InvalidJobError)


def test_create_job_refuses_a_duplicate_id(queue: jw.MemoryQueue) -> None:
    first = queue.create_job(make_job(params={"v": 1}))
    before = snapshot(queue)
    with pytest.raises(DuplicateJobError) as info:
        queue.create_job(make_job(params={"v": 2}, priority=9))
    assert info.value.job_id == "job-1"
    assert queue.get_job("job-1") == first
    assert snapshot(queue) == before


def test_an_id_stays_taken_after_the_job_ran(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    queue.update_job(m.complete(running, 1, now=clock.now()), "running", claim=running.claim)
    done = queue.get_job("job-1")
    with pytest.raises(DuplicateJobError):
        queue.create_job(make_job())
    assert queue.get_job("job-1") == done


# -- stored values are copies ------------------------------------------------------------


def test_params_are_stored_as_a_copy(queue: jw.MemoryQueue) -> None:
    params = {"title": "T", "tags": ["a"]}
    queue.create_job(make_job(params=params))
    params["title"] = "changed"
    params["tags"].append("b")
    stored = queue.get_job("job-1")
    assert stored is not None
    assert stored.params == {"title": "T", "tags": ["a"]}


def test_params_are_stored_as_json_returns_them(queue: jw.MemoryQueue) -> None:
    returned = queue.create_job(make_job(params={"pair": (1, 2)}))
    stored = queue.get_job("job-1")
    assert stored is not None
    assert stored.params == {"pair": [1, 2]}
    assert returned == stored


def test_progress_and_result_are_stored_as_copies(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    progress = {"done": [1]}
    queue.update_job(attrs.evolve(running, progress=progress))
    progress["done"].append(2)
    stored = queue.get_job("job-1")
    assert isinstance(stored, m.RunningJob)
    assert stored.progress == {"done": [1]}
    result = {"pair": (1, 2)}
    queue.update_job(m.complete(running, result, now=clock.now()), "running", claim=running.claim)
    result["extra"] = True  # type: ignore[assignment]
    stored = queue.get_job("job-1")
    assert isinstance(stored, m.CompleteJob)
    assert stored.result == {"pair": [1, 2]}


def test_jobs_handed_out_do_not_share_values_with_the_store(queue: jw.MemoryQueue) -> None:
    # A durable backend hands out fresh values; mutating one must not rewrite the job.
    returned = queue.create_job(make_job(params={"tags": ["a"]}))
    returned.params["tags"].append("from-create")
    fetched = queue.get_job("job-1")
    assert fetched is not None
    fetched.params["tags"].append("from-get")
    running = claim(queue)
    running.params["tags"].append("from-poll")
    stored = queue.get_job("job-1")
    assert stored is not None
    assert stored.params == {"tags": ["a"]}


# -- update_job: compare-and-set --------------------------------------------------------------


def _to_status(queue: jw.MemoryQueue, clock: FakeClock, status: str) -> m.RunningJob[Any, Any]:
    """Store job-1 in *status*; return the running job it is (or would be) claimed as."""
    queue.create_job(make_job())
    if status == "pending":
        pending = queue.get_job("job-1")
        assert isinstance(pending, m.PendingJob)
        return m.start(pending, claim=m.new_claim("nobody"), now=clock.now())
    running = claim(queue)
    now = clock.now()
    if status == "complete":
        queue.update_job(m.complete(running, {"r": 1}, now=now), "running", claim=running.claim)
    elif status == "failed":
        queue.update_job(m.fail(running, "E: x", now=now), "running", claim=running.claim)
    elif status == "cancelled":
        assert queue.cancel_job("job-1")
    assert status_of(queue, "job-1") == status
    return running


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
    queue: jw.MemoryQueue, clock: FakeClock, old: str, new: str
) -> None:
    base = _to_status(queue, clock, old)
    clock.advance(1)
    submitted = _submitted(base, new, clock.now())
    before = snapshot(queue)
    if (old, new) in UPDATE_ALLOWED:
        stored = queue.update_job(submitted, old, claim=base.claim)
        assert stored.status == new
        assert queue.get_job("job-1") == stored
        assert queue.get_stats()[new] == 1
        assert sum(queue.get_stats().values()) == 1
    else:
        with pytest.raises(InvalidTransitionError) as info:
            queue.update_job(submitted, old, claim=base.claim)
        assert (info.value.old_status, info.value.new_status) == (old, new)
        if (old, new) == ("pending", "running"):
            assert "poll_next_pending_job" in str(info.value)
        assert snapshot(queue) == before


def test_update_job_with_a_stale_old_status_changes_nothing(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = queue.get_job("job-1")
    stats = queue.get_stats()
    done = m.complete(running, {"r": 1}, now=clock.now())
    for old_status in ("pending", "complete", "failed", "cancelled"):
        with pytest.raises(StaleJobError) as info:
            queue.update_job(done, old_status, claim=running.claim)
        assert (info.value.expected, info.value.actual) == (old_status, "running")
        assert queue.get_job("job-1") == before
        assert queue.get_stats() == stats


def test_update_job_defaults_old_status_to_the_submitted_status(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = queue.get_job("job-1")
    with pytest.raises(StaleJobError):
        queue.update_job(m.complete(running, 1, now=clock.now()), claim=running.claim)
    assert queue.get_job("job-1") == before


def test_only_one_of_two_writers_wins(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    queue.update_job(m.complete(running, "first", now=clock.now()), "running", claim=running.claim)
    winner = queue.get_job("job-1")
    with pytest.raises(StaleJobError):
        queue.update_job(
            m.fail(running, "E: late", now=clock.now()), "running", claim=running.claim
        )
    assert queue.get_job("job-1") == winner


def test_update_job_of_an_unknown_id_raises(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    running = m.start(make_job("ghost"), claim=m.new_claim("w"), now=clock.now())
    with pytest.raises(JobNotFoundError) as info:
        queue.update_job(attrs.evolve(running, progress=1))
    assert info.value.job_id == "ghost"
    assert isinstance(info.value, LookupError)


def test_update_job_with_a_wrong_claim_raises_lease_lost(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = snapshot(queue)
    other = m.new_claim(running.claim.worker)
    with pytest.raises(LeaseLostError):
        queue.update_job(m.complete(running, 1, now=clock.now()), "running", claim=other)
    with pytest.raises(LeaseLostError):
        queue.update_job(attrs.evolve(running, claim=other, progress=5))
    with pytest.raises(LeaseLostError):
        queue.update_job(m.cancel(running, now=clock.now()), "running", claim=other)
    assert snapshot(queue) == before


def test_a_write_to_a_running_job_must_carry_its_claim(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    before = snapshot(queue)
    with pytest.raises(InvalidJobError, match="claim"):
        queue.update_job(m.complete(running, 1, now=clock.now()), "running")
    assert snapshot(queue) == before


def test_progress_updates_take_only_progress(queue: jw.MemoryQueue, clock: FakeClock) -> None:
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
    stored = queue.update_job(tampered)
    assert stored == attrs.evolve(running, progress={"pct": 50})
    assert queue.get_job("job-1") == stored


def test_a_refused_progress_value_changes_nothing(clock: FakeClock) -> None:
    queue = jw.MemoryQueue(clock=clock, max_payload=100)
    queue.create_job(make_job())
    running = claim(queue)
    before = snapshot(queue)
    with pytest.raises(PayloadTooLargeError):
        queue.update_job(attrs.evolve(running, progress="é" * 60))
    with pytest.raises(SerializationError):
        queue.update_job(attrs.evolve(running, progress={1, 2}))
    with pytest.raises(SerializationError):
        queue.update_job(m.complete(running, float("nan"), now=clock.now()), claim=running.claim)
    assert snapshot(queue) == before


def test_a_retry_through_update_job_counts_from_the_stored_job(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job(max_retries=2))
    running = claim(queue)
    retry = m.fail_or_retry(running, "E: x", now=clock.now(), delay=30)
    stored = queue.update_job(retry, "running", claim=running.claim)
    assert isinstance(stored, m.PendingJob)
    assert stored.metadata.retry_count == 1
    assert stored.metadata.run_after == clock.now() + dt.timedelta(seconds=30)
    assert queue.poll_next_pending_job(timeout=0) is None
    clock.advance(30)
    again = claim(queue)
    assert again.metadata.id == "job-1"
    assert again.metadata.retry_count == 1


def test_a_retry_is_refused_when_none_is_left(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job(max_retries=0))
    running = claim(queue)
    before = snapshot(queue)
    # One more retry than the job has left (the constructor refuses a count over the max).
    meta = attrs.evolve(running.metadata, retry_count=1, max_retries=1)
    retry = m.PendingJob(metadata=meta, params=running.params)
    with pytest.raises(InvalidTransitionError, match="no retry left"):
        queue.update_job(retry, "running", claim=running.claim)
    assert snapshot(queue) == before


@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_released_job_goes_back_unrun(queue: jw.MemoryQueue, max_retries: int) -> None:
    queue.create_job(make_job(max_retries=max_retries))
    running = claim(queue)
    stored = queue.update_job(m.release(running), "running", claim=running.claim)
    assert isinstance(stored, m.PendingJob)
    assert stored.metadata == running.metadata
    assert queue.get_stats()["pending"] == 1
    assert queue.get_stats()["running"] == 0
    again = claim(queue)
    assert again.metadata.retry_count == 0
    assert again.claim.token != running.claim.token


# -- cancel_job ------------------------------------------------------------------------


def test_cancel_job_of_a_missing_job_is_false(queue: jw.MemoryQueue) -> None:
    assert queue.cancel_job("nope") is False
    assert queue.get_stats() == dict.fromkeys(m.STATUSES, 0)


def test_cancel_job_of_a_pending_job(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    clock.advance(3)
    assert queue.cancel_job("job-1") is True
    job = queue.get_job("job-1")
    assert isinstance(job, m.CancelledJob)
    assert job.started_at is None
    assert job.completed_at == clock.now()
    assert queue.poll_next_pending_job(timeout=0) is None
    assert queue.get_stats()["cancelled"] == 1
    assert queue.get_stats()["pending"] == 0


def test_cancel_job_of_a_running_job(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    clock.advance(3)
    assert queue.cancel_job("job-1") is True
    job = queue.get_job("job-1")
    assert isinstance(job, m.CancelledJob)
    assert job.started_at == running.started_at
    # The late result of the cancelled attempt does not resurrect the job.
    with pytest.raises(StaleJobError):
        queue.update_job(m.complete(running, 1, now=clock.now()), "running", claim=running.claim)
    assert queue.renew_lease(running) is False
    assert queue.get_job("job-1") == job
    assert queue.get_stats()["running"] == 0


@pytest.mark.parametrize("status", ["complete", "failed", "cancelled"])
def test_cancel_job_of_a_terminal_job_is_false(
    queue: jw.MemoryQueue, clock: FakeClock, status: str
) -> None:
    _to_status(queue, clock, status)
    before = snapshot(queue)
    assert queue.cancel_job("job-1") is False
    assert snapshot(queue) == before


# -- list_jobs -----------------------------------------------------------------------------


def _populate(queue: jw.MemoryQueue) -> list[str]:
    """Create six jobs a minute apart; return their ids, oldest first."""
    specs = [
        ("job-f", "x", "u1"),
        ("job-e", "y", "u2"),
        ("job-d", "x", "u2"),
        ("job-c", "y", "u1"),
        ("job-b", "x", "u1"),
        ("job-a", "y", "u2"),
    ]
    for minute, (job_id, job_type, user) in enumerate(specs):
        created = EPOCH + dt.timedelta(minutes=minute)
        queue.create_job(make_job(job_id, job_type, created=created, user_id=user))
    return [job_id for job_id, _, _ in specs]


def _ids(jobs: list[m.AnyJob]) -> list[str]:
    return [job.metadata.id for job in jobs]


def test_list_jobs_is_newest_first(queue: jw.MemoryQueue) -> None:
    oldest_first = _populate(queue)
    assert _ids(queue.list_jobs()) == oldest_first[::-1]


def test_list_jobs_filters(queue: jw.MemoryQueue) -> None:
    _populate(queue)
    claimed = claim(queue, types=["x"])  # the oldest x: job-f
    assert claimed.metadata.id == "job-f"
    assert _ids(queue.list_jobs(type="x")) == ["job-b", "job-d", "job-f"]
    assert _ids(queue.list_jobs(user_id="u1")) == ["job-b", "job-c", "job-f"]
    assert _ids(queue.list_jobs(status="running")) == ["job-f"]
    assert _ids(queue.list_jobs(status="pending", type="x")) == ["job-b", "job-d"]
    assert _ids(queue.list_jobs(status="pending", type="x", user_id="u2")) == ["job-d"]
    assert queue.list_jobs(status="complete") == []
    assert queue.list_jobs(user_id="nobody") == []


def test_list_jobs_limit_and_offset(queue: jw.MemoryQueue) -> None:
    newest_first = _populate(queue)[::-1]
    assert _ids(queue.list_jobs(limit=2)) == newest_first[:2]
    assert _ids(queue.list_jobs(limit=2, offset=1)) == newest_first[1:3]
    assert _ids(queue.list_jobs(offset=4)) == newest_first[4:]
    assert queue.list_jobs(offset=6) == []
    assert queue.list_jobs(limit=0) == []
    assert _ids(queue.list_jobs(type="y", limit=1, offset=1)) == ["job-c"]


def test_list_jobs_default_limit_is_100(queue: jw.MemoryQueue) -> None:
    for n in range(105):
        queue.create_job(make_job(f"job-{n:03}", created=EPOCH + dt.timedelta(seconds=n)))
    jobs = queue.list_jobs()
    assert len(jobs) == 100
    assert jobs[0].metadata.id == "job-104"


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
def test_list_jobs_refuses_bad_arguments(queue: jw.MemoryQueue, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        queue.list_jobs(**options)


# -- get_stats and cleanup_old_jobs ---------------------------------------------------------


def test_get_stats_counts_every_status(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    for n in range(6):
        queue.create_job(make_job(f"job-{n}", created=EPOCH + dt.timedelta(seconds=n)))
    first, second, third, fourth = (claim(queue) for _ in range(4))
    queue.update_job(m.complete(first, 1, now=clock.now()), "running", claim=first.claim)
    queue.update_job(m.fail(second, "E", now=clock.now()), "running", claim=second.claim)
    queue.cancel_job(third.metadata.id)
    queue.cancel_job("job-5")
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


def test_cleanup_old_jobs_removes_only_old_terminal_jobs(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    for n, job_id in enumerate(["complete", "failed", "cancelled", "pending", "running"]):
        queue.create_job(make_job(job_id, created=EPOCH + dt.timedelta(seconds=n)))
    first, second, third = (claim(queue) for _ in range(3))
    queue.update_job(m.complete(first, 1, now=clock.now()), "running", claim=first.claim)
    queue.update_job(m.fail(second, "E", now=clock.now()), "running", claim=second.claim)
    queue.cancel_job(third.metadata.id)
    claim(queue, predicate=lambda job: job.metadata.id == "running")

    clock.advance(23 * 3600)
    assert queue.cleanup_old_jobs(retention_hours=24) == 0
    assert len(queue.list_jobs()) == 5

    clock.advance(2 * 3600)
    queue.create_job(make_job("recent", created=clock.now()))
    recent = claim(queue, types=["generation"], predicate=lambda j: j.metadata.id == "recent")
    queue.update_job(m.complete(recent, 1, now=clock.now()), "running", claim=recent.claim)

    assert queue.cleanup_old_jobs(retention_hours=24) == 3
    for gone in ("complete", "failed", "cancelled"):
        assert queue.get_job(gone) is None
    assert sorted(_ids(queue.list_jobs())) == ["pending", "recent", "running"]
    stats = queue.get_stats()
    assert sum(stats.values()) == 3
    assert stats["complete"] == 1
    assert stats["failed"] == stats["cancelled"] == 0
    assert queue.cleanup_old_jobs(retention_hours=24) == 0

    clock.advance(60)
    assert queue.cleanup_old_jobs(retention_hours=0) == 1
    assert queue.get_job("recent") is None


def test_cleanup_old_jobs_refuses_a_negative_retention(queue: jw.MemoryQueue) -> None:
    with pytest.raises(ValueError):
        queue.cleanup_old_jobs(retention_hours=-1)


# -- poll order ----------------------------------------------------------------------------


def test_poll_takes_the_oldest_first_not_by_id(queue: jw.MemoryQueue) -> None:
    # Ids in reverse alphabetical order of creation time.
    for minute, job_id in enumerate(["job-c", "job-b", "job-a"]):
        queue.create_job(make_job(job_id, created=EPOCH + dt.timedelta(minutes=minute)))
    assert drain(queue) == ["job-c", "job-b", "job-a"]


def test_poll_breaks_ties_in_created_by_arrival_not_by_id(queue: jw.MemoryQueue) -> None:
    for job_id in ["job-z", "job-m", "job-a"]:
        queue.create_job(make_job(job_id))
    assert drain(queue) == ["job-z", "job-m", "job-a"]


def test_poll_takes_higher_priority_first(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job("old-low", created=EPOCH, priority=0))
    queue.create_job(make_job("new-high", created=EPOCH + dt.timedelta(hours=1), priority=5))
    queue.create_job(make_job("negative", created=EPOCH - dt.timedelta(hours=1), priority=-1))
    assert drain(queue) == ["new-high", "old-low", "negative"]


@given(
    specs=st.lists(
        st.tuples(st.integers(-2, 2), st.integers(0, 3), st.sampled_from(["a", "b", "c"])),
        min_size=1,
        max_size=25,
    ),
    data=st.data(),
    with_predicate=st.booleans(),
)
def test_claim_order_is_priority_then_created_then_arrival(
    specs: list[tuple[int, int, str]], data: st.DataObject, with_predicate: bool
) -> None:
    # Ids are a random permutation, unrelated to the order the jobs must come out in.
    ids = data.draw(st.permutations([f"job-{n:02}" for n in range(len(specs))]))
    keys = []
    with jw.MemoryQueue(clock=FakeClock(EPOCH)) as queue:
        for arrival, ((priority, minute, job_type), job_id) in enumerate(
            zip(specs, ids, strict=True)
        ):
            created = EPOCH - dt.timedelta(minutes=minute)
            queue.create_job(make_job(job_id, job_type, created=created, priority=priority))
            keys.append((-priority, created, arrival, job_id))
        expected = [key[-1] for key in sorted(keys)]
        predicate = (lambda job: True) if with_predicate else None
        assert drain(queue, predicate=predicate) == expected
        assert queue.get_stats()["running"] == len(specs)


def test_poll_with_timeout_zero_on_an_empty_queue_is_none(queue: jw.MemoryQueue) -> None:
    assert queue.poll_next_pending_job(timeout=0) is None
    assert queue.poll_next_pending_job(timeout=0, types=["x"]) is None
    assert poll_now(queue, predicate=lambda job: True) is None


def test_poll_refuses_a_negative_timeout(queue: jw.MemoryQueue) -> None:
    with pytest.raises(ValueError):
        queue.poll_next_pending_job(timeout=-1)


def test_poll_returns_a_running_job(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    pending = queue.create_job(make_job())
    clock.advance(7)
    running = claim(queue, worker="w-1")
    assert isinstance(running, m.RunningJob)
    assert running.metadata == pending.metadata
    assert running.params == pending.params
    assert running.started_at == clock.now()
    assert running.claim.worker == "w-1"
    assert queue.get_job("job-1") == running
    assert queue.get_stats()["running"] == 1
    assert queue.poll_next_pending_job(timeout=0) is None


# -- run_after, types, predicates ---------------------------------------------------------------


def test_a_job_is_not_claimed_before_run_after(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job(run_after=clock.now() + dt.timedelta(seconds=60)))
    assert queue.poll_next_pending_job(timeout=0) is None
    clock.advance(59)
    assert queue.poll_next_pending_job(timeout=0) is None
    assert status_of(queue, "job-1") == "pending"
    clock.advance(1)
    assert claim(queue).metadata.id == "job-1"


def test_a_past_run_after_is_due_at_once(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job(run_after=clock.now() - dt.timedelta(seconds=1)))
    assert claim(queue).metadata.id == "job-1"


def test_a_scheduled_job_does_not_block_ready_ones(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    later = clock.now() + dt.timedelta(seconds=10)
    queue.create_job(make_job("scheduled", priority=9, created=EPOCH, run_after=later))
    queue.create_job(make_job("ready", created=EPOCH + dt.timedelta(seconds=1)))
    assert drain(queue) == ["ready"]
    clock.advance(10)
    assert drain(queue) == ["scheduled"]


def test_due_jobs_are_ordered_by_priority_and_created_not_run_after(
    queue: jw.MemoryQueue, clock: FakeClock
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


def test_poll_takes_only_the_given_types(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job("a-1", "a", created=EPOCH))
    queue.create_job(make_job("b-1", "b", created=EPOCH + dt.timedelta(seconds=1)))
    assert queue.poll_next_pending_job(timeout=0, types=["c"]) is None
    assert queue.poll_next_pending_job(timeout=0, types=[]) is None
    assert claim(queue, types=["b"]).metadata.id == "b-1"
    assert queue.poll_next_pending_job(timeout=0, types={"b"}) is None
    assert claim(queue, types=("b", "a")).metadata.id == "a-1"


def test_poll_without_types_takes_the_best_of_all_types(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job("b-1", "b", created=EPOCH + dt.timedelta(seconds=1)))
    queue.create_job(make_job("a-1", "a", created=EPOCH))
    queue.create_job(make_job("c-1", "c", created=EPOCH + dt.timedelta(seconds=2), priority=1))
    assert drain(queue) == ["c-1", "a-1", "b-1"]


def test_a_predicate_that_rejects_the_head_still_gets_a_later_job(
    queue: jw.MemoryQueue,
) -> None:
    for n in range(3):
        queue.create_job(make_job(f"job-{n}", created=EPOCH + dt.timedelta(seconds=n)))
    seen: list[str] = []

    def not_the_head(job: m.PendingJob[Any]) -> bool:
        assert isinstance(job, m.PendingJob)
        seen.append(job.metadata.id)
        return job.metadata.id != "job-0"

    running = claim(queue, predicate=not_the_head)
    assert running.metadata.id == "job-1"
    assert "job-0" in seen
    assert status_of(queue, "job-0") == "pending"
    assert status_of(queue, "job-2") == "pending"


def test_a_predicate_that_rejects_everything_claims_nothing(queue: jw.MemoryQueue) -> None:
    for n in range(3):
        queue.create_job(make_job(f"job-{n}", created=EPOCH + dt.timedelta(seconds=n)))
    before = snapshot(queue)
    assert poll_now(queue, predicate=lambda job: False) is None
    assert snapshot(queue) == before


def test_a_predicate_combines_with_types(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job("a-0", "a", created=EPOCH))
    queue.create_job(make_job("b-0", "b", created=EPOCH + dt.timedelta(seconds=1)))
    queue.create_job(make_job("b-1", "b", created=EPOCH + dt.timedelta(seconds=2)))
    running = claim(queue, types=["b"], predicate=lambda job: job.metadata.id != "b-0")
    assert running.metadata.id == "b-1"


def test_a_predicate_sees_params(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job("small", params={"size": 1}, created=EPOCH))
    queue.create_job(make_job("big", params={"size": 100}, created=EPOCH))
    assert claim(queue, predicate=lambda job: job.params["size"] > 10).metadata.id == "big"


# -- leases ----------------------------------------------------------------------------------


def test_renew_lease_keeps_a_live_job(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    step = queue.lease_duration * 2 / 3
    clock.advance(step)
    assert queue.renew_lease(running) is True
    clock.advance(step)  # past the first lease, inside the renewed one
    assert queue.renew_lease(running) is True
    clock.advance(step)
    assert queue.poll_next_pending_job(timeout=0) is None
    assert queue.get_job("job-1") == running


def test_an_expired_lease_is_recovered_as_a_failed_attempt(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job(max_retries=3))
    old = claim(queue, worker="doomed")
    clock.advance(queue.lease_duration + 1)
    assert queue.poll_next_pending_job(timeout=0) is None  # recovered, backing off
    recovered = queue.get_job("job-1")
    assert isinstance(recovered, m.PendingJob)
    assert recovered.metadata.retry_count == 1
    backoff = dt.timedelta(seconds=queue.retry_policy.delay(0))
    assert recovered.metadata.run_after == clock.now() + backoff
    assert queue.get_stats()["running"] == 0
    assert queue.get_stats()["pending"] == 1

    # The old holder has lost the job: it cannot renew or write.
    assert queue.renew_lease(old) is False
    before = snapshot(queue)
    with pytest.raises(StaleJobError):
        queue.update_job(m.complete(old, "late", now=clock.now()), "running", claim=old.claim)
    with pytest.raises(StaleJobError):
        queue.update_job(attrs.evolve(old, progress=99))
    assert snapshot(queue) == before

    # Once re-claimed, the old claim is fenced off from the new attempt.
    clock.advance(backoff.total_seconds())
    new = claim(queue, worker="fresh")
    assert new.metadata.id == "job-1"
    assert new.metadata.retry_count == 1
    assert new.claim.token != old.claim.token
    before = snapshot(queue)
    with pytest.raises(LeaseLostError):
        queue.update_job(m.complete(old, "late", now=clock.now()), "running", claim=old.claim)
    with pytest.raises(LeaseLostError):
        queue.update_job(attrs.evolve(old, progress=99))
    assert queue.renew_lease(old) is False
    assert snapshot(queue) == before
    assert queue.renew_lease(new) is True
    queue.update_job(m.complete(new, "ok", now=clock.now()), "running", claim=new.claim)
    done = queue.get_job("job-1")
    assert isinstance(done, m.CompleteJob)
    assert done.result == "ok"


def test_a_late_write_right_after_expiry_is_refused(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job())
    old = claim(queue)
    clock.advance(queue.lease_duration + 1)
    # No poll in between: the write itself must find the lease gone.
    with pytest.raises(StaleJobError):
        queue.update_job(m.complete(old, "late", now=clock.now()), "running", claim=old.claim)
    job = queue.get_job("job-1")
    assert isinstance(job, m.PendingJob)
    assert job.metadata.retry_count == 1


def test_renew_after_expiry_is_refused(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    old = claim(queue)
    clock.advance(queue.lease_duration + 1)
    assert queue.renew_lease(old) is False
    assert status_of(queue, "job-1") == "pending"


def test_an_expired_lease_with_no_retry_left_fails_the_job(
    queue: jw.MemoryQueue, clock: FakeClock
) -> None:
    queue.create_job(make_job(max_retries=0))
    old = claim(queue)
    clock.advance(queue.lease_duration + 1)
    assert queue.poll_next_pending_job(timeout=0) is None
    job = queue.get_job("job-1")
    assert isinstance(job, m.FailedJob)
    assert job.error == m.WORKER_LOST
    assert job.started_at == old.started_at
    assert job.completed_at == clock.now()
    assert queue.get_stats()["failed"] == 1
    assert queue.wait_for_job("job-1", timeout=0) == job
    with pytest.raises(StaleJobError):
        queue.update_job(m.complete(old, "late", now=clock.now()), "running", claim=old.claim)


def test_a_killed_worker_s_job_runs_again_within_a_minute(clock: FakeClock) -> None:
    queue = jw.MemoryQueue(clock=clock)  # default lease and retry policy
    queue.create_job(make_job())
    old = claim(queue)
    waited = 0.0
    again = None
    while again is None and waited < 60:
        clock.advance(1)
        waited += 1
        again = queue.poll_next_pending_job(timeout=0)
    assert again is not None
    assert again.metadata.id == "job-1"
    assert again.claim != old.claim
    assert again.metadata.retry_count == 1


def test_with_immediate_retries_one_poll_recovers_and_claims(clock: FakeClock) -> None:
    queue = jw.MemoryQueue(clock=clock, retry_policy=RetryPolicy.immediate(), lease_duration=5)
    queue.create_job(make_job())
    old = claim(queue)
    clock.advance(6)
    again = claim(queue)
    assert again.metadata.id == "job-1"
    assert again.metadata.retry_count == 1
    assert again.claim.token != old.claim.token


def test_lease_duration_and_max_payload_are_validated() -> None:
    for options in ({"lease_duration": 0}, {"lease_duration": -1}, {"max_payload": 0}):
        with pytest.raises(ValueError):
            jw.MemoryQueue(**options)


# -- wait_for_job ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["complete", "failed", "cancelled"])
def test_wait_for_job_returns_a_terminal_job(
    queue: jw.MemoryQueue, clock: FakeClock, status: str
) -> None:
    _to_status(queue, clock, status)
    job = queue.wait_for_job("job-1", timeout=0)
    assert job.status == status
    assert job == queue.get_job("job-1")


@pytest.mark.parametrize("status", ["pending", "running"])
def test_wait_for_job_times_out_on_a_live_job(
    queue: jw.MemoryQueue, clock: FakeClock, status: str
) -> None:
    _to_status(queue, clock, status)
    before = queue.get_job("job-1")
    with pytest.raises(WaitTimeoutError) as info:
        queue.wait_for_job("job-1", timeout=0)
    assert info.value.job_id == "job-1"
    assert queue.get_job("job-1") == before


def test_wait_for_job_of_an_unknown_id_raises(queue: jw.MemoryQueue) -> None:
    with pytest.raises(JobNotFoundError):
        queue.wait_for_job("nope", timeout=0)
    with pytest.raises(JobNotFoundError):
        queue.wait_for_job("nope", timeout=None)


def test_wait_for_job_refuses_a_negative_timeout(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job())
    with pytest.raises(ValueError):
        queue.wait_for_job("job-1", timeout=-1)


def test_wait_for_job_wakes_when_the_job_ends(queue: jw.MemoryQueue, clock: FakeClock) -> None:
    queue.create_job(make_job())
    running = claim(queue)
    waiter = Background(lambda: queue.wait_for_job("job-1", timeout=None))
    queue.update_job(m.complete(running, "done", now=clock.now()), "running", claim=running.claim)
    waiter.join()
    assert waiter.error is None
    assert waiter.result.result == "done"


def test_wait_for_job_wakes_when_the_job_is_cancelled(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job())
    waiter = Background(lambda: queue.wait_for_job("job-1", timeout=None))
    assert queue.cancel_job("job-1")
    waiter.join()
    assert waiter.error is None
    assert waiter.result.status == "cancelled"


# -- blocking polls ------------------------------------------------------------------------


def test_a_blocked_poll_is_woken_by_a_matching_job() -> None:
    clock = ReportingClock()
    queue = jw.MemoryQueue(clock=clock)
    try:
        poller = Background(lambda: queue.poll_next_pending_job(types=["a"], timeout=None))
        assert clock.read_elsewhere.wait(JOIN)
        queue.create_job(make_job("b-1", "b"))
        queue.create_job(make_job("a-1", "a"))
        poller.join()
        assert poller.error is None
        assert poller.result.metadata.id == "a-1"
        assert status_of(queue, "b-1") == "pending"
    finally:
        queue.close()


def test_a_blocked_poll_returns_none_on_wake_with_its_stop_event_set() -> None:
    clock = ReportingClock()
    queue = jw.MemoryQueue(clock=clock)
    stop = threading.Event()
    try:
        poller = Background(lambda: queue.poll_next_pending_job(timeout=None, stop_event=stop))
        assert clock.read_elsewhere.wait(JOIN)
        stop.set()
        queue.wake()
        poller.join()
        assert poller.error is None
        assert poller.result is None
    finally:
        queue.close()


def test_wake_without_the_stop_event_keeps_the_poll_waiting_for_work() -> None:
    clock = ReportingClock()
    queue = jw.MemoryQueue(clock=clock)
    stop = threading.Event()
    try:
        poller = Background(lambda: queue.poll_next_pending_job(timeout=None, stop_event=stop))
        assert clock.read_elsewhere.wait(JOIN)
        queue.wake()  # stop is not set: the poll goes back to sleep
        queue.create_job(make_job())
        poller.join()
        assert poller.result is not None
        assert poller.result.metadata.id == "job-1"
    finally:
        queue.close()


def test_a_set_stop_event_returns_none_without_claiming(queue: jw.MemoryQueue) -> None:
    queue.create_job(make_job())
    stop = threading.Event()
    stop.set()
    assert queue.poll_next_pending_job(timeout=None, stop_event=stop) is None
    assert status_of(queue, "job-1") == "pending"


def test_close_wakes_a_blocked_poll() -> None:
    clock = ReportingClock()
    queue = jw.MemoryQueue(clock=clock)
    poller = Background(lambda: queue.poll_next_pending_job(timeout=None))
    assert clock.read_elsewhere.wait(JOIN)
    queue.close()
    poller.join()
    assert isinstance(poller.error, QueueClosedError)


def test_close_wakes_a_blocked_wait_for_job(clock: FakeClock) -> None:
    queue = jw.MemoryQueue(clock=clock)
    queue.create_job(make_job())
    waiter = Background(lambda: queue.wait_for_job("job-1", timeout=None))
    queue.close()
    waiter.join()
    assert isinstance(waiter.error, QueueClosedError)


def test_concurrent_polls_claim_each_job_exactly_once(queue: jw.MemoryQueue) -> None:
    count = 300
    for n in range(count):
        queue.create_job(make_job(f"job-{n:03}", created=EPOCH + dt.timedelta(seconds=n)))
    claimed: list[list[str]] = [[] for _ in range(6)]

    def work(mine: list[str], use_predicate: bool) -> None:
        predicate = (lambda job: True) if use_predicate else None
        while (job := queue.poll_next_pending_job(timeout=0, predicate=predicate)) is not None:
            mine.append(job.metadata.id)

    # Half the pollers take the predicate path, half the indexed one.
    workers = [
        Background(functools.partial(work, mine, n % 2 == 0)) for n, mine in enumerate(claimed)
    ]
    for worker in workers:
        worker.join()
        assert worker.error is None
    every = [job_id for mine in claimed for job_id in mine]
    assert len(every) == count
    assert set(every) == {f"job-{n:03}" for n in range(count)}
    assert queue.get_stats()["running"] == count


# -- a closed queue ----------------------------------------------------------------------------

CLOSED_CALLS: dict[str, Callable[[jw.MemoryQueue, m.RunningJob[Any, Any]], Any]] = {
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
def test_a_closed_queue_refuses_every_call(queue: jw.MemoryQueue, name: str) -> None:
    queue.create_job(make_job("job-1"))
    queue.create_job(make_job("job-2"))
    running = claim(queue)
    queue.close()
    with pytest.raises(QueueClosedError):
        CLOSED_CALLS[name](queue, running)


def test_close_is_idempotent_and_the_queue_is_a_context_manager(clock: FakeClock) -> None:
    with jw.MemoryQueue(clock=clock) as queue:
        queue.create_job(make_job())
    with pytest.raises(QueueClosedError):
        queue.get_stats()
    queue.close()
    queue.wake()
    with pytest.raises(RuntimeError):
        queue.get_job("job-1")
