"""MemoryQueue wake-ups and indexes: one new job wakes one poll, and nothing piles up.

A blocking poll reads the queue's clock under the queue lock just before it
sleeps, and once more each time it wakes. So a clock that counts reads per
thread tells, without sleeping, when a poll is asleep (its read was seen; any
call that takes the lock after that finds it waiting) and whether it was woken
(it read again). A check that a poll was *not* woken waits a bounded while
(:data:`QUIET`) on a Condition for a read that must not come: a broken queue
is caught in far less, a correct one never fails it.
"""

from __future__ import annotations

import datetime as dt
import threading
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jobworker as jw
from jobworker import model as m
from jobworker.testing import FakeClock

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
JOIN = 10.0  # seconds a test waits for one of its own threads before failing
QUIET = 0.5  # seconds a test watches for a wake-up that must not happen
LONG = 6 * JOIN  # a poll's timeout: it returns within a test only if woken


class CountingClock(FakeClock):
    """A FakeClock that counts its reads per thread name; tests wait on the counts."""

    def __init__(self) -> None:
        super().__init__(EPOCH)
        self._reads: Counter[str] = Counter()
        self._changed = threading.Condition()

    def now(self) -> dt.datetime:
        with self._changed:
            self._reads[threading.current_thread().name] += 1
            self._changed.notify_all()
        return super().now()

    def reads(self, name: str) -> int:
        with self._changed:
            return self._reads[name]

    def read_again(self, names: list[str], within: float) -> list[str]:
        """Wait up to *within* s for any of *names* to read again; return those that did."""
        with self._changed:
            self._changed.wait_for(lambda: any(self._reads[n] > 1 for n in names), within)
            return [n for n in names if self._reads[n] > 1]

    def wait_reads(self, name: str, at_least: int, timeout: float) -> bool:
        """Wait until thread *name* has read the clock *at_least* times."""
        with self._changed:
            return self._changed.wait_for(lambda: self._reads[name] >= at_least, timeout)


class Poll:
    """One poll_next_pending_job in a named daemon thread; keeps its outcome."""

    def __init__(
        self, queue: jw.MemoryQueue, name: str, ended: threading.Condition, **options: Any
    ) -> None:
        self.name = name
        self._ended = ended
        self.result: m.RunningJob[Any, Any] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        options.setdefault("timeout", LONG)
        self.thread = threading.Thread(
            target=self._run, args=(queue, options), name=name, daemon=True
        )
        self.thread.start()

    def _run(self, queue: jw.MemoryQueue, options: dict[str, Any]) -> None:
        try:
            self.result = queue.poll_next_pending_job(worker=self.name, **options)
        except BaseException as exc:  # handed to the test, which asserts on it
            self.error = exc
        finally:
            with self._ended:
                self.done.set()
                self._ended.notify_all()

    def join(self) -> None:
        self.thread.join(JOIN)
        assert not self.thread.is_alive(), f"{self.name} did not return"

    @property
    def job_id(self) -> str | None:
        return None if self.result is None else self.result.metadata.id


@pytest.fixture
def clock() -> CountingClock:
    return CountingClock()


@pytest.fixture
def queue(clock: CountingClock) -> Iterator[jw.MemoryQueue]:
    q = jw.MemoryQueue(clock=clock)
    yield q
    q.close()  # ends any poll a failed test left blocked


@pytest.fixture
def start_poll(queue: jw.MemoryQueue, clock: CountingClock) -> Callable[..., Poll]:
    """Start a poll and return once it is asleep (its first clock read was seen)."""
    count = iter(range(1_000))

    def start(name: str | None = None, **options: Any) -> Poll:
        poll = Poll(queue, name or f"poll-{next(count)}", ENDED, **options)
        assert clock.wait_reads(poll.name, 1, JOIN), f"{poll.name} never polled"
        return poll

    return start


#: Notified whenever a Poll ends (see first_done).
ENDED = threading.Condition()


def first_done(polls: list[Poll]) -> Poll:
    """Wait for one of *polls* to return; return it."""
    with ENDED:
        assert ENDED.wait_for(lambda: any(p.done.is_set() for p in polls), JOIN), "none returned"
    return next(p for p in polls if p.done.is_set())


def make_job(job_id: str, job_type: str = "a") -> m.PendingJob[Any]:
    return m.PendingJob(
        metadata=m.JobMetadata(
            id=m.job_id(job_id), type=job_type, created=EPOCH, user_id=m.user_id("u")
        ),
        params={},
    )


def wait_until(predicate: Callable[[], bool], cond: threading.Condition, timeout: float) -> bool:
    with cond:
        return cond.wait_for(predicate, timeout)


def woken_in(clock: CountingClock, polls: list[Poll], within: float) -> list[str]:
    """Names of *polls* that read the clock again (were woken) within *within* seconds."""
    return clock.read_again([poll.name for poll in polls], within)


# -- 1. one job, one wake-up -----------------------------------------------------------------


@pytest.mark.parametrize("types", [None, ["a"], ["a", "b"]], ids=["any", "a", "a-or-b"])
def test_a_new_job_wakes_one_idle_poll_not_all(
    queue: jw.MemoryQueue,
    clock: CountingClock,
    start_poll: Callable[..., Poll],
    types: list[str] | None,
) -> None:
    polls = [start_poll(types=types) for _ in range(4)]

    queue.create_job(make_job("job-0"))
    winner = first_done(polls)
    assert winner.job_id == "job-0"
    others = [p for p in polls if p is not winner]
    # The job woke its taker only: the other three never read the clock again.
    assert woken_in(clock, others, QUIET) == []
    assert not any(p.done.is_set() for p in others)

    # Each further job wakes one more poll, until every poll has one job.
    for n in range(1, 4):
        queue.create_job(make_job(f"job-{n}"))
    for poll in others:
        poll.join()
    assert sorted(p.job_id or "" for p in polls) == [f"job-{n}" for n in range(4)]
    assert all(p.error is None for p in polls)
    # Asleep once, woken once, each: one read to sleep and one to claim.
    assert [clock.reads(p.name) for p in polls] == [2, 2, 2, 2]


def test_idle_polls_stay_blocked_until_stopped(
    queue: jw.MemoryQueue, clock: CountingClock, start_poll: Callable[..., Poll]
) -> None:
    stops = [threading.Event() for _ in range(3)]
    polls = [start_poll(stop_event=stop) for stop in stops]
    queue.create_job(make_job("job-0"))
    winner = first_done(polls)
    assert winner.job_id == "job-0"
    others = [p for p in polls if p is not winner]
    assert woken_in(clock, others, QUIET) == []
    for stop in stops:
        stop.set()
    queue.wake()
    for poll in others:
        poll.join()
        assert poll.error is None and poll.result is None


# -- 2. a woken poll that leaves without the job passes the wake-up on ------------------------


def refuse_all(job: m.PendingJob[Any]) -> bool:
    return False


def raise_on_sight(job: m.PendingJob[Any]) -> bool:
    raise RuntimeError("predicate failed")


@pytest.mark.parametrize("leaves_by", ["stop_event", "refusal", "predicate_error"])
def test_a_woken_poll_that_leaves_without_the_job_passes_the_wake_up_on(
    queue: jw.MemoryQueue, start_poll: Callable[..., Poll], leaves_by: str
) -> None:
    stop = threading.Event()
    choices: dict[str, dict[str, Any]] = {
        "stop_event": {"stop_event": stop},
        "refusal": {"predicate": refuse_all, "stop_event": stop},
        "predicate_error": {"predicate": raise_on_sight},
    }
    options = choices[leaves_by]
    # MemoryQueue wakes the first sleeping poll that takes the type: "leaver"
    # went to sleep first, so the job wakes it, and only it.
    leaver = start_poll("leaver", **options)
    taker = start_poll("taker")
    if leaves_by == "stop_event":
        stop.set()  # no wake(): only the new job wakes the leaver

    queue.create_job(make_job("job-0"))
    # The taker sleeps for a minute unless the leaver hands its wake-up on.
    taker.join()
    assert taker.error is None
    assert taker.job_id == "job-0"

    if leaves_by == "predicate_error":
        leaver.join()
        assert isinstance(leaver.error, RuntimeError)
    elif leaves_by == "stop_event":
        leaver.join()  # it was the one woken, and left
        assert leaver.error is None and leaver.result is None
    else:
        assert not leaver.done.is_set()  # it refused the job and sleeps on
        stop.set()
        queue.wake()
        leaver.join()
        assert leaver.result is None
    assert queue.get_stats()["running"] == 1


def test_a_poll_that_refused_a_job_before_passes_on_the_next(
    queue: jw.MemoryQueue, clock: CountingClock, start_poll: Callable[..., Poll]
) -> None:
    # Once a poll has refused a job, it asks its predicate before claiming
    # (another path than the first refusal's hand-back): it too passes on.
    queue.create_job(make_job("old", "z"))
    asked: list[str] = []
    refused = threading.Condition()

    def refuse(job: m.PendingJob[Any]) -> bool:
        with refused:
            asked.append(job.metadata.id)
            refused.notify_all()
        return False

    stop = threading.Event()
    picky = Poll(queue, "picky", ENDED, predicate=refuse, stop_event=stop)
    # Asleep once it read the clock after refusing "old" (two reads: claim, sleep).
    assert wait_until(lambda: asked == ["old"], refused, JOIN)
    assert clock.wait_reads("picky", 2, JOIN)
    taker = start_poll("taker", types=["a"])

    queue.create_job(make_job("job-0"))
    taker.join()
    assert taker.job_id == "job-0"
    assert wait_until(lambda: "job-0" in asked, refused, JOIN)  # picky was woken first
    assert not picky.done.is_set()
    stop.set()
    queue.wake()
    picky.join()
    assert picky.result is None
    assert queue.get_job("old").status == "pending"  # type: ignore[union-attr]


def test_a_poll_of_other_types_does_not_swallow_the_wake_up(
    queue: jw.MemoryQueue, clock: CountingClock, start_poll: Callable[..., Poll]
) -> None:
    other = start_poll("other", types=["b"])  # asleep first
    taker = start_poll("taker", types=["a"])
    queue.create_job(make_job("job-0", "a"))
    taker.join()
    assert taker.job_id == "job-0"
    assert woken_in(clock, [other], QUIET) == []
    queue.create_job(make_job("job-1", "b"))
    other.join()
    assert other.job_id == "job-1"


# -- 3. no index entry is kept per finished claim ----------------------------------------------


def test_draining_many_jobs_keeps_memory_flat() -> None:
    # Public signal: a job that was created, claimed, completed and cleaned up
    # leaves nothing behind, so traced memory after 10,000 such jobs is what it
    # was after the first 1,000. A lease (or lane) entry kept per finished
    # claim costs about 200 bytes: 2 MB over 10,000 jobs, against a 256 kB bound.
    clock = FakeClock(EPOCH)
    queue = jw.MemoryQueue(clock=clock)

    def drain(count: int, start: int) -> None:
        for n in range(start, start + count):
            queue.create_job(make_job(f"job-{n}"))
            running = queue.poll_next_pending_job(timeout=0)
            assert running is not None
            queue.update_job(
                m.complete(running, None, now=clock.now()), "running", claim=running.claim
            )
            clock.advance(0.000_001)  # cleanup keeps a job that ended at the cutoff
            assert queue.cleanup_old_jobs(0) == 1

    tracemalloc.start()
    try:
        drain(1_000, 0)
        before = tracemalloc.get_traced_memory()[0]
        drain(10_000, 1_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        queue.close()
    assert grown < 256 * 1024, f"memory grew by {grown} bytes over 10,000 drained jobs"


def test_the_lease_heap_holds_no_entry_per_finished_claim() -> None:
    # The private heap, because no public signal isolates it while the jobs
    # stay stored: 10,000 complete jobs take far more memory than the 10,000
    # stale lease entries this test looks for. Real threads drain the jobs
    # on the real clock, with heartbeats, as in production.
    queue = jw.MemoryQueue()
    count = 10_000
    for n in range(count):
        queue.create_job(make_job(f"job-{n}"))

    class Quick(jw.JobWorker):
        def get_worker_name(self) -> str:
            return "quick"

        def can_process_job(self, job: jw.AnyJob) -> bool:
            return True

        def execute_job(self, job: jw.AnyJob) -> Any:
            return None

    workers = [Quick(queue, poll_interval=0.05) for _ in range(2)]
    threads = [worker.start_in_thread() for worker in workers]
    try:
        last = queue.wait_for_job(f"job-{count - 1}", timeout=60)
        assert jw.is_complete_job(last)
        assert all(worker.stop(timeout=JOIN) for worker in workers)
        for thread in threads:
            thread.join(JOIN)
        assert queue.get_stats()["complete"] == count
        # A call drops the stale entries at the head; nothing is running now.
        queue.get_stats()
        assert len(queue._leases) <= len(workers), len(queue._leases)
        assert queue._lease_until == {}
    finally:
        for worker in workers:
            worker.stop(timeout=JOIN)
        queue.close()
