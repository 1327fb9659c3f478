"""MemoryQueue: the in-process backend, guarded by one lock.

Lock rule: every attribute below marked *guarded* is read and written only
with ``self._lock`` held, with one exception: ``update_job`` reads ``_jobs``
without it as a hint (see :meth:`MemoryQueue._stored_metadata`). No user
code runs and nothing sleeps with the lock held; values are serialized
before it is taken and decoded after it is released.

Claims use indexes, not scans: a lane of ready jobs per type, ordered by
(priority, created, arrival), a heap of scheduled jobs by ``run_after``, and
a heap of lease deadlines. Index entries hold the stored job they were made
for and are deleted lazily: an entry counts only while ``_jobs`` still holds
that very job. Times in the indexes are the clock's aware datetimes, compared
as they are.

A poll with a predicate claims the best job first and then asks the
predicate (as the SQL backends do); a job it turns down is handed back,
unrun, in its old place. A new job wakes one sleeping poll that takes its
type, not all of them; a poll that was woken and leaves without a job passes
the wake-up on.

Limits and pauses (see :mod:`jobworker.throttling`) are checked under the
lock in the claim: a poll skips a paused type, a type whose running jobs are
at its concurrency limit or whose rate window is full, and, for a limit per
key, the jobs of a saturated key, and takes the best job of what is left. A
queue with no limits declared and nothing paused claims as before.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from typing import Any, TypeVar

from ..clock import from_us, to_us
from ..errors import (
    DuplicateJobError,
    JobNotFoundError,
    QueueClosedError,
    UniqueKeyTakenError,
    WaitTimeoutError,
    safe_repr,
)
from ..model import (
    STATUSES,
    WORKER_LOST,
    AnyJob,
    CancelledJob,
    Claim,
    CompleteJob,
    FailedJob,
    JobId,
    JobMetadata,
    PendingJob,
    RunningJob,
    apply_update,
    cancel,
    complete,
    fail_or_retry,
    holds_unique_key,
    new_claim,
    release,
    start,
)
from ..serialization import encode_value
from ..throttling import TypeLimits, key_of, rate_admits, rate_opens_at, record_start
from .base import JobPage, JobPredicate, JobQueue, keyset_cursor, parse_keyset_cursor

__all__ = ["MemoryQueue"]

P = TypeVar("P")

# (-priority, created, arrival, sequence, the stored pending job): the job's
# arrival orders equals and is kept for its life; the sequence is new for each
# entry, so two entries of one job (one stale) never compare their jobs.
_ReadyEntry = tuple[int, _dt.datetime, int, int, PendingJob[str]]


class _Lane:
    """The ready jobs of one type, best first: a FIFO and a heap.

    Jobs mostly arrive in order (one priority, ``created`` now), so an entry
    not smaller than the FIFO's last is appended to it, and the best of those
    is taken from its left in O(1) however long the backlog. An entry that
    would break the order goes to the heap. The best ready job is the smaller
    of the two live heads.
    """

    __slots__ = ("fifo", "heap")

    def __init__(self) -> None:
        self.fifo: deque[_ReadyEntry] = deque()
        self.heap: list[_ReadyEntry] = []

    def push(self, entry: _ReadyEntry) -> None:
        fifo = self.fifo
        if not fifo or fifo[-1] < entry:
            fifo.append(entry)
        else:
            heapq.heappush(self.heap, entry)

    def head(self, jobs: dict[str, AnyJob]) -> _ReadyEntry | None:
        """Return the best live entry, dropping stale ones in front of it."""
        fifo = self.fifo
        while fifo:
            job = fifo[0][4]
            if jobs.get(job.metadata.id) is job:
                break
            fifo.popleft()
        heap = self.heap
        while heap:
            job = heap[0][4]
            if jobs.get(job.metadata.id) is job:
                break
            heapq.heappop(heap)
        if not heap:
            return fifo[0] if fifo else None
        if not fifo or heap[0] < fifo[0]:
            return heap[0]
        return fifo[0]

    def pop(self, entry: _ReadyEntry) -> None:
        """Remove *entry*, which :meth:`head` just returned."""
        if self.fifo and self.fifo[0] is entry:
            self.fifo.popleft()
        else:
            heapq.heappop(self.heap)

    def __iter__(self) -> Iterator[_ReadyEntry]:
        """Every entry, live or stale, in no particular order."""
        return itertools.chain(self.fifo, self.heap)


class _Waiter:
    """One blocked poll: the types it takes and the Condition it sleeps on.

    ``woken`` is set when a new job woke it: the next job wakes another
    waiter, so one job wakes one poll, not the whole herd. Guarded by the
    queue lock.
    """

    __slots__ = ("cond", "types", "woken")

    def __init__(self, lock: threading.Lock, types: frozenset[str] | None) -> None:
        self.cond = threading.Condition(lock)
        self.types = types
        self.woken = False


class MemoryQueue(JobQueue):
    """A thread-safe in-memory queue: fast, and gone when the process ends.

    It refuses what a durable backend would refuse (duplicate ids, values that
    are not JSON-safe, oversized payloads) and stores values as a JSON round
    trip returns them, so moving to a durable backend changes nothing.

    >>> queue = MemoryQueue()
    >>> queue.get_stats()
    {'pending': 0, 'running': 0, 'complete': 0, 'failed': 0, 'cancelled': 0}

    Takes the keyword arguments of :class:`JobQueue`.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()
        # Notified when a job ends, if anyone waits (_ended_waiting); guarded.
        self._ended = threading.Condition(self._lock)
        self._ended_waiting = 0  # guarded
        self._jobs: dict[str, AnyJob] = {}  # guarded (but see _stored_metadata)
        self._counts: dict[str, int] = dict.fromkeys(STATUSES, 0)  # guarded
        self._ready: dict[str, _Lane] = {}  # guarded: type -> lane
        self._scheduled: list[tuple[_dt.datetime, int, PendingJob[str]]] = []  # guarded
        self._leases: list[tuple[_dt.datetime, int, str]] = []  # guarded
        # guarded: running id -> deadline, the very object in its live _leases entry
        self._lease_until: dict[str, _dt.datetime] = {}
        self._waiters: list[_Waiter] = []  # guarded
        self._closed = False  # guarded
        self._lease = _dt.timedelta(microseconds=round(self.lease_duration * 1_000_000))
        self._seq = itertools.count()  # thread-safe in CPython; used under the lock
        # guarded: id -> the job's place among equals (same priority and created),
        # taken when it is first queued and kept for its life, as the SQL
        # backends' arrival column is: a retried, released or handed-back job
        # goes back to that place.
        self._arrival: dict[str, int] = {}
        self._paused: set[str] = set()  # guarded: paused job types
        # guarded: type -> its latest start times (us), for its rate limit
        self._starts: dict[str, list[int]] = {}
        # guarded: unique key -> the id of the one job that holds it (see jobworker.unique)
        self._holders: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<MemoryQueue jobs={len(self._jobs)} closed={self._closed}>"

    # -- index maintenance (call with the lock held) ----------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("the queue is closed")

    def _enter(self) -> _dt.datetime:
        """Begin a call: refuse if closed, apply what time has made due; return now.

        Every call does this, so no caller ever sees a job whose lease has
        expired as running. It costs a clock read and two heap peeks when
        nothing is due.
        """
        if self._closed:
            raise QueueClosedError("the queue is closed")
        now = self.clock.now()
        self._due(now)
        return now

    def _check_key(self, job: AnyJob, old: AnyJob | None) -> None:
        """Refuse to store *job* over *old* if that would make a second holder of its key."""
        key = job.metadata.unique_key
        if key is None or not holds_unique_key(job) or (old is not None and holds_unique_key(old)):
            return
        holder = self._holders.get(key)
        if holder is not None and holder != job.metadata.id:
            raise UniqueKeyTakenError(key, holder, job.metadata.id)

    def _set(self, job: AnyJob, old: AnyJob | None) -> None:
        job_id = job.metadata.id
        key = job.metadata.unique_key
        if key is not None:
            # The scope includes pending and running, so a claim (_claim) never
            # changes who holds a key: only here does a job take or let go of one.
            if holds_unique_key(job):
                self._holders[key] = job_id
            elif old is not None and holds_unique_key(old):
                del self._holders[key]
        self._jobs[job_id] = job
        counts = self._counts
        if old is not None:
            counts[old.status] -= 1
            if old.status == "running":
                self._lease_until.pop(job_id, None)
                if self._waiters and job.metadata.type in self.registry.limits:
                    # A slot of a limited type is free: a poll may now take its jobs.
                    self._notify(job.metadata.type)
        counts[job.status] += 1
        if isinstance(job, PendingJob):
            self._enqueue(job)
        elif self._ended_waiting and job.status != "running":
            self._ended.notify_all()

    def _enqueue(self, job: PendingJob[str]) -> None:
        meta = job.metadata
        if meta.id not in self._arrival:
            self._arrival[meta.id] = next(self._seq)
        if meta.run_after is not None and meta.run_after > self.clock.now():
            heapq.heappush(self._scheduled, (meta.run_after, next(self._seq), job))
            # A sleeping poll must recompute how long to wait.
            self._notify(None)
            return
        self._push_ready(job)

    def _push_ready(self, job: PendingJob[str]) -> None:
        meta = job.metadata
        entry = (-meta.priority, meta.created, self._arrival[meta.id], next(self._seq), job)
        job_type = meta.type
        lane = self._ready.get(job_type)
        if lane is None:
            lane = self._ready[job_type] = _Lane()
        lane.push(entry)
        if self._waiters:
            self._notify(job_type)

    def _notify(self, job_type: str | None) -> None:
        """Wake the first sleeping poll that takes *job_type*; every poll if ``None``.

        A woken poll that leaves without a job (it is stopping) passes the
        wake-up on; one whose predicate turns the job down hands it back,
        which wakes the next poll.
        """
        for waiter in self._waiters:
            if job_type is None:
                waiter.cond.notify()
            elif not waiter.woken and (waiter.types is None or job_type in waiter.types):
                waiter.woken = True
                waiter.cond.notify()
                return

    def _due(self, now: _dt.datetime) -> None:
        """Move due scheduled jobs to the ready lanes; recover expired leases.

        Stale entries at the head of either heap are dropped even when not
        due, so the heaps hold about as many entries as there are scheduled
        and running jobs, not every claim of the last lease period.
        """
        scheduled = self._scheduled
        jobs = self._jobs
        while scheduled:
            run_after, _, job = scheduled[0]
            meta = job.metadata
            if jobs.get(meta.id) is job:  # still this pending job (not cancelled)
                if run_after > now:
                    break
                self._push_ready(job)
            heapq.heappop(scheduled)
        leases = self._leases
        lease_until = self._lease_until
        while leases:
            until, _, job_id = leases[0]
            # The entry counts while it holds the very deadline of the job's
            # current lease: not once the job ended or the lease was renewed.
            if lease_until.get(job_id) is until:
                if until > now:
                    break
                heapq.heappop(leases)
                lost = jobs[job_id]
                assert isinstance(lost, RunningJob)
                recovered = fail_or_retry(
                    lost, WORKER_LOST, now=now, delay=self._recovery_delay(lost)
                )
                self._set(recovered, lost)
            else:
                heapq.heappop(leases)

    def _next_wake(self, now: _dt.datetime) -> float | None:
        """Seconds until the next scheduled job or lease expiry, if any."""
        times = [heap[0][0] for heap in (self._scheduled, self._leases) if heap]
        return max(0.0, (min(times) - now).total_seconds()) if times else None

    def _best(self, types: Collection[str] | None) -> tuple[_Lane, _ReadyEntry] | None:
        jobs = self._jobs
        ready = self._ready
        best: tuple[_Lane, _ReadyEntry] | None = None
        for job_type in ready if types is None else types:
            lane = ready.get(job_type)
            if lane is None:
                continue
            entry = lane.head(jobs)
            if entry is not None and (best is None or entry < best[1]):
                best = (lane, entry)
        return best

    def _best_limited(
        self, types: Collection[str] | None, now: _dt.datetime
    ) -> tuple[tuple[_Lane, _ReadyEntry, bool] | None, _dt.datetime | None]:
        """The best ready job that no pause or limit holds back, and when a rate next opens.

        Returns ``((lane, entry, is_head), opens)``: *is_head* tells whether
        the entry is its lane's head (a job behind a saturated key is not, and
        its entry goes stale with the claim); *opens* is the earliest time a
        rate window that holds back a ready job admits a start, if any.
        """
        jobs = self._jobs
        ready = self._ready
        limits = self.registry.limits
        now_us = to_us(now)
        running: _Running | None = None
        best: tuple[_Lane, _ReadyEntry, bool] | None = None
        opens: int | None = None
        for job_type in ready if types is None else types:
            lane = ready.get(job_type)
            if lane is None or job_type in self._paused:
                continue
            entry = lane.head(jobs)
            if entry is None:
                continue
            is_head = True
            limit = limits.get(job_type)
            if limit is not None:
                starts = self._starts.get(job_type, ())
                if not rate_admits(starts, limit, now_us):
                    at = rate_opens_at(starts, limit)
                    if at is not None and (opens is None or at < opens):
                        opens = at
                    continue
                if limit.concurrency is not None:
                    if running is None:
                        running = _Running(self)
                    if limit.key is None:
                        if running.of_type(job_type) >= limit.concurrency:
                            continue
                    elif running.of_key(job_type, limit.key, entry[4]) >= limit.concurrency:
                        # This key is saturated: the best job of another key may start.
                        entry = running.best_free(lane, limit)
                        if entry is None:
                            continue
                        is_head = False
            if best is None or entry < best[1]:
                best = (lane, entry, is_head)
        return best, (None if opens is None else from_us(opens))

    def _admits(self, job: PendingJob[str], now: _dt.datetime) -> bool:
        """Whether no pause or limit holds back the ready job *job* now (lock held)."""
        job_type = job.metadata.type
        if job_type in self._paused:
            return False
        limit = self.registry.limits.get(job_type)
        if limit is None:
            return True
        if not rate_admits(self._starts.get(job_type, ()), limit, to_us(now)):
            return False
        if limit.concurrency is None:
            return True
        running = _Running(self)
        if limit.key is None:
            return running.of_type(job_type) < limit.concurrency
        return running.of_key(job_type, limit.key, job) < limit.concurrency

    def _record_start(self, job_type: str, now: _dt.datetime) -> None:
        limit = self.registry.limits.get(job_type)
        if limit is not None and limit.rate is not None:
            starts = self._starts.get(job_type, [])
            self._starts[job_type] = record_start(starts, limit, to_us(now))

    def _claim(
        self, pending: PendingJob[str], claim: Claim, now: _dt.datetime
    ) -> RunningJob[str, Any]:
        # The job's index entries go stale here: _jobs now holds the running job.
        running: RunningJob[str, Any] = start(pending, claim=claim, now=now)
        job_id = pending.metadata.id
        self._jobs[job_id] = running
        counts = self._counts
        counts["pending"] -= 1
        counts["running"] += 1
        until = now + self._lease
        self._lease_until[job_id] = until
        heapq.heappush(self._leases, (until, next(self._seq), job_id))
        return running

    def _stored_metadata(self, job: object) -> JobMetadata | None:
        """Return the metadata of the stored job with *job*'s id, read without the lock.

        Only a hint, for skipping a second check of metadata: whatever this
        queue stores was checked, so metadata that *is* a stored job's (as
        every job this queue returns shares it) is valid whenever it is read.
        A dict read is atomic in CPython.
        """
        job_id = getattr(getattr(job, "metadata", None), "id", None)
        if type(job_id) is not str:
            return None
        stored = self._jobs.get(job_id)
        return None if stored is None else stored.metadata

    # -- the contract ----------------------------------------------------------------------

    # Stored jobs hold their values as JSON text and are immutable, so they
    # are decoded into the caller's copies after the lock is released:
    # decoding may run user code (attrs validators of registered classes).

    def create_job(self, job: PendingJob[P]) -> PendingJob[P]:
        stored, created = self._encode_new(job)
        with self._lock:
            self._enter()
            if stored.metadata.id in self._jobs:
                raise DuplicateJobError(stored.metadata.id)
            self._check_key(stored, None)
            self._set(stored, None)
        # The stored form holds text; the caller gets params of its own type back.
        return created

    def get_job(self, job_id: JobId | str) -> AnyJob | None:
        with self._lock:
            self._enter()
            stored = self._jobs.get(job_id)
        return None if stored is None else self._decode(stored)

    def update_job(
        self, job: AnyJob, old_status: str | None = None, *, claim: Any = None
    ) -> AnyJob:
        submitted = self._encode_update(job, self._stored_metadata(job))
        expected = submitted.status if old_status is None else old_status
        with self._lock:
            now = self._enter()
            stored = self._jobs.get(submitted.metadata.id)
            if stored is None:
                raise JobNotFoundError(submitted.metadata.id)
            new = apply_update(stored, submitted, expected, now=now, claim=claim)
            self._check_key(new, stored)
            if new.status == "running":
                self._jobs[new.metadata.id] = new  # progress: no index changes
            else:
                self._set(new, stored)
        return self._decode(new)

    def _complete_job(self, job: RunningJob[Any, Any], result: Any) -> AnyJob:
        if type(job) is not RunningJob:
            return super()._complete_job(job, result)  # checks everything about the job
        result_type = self.registry.get(job.metadata.type).result
        text = encode_value(result, result_type, what="result", limit=self.max_payload)
        with self._lock:
            now = self._enter()
            stored = self._jobs.get(job.metadata.id)
            # The compare-and-set of apply_update for running -> complete, on
            # metadata checked when stored (job shares it): still running, under
            # this claim. Then the model's transition makes the stored value.
            mine = (
                isinstance(stored, RunningJob)
                and stored.metadata is job.metadata
                and stored.claim.token == job.claim.token
            )
            if mine:
                assert isinstance(stored, RunningJob)
                new: AnyJob = complete(stored, text, now=now)
                self._set(new, stored)
        if not mine:
            # Not ours, or not a job this queue handed out: the general path
            # checks everything and raises the precise error.
            return super()._complete_job(job, result)
        return self._decode(new)

    def poll_next_pending_job(
        self,
        *,
        types: Collection[str] | None = None,
        predicate: JobPredicate | None = None,
        worker: str = "anonymous",
        timeout: float | None = 0.0,
        stop_event: threading.Event | None = None,
    ) -> RunningJob[Any, Any] | None:
        self._check_timeout(timeout)
        wanted = None if types is None else frozenset(types)
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter: _Waiter | None = None
        # Made before the lock is taken, to hold it shorter; a new one after each use.
        claim = new_claim(worker)
        # Jobs the predicate turned down in this poll; once there is one, the
        # predicate is asked before each claim instead of after.
        rejected: set[str] = set()
        try:
            while True:
                with self._lock:
                    self._check_open()
                    if stop_event is not None and stop_event.is_set():
                        if waiter is not None and waiter.woken:
                            self._notify(None)  # the wake-up this poll had goes to the others
                        return None
                    # Read under the lock just before a poll sleeps: once another
                    # thread has seen this read, the poll is asleep or has a job.
                    now = self.clock.now()
                    self._due(now)
                    claimed: RunningJob[str, Any] | None = None
                    candidates: list[PendingJob[str]] = []
                    listed: set[str] = set()
                    opens: _dt.datetime | None = None
                    if predicate is None or not rejected:
                        if self._paused or self.registry.limits:
                            limited, opens = self._best_limited(wanted, now)
                            if limited is not None:
                                lane, entry, is_head = limited
                                if is_head:
                                    lane.pop(entry)
                                claimed = self._claim(entry[4], claim, now)
                                self._record_start(entry[4].metadata.type, now)
                        else:
                            best = self._best(wanted)
                            if best is not None:
                                lane, entry = best
                                lane.pop(entry)
                                claimed = self._claim(entry[4], claim, now)
                    else:
                        candidates, listed = self._candidates(wanted, rejected)
                    if claimed is None and not candidates:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            return None
                        wake_in = self._next_wake(now)
                        if opens is not None:
                            # A rate window holds back a ready job: wake when it opens.
                            opens_in = max(0.0, (opens - now).total_seconds())
                            wake_in = opens_in if wake_in is None else min(wake_in, opens_in)
                        if wake_in is not None and (remaining is None or wake_in < remaining):
                            remaining = wake_in
                        if waiter is None:
                            waiter = _Waiter(self._lock, wanted)
                        waiter.woken = False
                        self._waiters.append(waiter)
                        try:
                            waiter.cond.wait(remaining)
                        finally:
                            self._waiters.remove(waiter)
                        continue
                if claimed is not None:
                    job = self._decode(claimed)
                    # The head is claimed first and then shown to the predicate
                    # (user code, run with no lock held), as the SQL backends do:
                    # one lock round for the usual yes; a no hands it back.
                    if predicate is None or self._accepts(predicate, job):
                        return job
                    rejected.add(job.metadata.id)
                    claim = new_claim(worker)
                    continue
                for candidate in candidates:
                    try:
                        accepted = predicate is not None and predicate(self._decode(candidate))
                    except BaseException:
                        self._pass_on(candidate)
                        raise
                    if accepted:
                        claimed = self._claim_if_pending(candidate, claim)
                        if claimed is not None:
                            return self._decode(claimed)
                    else:
                        rejected.add(candidate.metadata.id)
                        self._pass_on(candidate)
                    if candidate.metadata.type not in listed:
                        # Only the head of its type was listed: the job behind
                        # it may beat the later candidates, so list them again.
                        break
        except BaseException:
            # Woken for a job but leaving without one: wake the others instead.
            if waiter is not None and waiter.woken:
                with self._lock:
                    self._notify(None)
            raise

    def _accepts(self, predicate: JobPredicate, job: RunningJob[Any, Any]) -> bool:
        """Ask *predicate* about a job claimed for it; hand the job back if it says no.

        The predicate sees the job as pending, with the params the claimed
        job carries. A job handed back keeps its place (its arrival).
        """
        try:
            accepted = predicate(PendingJob(job.metadata, job.params, job.attempts))
        except BaseException:
            self._hand_back(job)
            raise
        if not accepted:
            self._hand_back(job)
        return bool(accepted)

    def _pass_on(self, job: PendingJob[str]) -> None:
        """Wake another poll for a ready job this one turned down."""
        with self._lock:
            if self._waiters:
                self._notify(job.metadata.type)

    def _hand_back(self, job: RunningJob[Any, Any]) -> None:
        """Return a job claimed for a predicate that turned it down to pending, unrun."""
        with self._lock:
            stored = self._jobs.get(job.metadata.id)
            # Cancelled (or recovered) meanwhile: then it is no longer ours to give back.
            if isinstance(stored, RunningJob) and stored.claim.token == job.claim.token:
                self._set(release(stored), stored)

    def _candidates(
        self, wanted: frozenset[str] | None, rejected: set[str]
    ) -> tuple[list[PendingJob[str]], set[str]]:
        """Ready jobs for a predicate to judge, best first, and the types listed whole.

        The head of each type comes first; only a type whose head the
        predicate already rejected is scanned further (listed whole). A
        predicate that decides by type therefore costs O(types), like a
        worker that names its types; one that rejects jobs of a type it
        otherwise takes pays a scan of that type.
        """
        jobs = self._jobs
        entries: list[_ReadyEntry] = []
        listed: set[str] = set()
        for job_type in list(self._ready) if wanted is None else wanted:
            lane = self._ready.get(job_type)
            head = None if lane is None else lane.head(jobs)
            if lane is None or head is None or job_type in self._paused:
                continue
            if head[4].metadata.id not in rejected:
                entries.append(head)
                continue
            listed.add(job_type)
            for entry in lane:
                job = entry[4]
                job_id = job.metadata.id
                if jobs.get(job_id) is job and job_id not in rejected:
                    entries.append(entry)
        if len(entries) > 1:
            entries.sort()
        return [entry[4] for entry in entries], listed

    def _claim_if_pending(self, job: PendingJob[str], claim: Claim) -> RunningJob[str, Any] | None:
        with self._lock:
            now = self._enter()
            # Still the very value the predicate saw, so still pending and queued?
            # Its lane entry goes stale with the claim and is dropped lazily.
            if self._jobs.get(job.metadata.id) is not job or not self._admits(job, now):
                return None
            self._record_start(job.metadata.type, now)
            return self._claim(job, claim, now)

    def renew_lease(self, job: RunningJob[Any, Any]) -> bool:
        with self._lock:
            # An expired lease is recovered here before it could be renewed.
            now = self._enter()
            job_id = job.metadata.id
            stored = self._jobs.get(job_id)
            if not isinstance(stored, RunningJob) or stored.claim.token != job.claim.token:
                return False
            until = now + self._lease
            self._lease_until[job_id] = until
            heapq.heappush(self._leases, (until, next(self._seq), job_id))
            return True

    def list_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AnyJob]:
        self._check_list_args(status, limit, offset)
        with self._lock:
            self._enter()
            jobs = list(self._jobs.values())
        # Newest first; among equal times the later arrival first (the sort is stable).
        jobs.reverse()
        selected = [
            job
            for job in jobs
            if (status is None or job.status == status)
            and (type is None or job.metadata.type == type)
            and (user_id is None or job.metadata.user_id == user_id)
        ]
        selected.sort(key=lambda job: job.metadata.created, reverse=True)
        return [self._decode(job) for job in selected[offset : offset + limit]]

    def cancel_job(self, job_id: JobId | str) -> bool:
        with self._lock:
            now = self._enter()
            stored = self._jobs.get(job_id)
            if stored is None or not isinstance(stored, (PendingJob, RunningJob)):
                return False
            self._set(cancel(stored, now=now), stored)
            return True

    def cleanup_old_jobs(self, retention_hours: float = 24) -> int:
        if not retention_hours >= 0:
            raise ValueError(f"retention_hours must be >= 0, got {safe_repr(retention_hours)}")
        with self._lock:
            now = self._enter()
            cutoff = to_us(now) - round(retention_hours * 3_600_000_000)
            old = [
                job
                for job in self._jobs.values()
                if isinstance(job, (CompleteJob, FailedJob, CancelledJob))
                and to_us(job.completed_at) < cutoff
            ]
            for job in old:
                del self._jobs[job.metadata.id]
                key = job.metadata.unique_key
                if key is not None and self._holders.get(key) == job.metadata.id:
                    del self._holders[key]
                self._arrival.pop(job.metadata.id, None)
                self._counts[job.status] -= 1
            return len(old)

    def browse_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        user_id: str | None = None,
        id_contains: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        self._check_browse_args(status, limit)
        after = None if cursor is None else parse_keyset_cursor(cursor)
        with self._lock:
            self._enter()
            arrival = self._arrival
            rows = [
                (to_us(job.metadata.created), arrival.get(job_id, 0), job)
                for job_id, job in self._jobs.items()
            ]
        selected = [
            row
            for row in rows
            if (status is None or row[2].status == status)
            and (type is None or row[2].metadata.type == type)
            and (user_id is None or row[2].metadata.user_id == user_id)
            and (id_contains is None or id_contains in row[2].metadata.id)
            and (after is None or (row[0], row[1]) < after)
        ]
        page = heapq.nlargest(limit + 1, selected, key=lambda row: (row[0], row[1]))
        more = len(page) > limit
        page = page[:limit]
        next_cursor = keyset_cursor(page[-1][0], page[-1][1]) if more else None
        return JobPage(tuple(self._decode(row[2]) for row in page), next_cursor)

    def delete_job(self, job_id: JobId | str) -> bool:
        with self._lock:
            self._enter()
            stored = self._jobs.get(job_id)
            if not isinstance(stored, (CompleteJob, FailedJob, CancelledJob)):
                return False
            del self._jobs[job_id]
            self._arrival.pop(job_id, None)
            self._counts[stored.status] -= 1
            return True

    def get_stats(self) -> dict[str, int]:
        with self._lock:
            self._enter()
            return dict(self._counts)

    def get_type_stats(self) -> dict[str, dict[str, int]]:
        # A walk of every job under the lock: the memory queue keeps no
        # per-type counts, which would cost every transition a dict update.
        by_type: dict[str, dict[str, int]] = {}
        with self._lock:
            self._enter()
            for job in self._jobs.values():
                counts = by_type.get(job.metadata.type)
                if counts is None:
                    counts = by_type[job.metadata.type] = dict.fromkeys(STATUSES, 0)
                counts[job.status] += 1
        return by_type

    def wait_for_job(self, job_id: JobId | str, *, timeout: float | None = None) -> AnyJob:
        self._check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                self._enter()
                job = self._jobs.get(job_id)
                if job is None:
                    raise JobNotFoundError(job_id)
                if job.status not in ("pending", "running"):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeoutError(job_id, timeout or 0.0)
                self._ended_waiting += 1
                try:
                    self._ended.wait(remaining)
                finally:
                    self._ended_waiting -= 1
        return self._decode(job)

    def pause_type(self, job_type: str) -> bool:
        self._check_job_type(job_type)
        with self._lock:
            self._check_open()
            if job_type in self._paused:
                return False
            self._paused.add(job_type)
            return True

    def resume_type(self, job_type: str) -> bool:
        self._check_job_type(job_type)
        with self._lock:
            self._check_open()
            if job_type not in self._paused:
                return False
            self._paused.discard(job_type)
            self._notify(None)
            return True

    def paused_types(self) -> frozenset[str]:
        with self._lock:
            self._check_open()
            return frozenset(self._paused)

    def wake(self, job_type: str | None = None) -> None:
        with self._lock:
            self._notify(job_type)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._notify(None)
            self._ended.notify_all()


class _Running:
    """The running jobs of a queue, counted per type and per key (lock held).

    Made for one claim and dropped after it: counts are computed once, on
    first use, from the running jobs (as many as workers, not the backlog).
    """

    __slots__ = ("_by_key", "_by_type", "_queue")

    def __init__(self, queue: MemoryQueue) -> None:
        self._queue = queue
        self._by_type: dict[str, int] | None = None
        self._by_key: dict[tuple[str, str], dict[str, int]] = {}

    def of_type(self, job_type: str) -> int:
        if self._by_type is None:
            counts: dict[str, int] = {}
            jobs = self._queue._jobs
            for job_id in self._queue._lease_until:
                running_type = jobs[job_id].metadata.type
                counts[running_type] = counts.get(running_type, 0) + 1
            self._by_type = counts
        return self._by_type.get(job_type, 0)

    def _keys(self, job_type: str, field: str) -> dict[str, int]:
        counts = self._by_key.get((job_type, field))
        if counts is None:
            counts = {}
            jobs = self._queue._jobs
            for job_id in self._queue._lease_until:
                job = jobs[job_id]
                if job.metadata.type == job_type:
                    key = key_of(job.params, field)
                    counts[key] = counts.get(key, 0) + 1
            self._by_key[(job_type, field)] = counts
        return counts

    def of_key(self, job_type: str, field: str, job: AnyJob) -> int:
        return self._keys(job_type, field).get(key_of(job.params, field), 0)

    def best_free(self, lane: _Lane, limit: TypeLimits) -> _ReadyEntry | None:
        """The best live entry of *lane* whose key has a free slot (a scan of the lane)."""
        assert limit.key is not None and limit.concurrency is not None
        jobs = self._queue._jobs
        for entry in sorted(lane):
            job = entry[4]
            if jobs.get(job.metadata.id) is not job:
                continue
            if self.of_key(job.metadata.type, limit.key, job) < limit.concurrency:
                return entry
        return None
