"""Predicate polls off the happy path, on every backend.

A backend may claim the head before asking the predicate and hand it back
on a no (the memory queue and the SQL backends do): these tests pin what the
hand-back must keep, and the slower paths a poll takes once its predicate
has turned a job down (scanning types, paging, losing a claim race).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.testing import FakeClock

from .conftest import EPOCH, MakeQueue, ReportingClock
from .test_contract import JOIN, Background, claim, drain, make_job, poll_now, stored

SECOND = dt.timedelta(seconds=1)


def not_ids(*ids: str) -> Any:
    return lambda job: job.metadata.id not in ids


def test_a_turned_down_head_does_not_hide_a_better_job_that_arrived_out_of_order(
    queue: jw.JobQueue,
) -> None:
    # "c" arrives after "b" but outranks it: a backend that keeps arrivals in
    # order and out-of-order jobs apart must scan both once the head is refused.
    queue.create_job(make_job("a", created=EPOCH, priority=5))
    queue.create_job(make_job("b", created=EPOCH + SECOND, priority=0))
    queue.create_job(make_job("c", created=EPOCH + 2 * SECOND, priority=1))
    assert claim(queue, predicate=not_ids("a")).metadata.id == "c"
    assert drain(queue) == ["a", "b"]


@pytest.mark.parametrize("refused", [1, 3])
def test_turned_down_jobs_keep_their_place_among_equals(queue: jw.JobQueue, refused: int) -> None:
    # Same priority, same created: only arrival orders them.
    ids = [f"job-{n}" for n in range(6)]
    for job_id in ids:
        queue.create_job(make_job(job_id, created=EPOCH))
    taken = claim(queue, predicate=not_ids(*ids[:refused]))
    assert taken.metadata.id == ids[refused]
    assert drain(queue) == [job_id for job_id in ids if job_id != ids[refused]]


def test_a_refusal_of_one_types_best_does_not_skip_the_next_of_that_type(
    queue: jw.JobQueue,
) -> None:
    # In order a-0, b-0, b-1, a-1. Once a-0 and b-0 are refused the next best
    # is b-1, behind b-0 in its type, not a-1.
    queue.create_job(make_job("a-0", "a", created=EPOCH))
    queue.create_job(make_job("b-0", "b", created=EPOCH + SECOND))
    queue.create_job(make_job("b-1", "b", created=EPOCH + 2 * SECOND))
    queue.create_job(make_job("a-1", "a", created=EPOCH + 3 * SECOND))
    assert claim(queue, predicate=not_ids("a-0", "b-0")).metadata.id == "b-1"


def test_a_lost_race_for_one_types_best_does_not_skip_the_next_of_that_type(
    queue: jw.JobQueue,
) -> None:
    queue.create_job(make_job("a-0", "a", created=EPOCH))
    queue.create_job(make_job("b-0", "b", created=EPOCH + SECOND))
    queue.create_job(make_job("b-1", "b", created=EPOCH + 2 * SECOND))
    queue.create_job(make_job("a-1", "a", created=EPOCH + 3 * SECOND))
    rivals: list[m.RunningJob[Any, Any]] = []

    def race(job: m.PendingJob[Any]) -> bool:
        if job.metadata.id == "a-0":
            return False
        if job.metadata.id == "b-0" and not rivals:
            # Another poll takes b-0 between this judgement and the claim.
            rival = queue.poll_next_pending_job(timeout=0, types=["b"])
            assert rival is not None
            rivals.append(rival)
        return True

    assert claim(queue, predicate=race).metadata.id == "b-1"
    assert [rival.metadata.id for rival in rivals] == ["b-0"]


def test_a_job_cancelled_while_its_predicate_decides_stays_cancelled(
    queue: jw.JobQueue,
) -> None:
    queue.create_job(make_job("a", created=EPOCH))
    queue.create_job(make_job("b", created=EPOCH + SECOND))

    def cancel_and_refuse(job: m.PendingJob[Any]) -> bool:
        if job.metadata.id == "a":
            assert queue.cancel_job("a")
            return False
        return True

    assert claim(queue, predicate=cancel_and_refuse).metadata.id == "b"
    assert stored(queue, "a").status == "cancelled"
    assert poll_now(queue) is None


def test_a_job_re_claimed_while_its_predicate_decides_stays_with_its_new_holder(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(lease_duration=10.0, retry_policy=jw.RetryPolicy.immediate())
    queue.create_job(make_job("a", created=EPOCH))
    holders: list[m.RunningJob[Any, Any]] = []

    def lose_and_refuse(job: m.PendingJob[Any]) -> bool:
        if not holders:
            # The lease of the claim made for this predicate runs out; the job
            # is recovered and claimed again by another poll.
            clock.advance(3600)
            holder = queue.poll_next_pending_job(timeout=0)
            assert holder is not None
            holders.append(holder)
        return False

    assert poll_now(queue, predicate=lose_and_refuse) is None
    job = stored(queue, "a")
    assert isinstance(job, m.RunningJob)
    assert job.claim == holders[0].claim
    assert job.metadata.retry_count == 1


def test_a_predicate_scans_several_types_in_order(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("a-0", "a", created=EPOCH))
    queue.create_job(make_job("b-0", "b", created=EPOCH + SECOND))
    queue.create_job(make_job("a-1", "a", created=EPOCH + 2 * SECOND))
    queue.create_job(make_job("b-1", "b", created=EPOCH + 3 * SECOND))
    queue.create_job(make_job("c-0", "c", created=EPOCH + 4 * SECOND, priority=9))
    seen: list[str] = []

    def refuse_the_firsts(job: m.PendingJob[Any]) -> bool:
        seen.append(job.metadata.id)
        return job.metadata.id not in ("a-0", "b-0")

    taken = claim(queue, types=["b", "a", "unknown"], predicate=refuse_the_firsts)
    assert taken.metadata.id == "a-1"
    assert "c-0" not in seen
    assert drain(queue, types=["a", "b"]) == ["a-0", "b-0", "b-1"]


def test_a_predicate_with_only_unknown_types_gets_nothing(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("a-0", "a"))
    calls: list[str] = []
    assert poll_now(queue, types=["unknown"], predicate=lambda job: bool(calls.append("x"))) is None
    assert calls == []
    assert stored(queue, "a-0").status == "pending"


def test_a_predicate_pages_past_the_first_ready_jobs(queue: jw.JobQueue) -> None:
    # More ready jobs than one page of a SQL backend's scan (16), one type and two.
    ids = [f"job-{n:03}" for n in range(40)]
    for n, job_id in enumerate(ids):
        queue.create_job(make_job(job_id, "ab"[n % 2], created=EPOCH + n * SECOND))
    wanted = ids[-3]
    taken = claim(queue, predicate=lambda job: job.metadata.id == wanted)
    assert taken.metadata.id == wanted
    taken = claim(queue, types=["a", "b"], predicate=lambda job: job.metadata.id == ids[-1])
    assert taken.metadata.id == ids[-1]
    assert len(drain(queue)) == len(ids) - 2


def test_a_predicate_that_raises_leaves_the_job_pending(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("a", created=EPOCH))
    queue.create_job(make_job("b", created=EPOCH + SECOND))

    class Refusal(Exception):
        pass

    def explode(job: m.PendingJob[Any]) -> bool:
        raise Refusal(job.metadata.id)

    with pytest.raises(Refusal, match="a"):
        poll_now(queue, predicate=explode)
    assert stored(queue, "a").status == "pending"
    assert stored(queue, "a").metadata.retry_count == 0

    # Raising on a later job, once the head was refused, leaves both pending too.
    def refuse_then_explode(job: m.PendingJob[Any]) -> bool:
        if job.metadata.id == "a":
            return False
        raise Refusal(job.metadata.id)

    with pytest.raises(Refusal, match="b"):
        poll_now(queue, predicate=refuse_then_explode)
    assert drain(queue) == ["a", "b"]


def test_a_predicate_loses_a_claim_race_and_takes_the_next_job(queue: jw.JobQueue) -> None:
    queue.create_job(make_job("h", "a", created=EPOCH, priority=1))
    queue.create_job(make_job("x", "b", created=EPOCH + SECOND))
    queue.create_job(make_job("y", "b", created=EPOCH + 2 * SECOND))
    rivals: list[m.RunningJob[Any, Any]] = []

    def race(job: m.PendingJob[Any]) -> bool:
        if job.metadata.id == "h":
            return False
        if job.metadata.id == "x" and not rivals:
            # Another poll claims "x" between this judgement and the claim.
            rival = queue.poll_next_pending_job(timeout=0, types=["b"])
            assert rival is not None
            rivals.append(rival)
        return True

    assert claim(queue, predicate=race).metadata.id == "y"
    assert rivals[0].metadata.id == "x"
    assert stored(queue, "x").claim == rivals[0].claim  # type: ignore[union-attr]
    assert drain(queue) == ["h"]


@pytest.mark.parametrize("refused_before", [False, True], ids=["first-refusal", "later-refusal"])
def test_a_refused_job_wakes_another_sleeping_poll(
    make_queue: MakeQueue, refused_before: bool
) -> None:
    clock = ReportingClock()
    queue = make_queue(clock=clock)
    if refused_before:
        # The picky poll refuses this one first, so it judges the next job
        # before claiming it: a refusal then claims nothing and hands nothing back.
        queue.create_job(make_job("old", "a"))
    stop = threading.Event()

    picky = Background(
        lambda: queue.poll_next_pending_job(
            timeout=None, predicate=lambda job: False, stop_event=stop
        )
    )
    assert clock.read_elsewhere.wait(JOIN)
    clock.read_elsewhere.clear()
    taker = Background(
        lambda: queue.poll_next_pending_job(types=["b"], timeout=None, stop_event=stop)
    )
    assert clock.read_elsewhere.wait(JOIN)
    # Both polls are asleep, the picky one first in line for a wake-up.
    queue.create_job(make_job("new", "b"))
    taker.join()
    assert taker.error is None
    assert taker.result is not None and taker.result.metadata.id == "new"
    stop.set()
    queue.wake()
    picky.join()
    assert picky.error is None and picky.result is None


@pytest.mark.parametrize("how", ["released", "retried", "recovered"])
def test_a_job_back_in_pending_keeps_its_place_among_equals(
    make_queue: MakeQueue, clock: FakeClock, how: str
) -> None:
    # The same place a predicate's hand-back keeps: the third key of the order
    # (after priority and created) is when the job was stored, on every backend.
    queue = make_queue(lease_duration=10.0, retry_policy=jw.RetryPolicy.immediate())
    for job_id in "abc":
        queue.create_job(make_job(job_id, created=EPOCH))
    running = claim(queue)
    assert running.metadata.id == "a"
    if how == "released":
        queue.update_job(m.release(running), "running", claim=running.claim)
    elif how == "retried":
        retry = m.fail_or_retry(running, "boom", now=clock.now(), delay=0)
        queue.update_job(retry, "running", claim=running.claim)
    else:
        clock.advance(3600)
    assert drain(queue) == ["a", "b", "c"]


def test_scheduled_equals_are_taken_in_the_order_they_were_stored(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    later, sooner = clock.now() + 10 * SECOND, clock.now() + 5 * SECOND
    queue.create_job(make_job("first", created=EPOCH, run_after=later))
    queue.create_job(make_job("second", created=EPOCH, run_after=sooner))
    clock.advance(5)
    assert queue.get_stats()["pending"] == 2
    clock.advance(5)
    assert drain(queue) == ["first", "second"]


def test_a_poll_asks_its_predicate_once_about_each_job(queue: jw.JobQueue) -> None:
    # A predicate may count what it is shown (capacity, rate limits): a poll
    # asks it once about each ready job, not again after a refusal.
    for n in range(5):
        queue.create_job(make_job(f"job-{n}", "ab"[n % 2], created=EPOCH + n * SECOND))
    asked: list[str] = []

    def only_the_last(job: m.PendingJob[Any]) -> bool:
        asked.append(job.metadata.id)
        return job.metadata.id == "job-4"

    assert claim(queue, predicate=only_the_last).metadata.id == "job-4"
    assert asked == [f"job-{n}" for n in range(5)]
    asked.clear()
    assert poll_now(queue, predicate=only_the_last) is None
    assert sorted(asked) == [f"job-{n}" for n in range(4)]
    assert len(asked) == 4
