"""What the dashboard asks of every backend: keyset pages, grouped counts, deletion."""

from __future__ import annotations

import datetime as dt

import pytest

import jobworker as jw
from jobworker.testing import FakeClock

from .conftest import EPOCH


def fill(queue: jw.JobQueue, clock: FakeClock, count: int = 23) -> list[str]:
    """Create *count* jobs one second apart (two types, three users); return ids, newest first."""
    ids = []
    for i in range(count):
        job_id = f"job-{i:03}"
        queue.create_job(
            jw.new_job(
                "even" if i % 2 == 0 else "odd",
                {"i": i},
                id=job_id,
                user_id=f"user{i % 3}",
                created=clock.now(),
            )
        )
        ids.append(job_id)
        clock.advance(1)
    return ids[::-1]


def all_pages(queue: jw.JobQueue, limit: int, **filters: str) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = queue.browse_jobs(limit=limit, cursor=cursor, **filters)
        pages.append([job.metadata.id for job in page.jobs])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_pages_chain_in_list_order(queue: jw.JobQueue, clock: FakeClock) -> None:
    newest_first = fill(queue, clock)
    pages = all_pages(queue, 5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [job_id for page in pages for job_id in page] == newest_first
    assert newest_first == [job.metadata.id for job in queue.list_jobs()]


def test_a_full_last_page_says_it_is_the_last(queue: jw.JobQueue, clock: FakeClock) -> None:
    fill(queue, clock, 10)
    pages = all_pages(queue, 5)
    assert [len(page) for page in pages] == [5, 5]


def test_filters_and_id_search(queue: jw.JobQueue, clock: FakeClock) -> None:
    newest_first = fill(queue, clock)
    queue.cancel_job("job-004")
    queue.cancel_job("job-010")
    expected_odd_user1 = [i for i in newest_first if int(i[-3:]) % 2 == 1 and int(i[-3:]) % 3 == 1]
    assert [j for p in all_pages(queue, 2, type="odd", user_id="user1") for j in p] == (
        expected_odd_user1
    )
    assert [j for p in all_pages(queue, 1, status="cancelled") for j in p] == [
        "job-010",
        "job-004",
    ]
    assert [j for p in all_pages(queue, 2, id_contains="01") for j in p] == [
        i for i in newest_first if "01" in i
    ]
    # Case-sensitive, and text no job id can hold finds nothing.
    assert queue.browse_jobs(id_contains="JOB").jobs == ()
    assert queue.browse_jobs(id_contains="a\x00b").jobs == ()
    assert queue.browse_jobs(type="nope").jobs == ()


def test_a_job_created_meanwhile_does_not_shift_later_pages(
    queue: jw.JobQueue, clock: FakeClock
) -> None:
    newest_first = fill(queue, clock, 12)
    first = queue.browse_jobs(limit=4)
    queue.create_job(jw.new_job("odd", {}, id="newer", created=clock.now()))
    second = queue.browse_jobs(limit=4, cursor=first.next_cursor)
    assert [job.metadata.id for job in second.jobs] == newest_first[4:8]


@pytest.mark.parametrize("cursor", ["", "x", "k1", "o-1", "k1.2.3", "o" + "9" * 30, "k\u0661.2"])
def test_a_foreign_cursor_is_refused(queue: jw.JobQueue, cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        queue.browse_jobs(cursor=cursor)


@pytest.mark.parametrize("limit", [0, 1001, True, 2.5])
def test_a_bad_limit_is_refused(queue: jw.JobQueue, limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        queue.browse_jobs(limit=limit)  # type: ignore[arg-type]


def test_counts_by_type_and_status(queue: jw.JobQueue, clock: FakeClock) -> None:
    fill(queue, clock, 6)
    queue.cancel_job("job-000")
    assert queue.poll_next_pending_job(types=["odd"], worker="w") is not None
    assert queue.count_jobs_by_type() == {
        "even": {"pending": 2, "cancelled": 1},
        "odd": {"pending": 2, "running": 1},
    }


def test_ended_jobs_per_interval(queue: jw.JobQueue, clock: FakeClock) -> None:
    fill(queue, clock, 4)
    since = clock.now()
    clock.advance(30)
    queue.cancel_job("job-000")  # slot 0
    clock.advance(60)
    running = queue.poll_next_pending_job(worker="w")  # job-001, the oldest left
    assert running is not None
    queue.update_job(
        jw.model.complete(running, 1, now=clock.now()), "running", claim=running.claim
    )  # slot 1
    clock.advance(60)
    running = queue.poll_next_pending_job(worker="w")
    assert running is not None
    queue.update_job(
        jw.model.fail(running, "E: x", now=clock.now()), "running", claim=running.claim
    )  # slot 2
    counts = queue.count_ended_jobs(since=since, interval=60, slots=3)
    assert counts == {"complete": [0, 1, 0], "failed": [0, 0, 1], "cancelled": [1, 0, 0]}
    # A window that ends before the failure does not count it.
    assert queue.count_ended_jobs(since=since, interval=60, slots=2)["failed"] == [0, 0]


@pytest.mark.parametrize(
    ("since", "interval", "slots"),
    [
        (dt.datetime(2026, 1, 1), 60, 10),
        (EPOCH, 0, 10),
        (EPOCH, -1, 10),
        (EPOCH, 60, 0),
        (EPOCH, 60, 10_001),
        (EPOCH, 60, True),
    ],
)
def test_bad_slots_are_refused(
    queue: jw.JobQueue, since: dt.datetime, interval: float, slots: int
) -> None:
    with pytest.raises(ValueError):
        queue.count_ended_jobs(since=since, interval=interval, slots=slots)


def test_delete_takes_ended_jobs_only(queue: jw.JobQueue, clock: FakeClock) -> None:
    fill(queue, clock, 3)
    assert queue.poll_next_pending_job(worker="w") is not None  # job-000 runs
    queue.cancel_job("job-001")
    assert queue.delete_job("job-000") is False  # running
    assert queue.delete_job("job-002") is False  # pending
    assert queue.delete_job("job-001") is True
    assert queue.get_job("job-001") is None
    assert queue.delete_job("job-001") is False  # gone
    assert queue.delete_job("nope") is False
    assert queue.get_stats() == {
        "pending": 1,
        "running": 1,
        "complete": 0,
        "failed": 0,
        "cancelled": 0,
    }


def test_the_generic_implementations_agree(queue: jw.JobQueue, clock: FakeClock) -> None:
    """JobQueue's own versions (for a backend without SQL of its own) give the same answers."""
    newest_first = fill(queue, clock, 7)
    queue.cancel_job("job-002")
    since = EPOCH
    pages, cursor = [], None
    while True:
        page = jw.JobQueue.browse_jobs(queue, limit=3, cursor=cursor, id_contains="job")
        pages.append([job.metadata.id for job in page.jobs])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    assert jw.JobQueue.count_jobs_by_type(queue) == queue.count_jobs_by_type()
    assert jw.JobQueue.count_ended_jobs(
        queue, since=since, interval=1, slots=10
    ) == queue.count_ended_jobs(since=since, interval=1, slots=10)
    with pytest.raises(ValueError, match="not a cursor"):
        jw.JobQueue.browse_jobs(queue, cursor="k1.2")
