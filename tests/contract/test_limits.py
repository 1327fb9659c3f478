"""Pauses, concurrency limits and rate limits, on every backend.

The same declarations give the same claims on every backend: a paused type
is never claimed, running jobs of a limited type (or key) never exceed the
limit, a rate window never admits more starts than its rate, and none of
them holds back the jobs of other types or keys.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import attrs
import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.testing import FakeClock
from jobworker.throttling import TypeLimits

from .conftest import EPOCH, MakeQueue
from .test_contract import JOIN, Background, claim, drain, make_job, poll_now, stored

SECOND = dt.timedelta(seconds=1)


def limited(make_queue: MakeQueue, **limits: dict[str, Any]) -> jw.JobQueue:
    registry = jw.JobTypeRegistry()
    for job_type, options in limits.items():
        registry.set_limits(job_type, **options)
    return make_queue(registry=registry)


def jobs(queue: jw.JobQueue, job_type: str, count: int, start: int = 0, **params: Any) -> None:
    for n in range(start, start + count):
        queue.create_job(
            make_job(f"{job_type}-{n}", job_type, created=EPOCH + n * SECOND, params=params)
        )


def complete(queue: jw.JobQueue, job: m.RunningJob[Any, Any]) -> None:
    queue.update_job(m.complete(job, None, now=job.started_at), "running", claim=job.claim)


# -- pause ---------------------------------------------------------------------------------


def test_a_paused_type_is_not_claimed_and_resumes_in_its_place(queue: jw.JobQueue) -> None:
    jobs(queue, "a", 2)
    jobs(queue, "b", 2, start=5)
    assert queue.pause_type("a") is True
    assert queue.pause_type("a") is False
    assert queue.paused_types() == {"a"}
    # Every way of polling leaves it out: any type, its type named, a predicate.
    assert poll_now(queue, types=["a"]) is None
    assert poll_now(queue, predicate=lambda job: job.metadata.type == "a") is None
    assert drain(queue) == ["b-5", "b-6"]
    assert [job.status for job in queue.list_jobs(type="a")] == ["pending", "pending"]
    assert queue.resume_type("a") is True
    assert queue.resume_type("a") is False
    assert queue.paused_types() == frozenset()
    assert drain(queue, types=["a"]) == ["a-0", "a-1"]


def test_a_paused_types_running_job_finishes(queue: jw.JobQueue) -> None:
    jobs(queue, "a", 2)
    running = claim(queue)
    queue.pause_type("a")
    complete(queue, running)
    assert stored(queue, running.metadata.id).status == "complete"
    assert poll_now(queue) is None


def test_pausing_a_type_without_jobs_holds_for_jobs_created_later(queue: jw.JobQueue) -> None:
    queue.pause_type("later")
    jobs(queue, "later", 1)
    assert poll_now(queue) is None


def test_resume_wakes_a_sleeping_poll(queue: jw.JobQueue) -> None:
    jobs(queue, "a", 1)
    queue.pause_type("a")
    began = time.monotonic()
    poll = Background(lambda: queue.poll_next_pending_job(types=["a"], timeout=JOIN))
    assert queue.resume_type("a")
    poll.join()
    assert poll.result is not None and poll.result.metadata.id == "a-0"
    assert time.monotonic() - began < JOIN / 2


@pytest.mark.parametrize("bad", ["", "a\x00b", "x" * 300, 5, None])
def test_a_bad_type_name_is_refused_and_nothing_changes(queue: jw.JobQueue, bad: Any) -> None:
    for call in (queue.pause_type, queue.resume_type):
        with pytest.raises(ValueError, match="job type"):
            call(bad)
    assert queue.paused_types() == frozenset()


# -- concurrency ------------------------------------------------------------------------------


def test_a_type_at_its_limit_waits_and_other_types_are_claimed(make_queue: MakeQueue) -> None:
    queue = limited(make_queue, export={"concurrency": 2})
    jobs(queue, "export", 4)
    jobs(queue, "mail", 2, start=10)
    first, second = claim(queue), claim(queue)
    assert {first.metadata.id, second.metadata.id} == {"export-0", "export-1"}
    # No head-of-line blocking: the older exports wait, the newer mails go.
    assert drain(queue) == ["mail-10", "mail-11"]
    assert poll_now(queue, types=["export"]) is None
    complete(queue, first)
    assert claim(queue).metadata.id == "export-2"
    assert poll_now(queue) is None
    # A failed attempt frees its slot too.
    queue.update_job(
        m.fail_or_retry(second, "boom", now=EPOCH, delay=0.0), "running", claim=second.claim
    )
    assert claim(queue).metadata.id in {"export-1", "export-3"}


def test_a_limit_per_key_holds_each_key_and_lets_other_keys_run(make_queue: MakeQueue) -> None:
    queue = limited(make_queue, sync={"concurrency": 1, "key": "account"})
    for n, account in enumerate(["a", "a", "b", 7, 7, None]):
        queue.create_job(
            make_job(f"sync-{n}", "sync", created=EPOCH + n * SECOND, params={"account": account})
        )
    queue.create_job(make_job("sync-missing", "sync", created=EPOCH + 9 * SECOND, params={}))
    taken = drain(queue)
    # One per key: a, b, 7, and the empty key (null and missing alike).
    assert taken == ["sync-0", "sync-2", "sync-3", "sync-5"]
    running = {job.metadata.id: job for job in queue.list_jobs(status="running")}
    complete(queue, running["sync-0"])  # type: ignore[arg-type]
    complete(queue, running["sync-5"])  # type: ignore[arg-type]
    assert drain(queue) == ["sync-1", "sync-missing"]


def test_a_lost_lease_frees_its_slot(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = limited(make_queue, export={"concurrency": 1})
    jobs(queue, "export", 2)
    lost = claim(queue)
    assert poll_now(queue) is None
    # The lease expires: the claim recovers the lost attempt (pending again,
    # after its retry delay), and its slot is free for the other export.
    clock.advance(queue.lease_duration)
    assert claim(queue).metadata.id == "export-1"
    recovered = stored(queue, lost.metadata.id)
    assert (recovered.status, recovered.metadata.retry_count) == ("pending", 1)
    clock.advance(5)  # past the retry delay, within the new lease
    assert poll_now(queue) is None  # still one at a time


def test_a_predicate_poll_keeps_the_limit(make_queue: MakeQueue) -> None:
    queue = limited(make_queue, export={"concurrency": 1})
    jobs(queue, "export", 3)
    claim(queue)
    assert poll_now(queue, predicate=lambda job: True) is None
    # A refused head then a walk: still at most one.
    assert poll_now(queue, predicate=lambda job: job.metadata.id != "export-1") is None
    assert len(queue.list_jobs(status="running")) == 1


def test_limits_set_after_the_queue_opened_apply_at_the_next_claim(queue: jw.JobQueue) -> None:
    jobs(queue, "export", 3)
    claim(queue)
    queue.registry.set_limits("export", concurrency=1)
    assert poll_now(queue) is None
    queue.registry.set_limits("export")  # cleared
    assert claim(queue).metadata.id == "export-1"


# -- rate ------------------------------------------------------------------------------------


def test_a_rate_admits_at_most_its_starts_in_any_window(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = limited(make_queue, api={"rate": 3, "period": 10.0})
    jobs(queue, "api", 8)
    jobs(queue, "other", 1, start=20)
    taken = [claim(queue).metadata.id for _ in range(3)]
    assert taken == ["api-0", "api-1", "api-2"]
    # The window is full: the other type still runs.
    assert drain(queue) == ["other-20"]
    clock.advance(9.999)
    assert poll_now(queue) is None
    clock.advance(0.001)
    # The window slides: the three starts of 10 s ago leave it together.
    assert drain(queue) == ["api-3", "api-4", "api-5"]
    clock.advance(5)
    assert poll_now(queue) is None
    clock.advance(5)
    assert drain(queue) == ["api-6", "api-7"]


def test_a_start_counts_in_the_window_even_when_the_job_ends_at_once(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = limited(make_queue, api={"rate": 1, "period": 1.0})
    jobs(queue, "api", 2)
    complete(queue, claim(queue))
    assert poll_now(queue) is None
    clock.advance(1)
    assert claim(queue).metadata.id == "api-1"


def test_a_poll_held_back_by_a_rate_wakes_when_the_window_opens(make_queue: MakeQueue) -> None:
    # The real clock: the poll sleeps until the window opens, then claims.
    registry = jw.JobTypeRegistry()
    registry.set_limits("api", rate=2, period=0.5)
    queue = make_queue(registry=registry, clock=jw.SystemClock())
    now = dt.datetime.now(dt.timezone.utc)
    for n in range(3):
        queue.create_job(
            make_job(f"api-{n}", "api", created=now + n * dt.timedelta(microseconds=1))
        )
    began = time.monotonic()
    assert claim(queue).metadata.id == "api-0"
    assert claim(queue).metadata.id == "api-1"
    third = queue.poll_next_pending_job(timeout=JOIN)
    waited = time.monotonic() - began
    assert third is not None and third.metadata.id == "api-2"
    # Not before the window opened, and not at the timeout: when it opened.
    assert 0.45 <= waited < 3.0


# -- declarations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"concurrency": 0}, "concurrency must be an int >= 1"),
        ({"concurrency": True}, "concurrency must be an int >= 1"),
        ({"rate": 10_001}, "rate must be at most"),
        ({"rate": 5, "period": 0}, "period must be"),
        ({"key": "account"}, "give concurrency too"),
        ({"concurrency": 1, "key": ""}, "key must be a params field"),
    ],
)
def test_bad_limits_are_refused_and_the_registry_keeps_what_it_had(
    options: dict[str, Any], match: str
) -> None:
    registry = jw.JobTypeRegistry()
    registry.set_limits("t", concurrency=3)
    with pytest.raises(ValueError, match=match):
        registry.set_limits("t", **options)
    assert registry.limits_of("t") == TypeLimits(concurrency=3)
    with pytest.raises(TypeError, match="not both"):
        registry.set_limits("t", TypeLimits(rate=1), rate=2)
    assert attrs.asdict(registry.limits_of("t")) == {  # type: ignore[arg-type]
        "concurrency": 3,
        "key": None,
        "rate": None,
        "period": 1.0,
    }


def test_concurrent_claims_never_exceed_the_limit(make_queue: MakeQueue) -> None:
    queue = limited(make_queue, export={"concurrency": 2})
    jobs(queue, "export", 30)
    jobs(queue, "mail", 30, start=100)
    claimed: list[m.RunningJob[Any, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def claimer() -> None:
        start.wait(JOIN)
        while (job := queue.poll_next_pending_job(timeout=0)) is not None:
            with lock:
                claimed.append(job)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    types = [job.metadata.type for job in claimed]
    assert types.count("export") == 2 and types.count("mail") == 30
    assert len(queue.list_jobs(status="running", type="export")) == 2
