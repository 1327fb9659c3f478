"""MemoryQueue: the in-process backend, guarded by one lock.

Lock rule: every attribute below marked *guarded* is read and written only
with ``self._lock`` held. No user code runs and nothing sleeps with it held;
values are serialized before it is taken.

Claims use indexes, not scans: a heap of ready jobs per type, ordered by
(priority, created, arrival), a heap of scheduled jobs by ``run_after``, and
a heap of lease deadlines. Heap entries are deleted lazily: an entry counts
only while ``_entry[job_id]`` still holds its sequence number.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Collection
from typing import Any, TypeVar, cast

from ..clock import from_us, to_us
from ..errors import (
    DuplicateJobError,
    JobNotFoundError,
    QueueClosedError,
    WaitTimeoutError,
)
from ..model import (
    STATUSES,
    WORKER_LOST,
    AnyJob,
    CancelledJob,
    CompleteJob,
    FailedJob,
    JobId,
    PendingJob,
    RunningJob,
    apply_update,
    cancel,
    fail_or_retry,
    new_claim,
    start,
)
from .base import JobPredicate, JobQueue

__all__ = ["MemoryQueue"]

P = TypeVar("P")

# (-priority, created timestamp, sequence, job id)
_ReadyEntry = tuple[int, int, int, str]


class _Waiter:
    """One blocked poll: the types it takes and the Condition it sleeps on."""

    __slots__ = ("cond", "types")

    def __init__(self, lock: threading.Lock, types: frozenset[str] | None) -> None:
        self.cond = threading.Condition(lock)
        self.types = types


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
        # Notified when a job ends; guarded.
        self._ended = threading.Condition(self._lock)
        self._jobs: dict[str, AnyJob] = {}  # guarded
        self._counts: dict[str, int] = dict.fromkeys(STATUSES, 0)  # guarded
        self._entry: dict[str, int] = {}  # guarded: job id -> live heap sequence
        self._ready: dict[str, list[_ReadyEntry]] = {}  # guarded: type -> heap
        self._scheduled: list[tuple[int, int, str]] = []  # guarded
        self._leases: list[tuple[int, int, str]] = []  # guarded
        self._lease_until: dict[str, int] = {}  # guarded: running id -> deadline
        self._waiters: list[_Waiter] = []  # guarded
        self._closed = False  # guarded
        self._lease_us = round(self.lease_duration * 1_000_000)
        self._seq = itertools.count()  # thread-safe in CPython; used under the lock

    def __repr__(self) -> str:
        return f"<MemoryQueue jobs={len(self._jobs)} closed={self._closed}>"

    # -- index maintenance (call with the lock held) ----------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("the queue is closed")

    def _enter(self) -> None:
        """Begin a call: refuse if closed, then apply what time has made due.

        Every call does this, so no caller ever sees a job whose lease has
        expired as running. It costs a heap peek when nothing is due.
        """
        self._check_open()
        self._due(to_us(self.clock.now()))

    def _set(self, job: AnyJob, old: AnyJob | None) -> None:
        job_id = job.metadata.id
        self._jobs[job_id] = job
        if old is not None:
            self._counts[old.status] -= 1
            if old.status == "running":
                self._lease_until.pop(job_id, None)
        self._counts[job.status] += 1
        self._entry.pop(job_id, None)
        if isinstance(job, PendingJob):
            self._enqueue(job)
        elif job.status != "running":
            self._ended.notify_all()

    def _enqueue(self, job: PendingJob[Any]) -> None:
        meta = job.metadata
        seq = next(self._seq)
        self._entry[meta.id] = seq
        if meta.run_after is not None and meta.run_after > self.clock.now():
            heapq.heappush(self._scheduled, (to_us(meta.run_after), seq, meta.id))
            # A sleeping poll must recompute how long to wait.
            self._notify(None)
            return
        self._push_ready(meta.type, (-meta.priority, to_us(meta.created), seq, meta.id))

    def _push_ready(self, job_type: str, entry: _ReadyEntry) -> None:
        heap = self._ready.get(job_type)
        if heap is None:
            heap = self._ready[job_type] = []
        heapq.heappush(heap, entry)
        self._notify(job_type)

    def _notify(self, job_type: str | None) -> None:
        for waiter in self._waiters:
            if job_type is None or waiter.types is None or job_type in waiter.types:
                waiter.cond.notify()

    def _due(self, now: int) -> None:
        """Move due scheduled jobs to the ready heaps; recover expired leases."""
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= now:
            _, seq, job_id = heapq.heappop(scheduled)
            if self._entry.get(job_id) == seq:
                meta = self._jobs[job_id].metadata
                self._push_ready(meta.type, (-meta.priority, to_us(meta.created), seq, job_id))
        leases = self._leases
        while leases and leases[0][0] <= now:
            _, _, job_id = heapq.heappop(leases)
            until = self._lease_until.get(job_id)
            if until is not None and until <= now:
                job = self._jobs[job_id]
                assert isinstance(job, RunningJob)
                recovered = fail_or_retry(
                    job, WORKER_LOST, now=from_us(now), delay=self._recovery_delay(job)
                )
                self._set(recovered, job)

    def _next_wake(self, now: int) -> float | None:
        """Seconds until the next scheduled job or lease expiry, if any."""
        times = [heap[0][0] for heap in (self._scheduled, self._leases) if heap]
        return max(0.0, (min(times) - now) / 1_000_000) if times else None

    def _head(self, job_type: str) -> _ReadyEntry | None:
        heap = self._ready.get(job_type)
        while heap:
            entry = heap[0]
            if self._entry.get(entry[3]) == entry[2]:
                return entry
            heapq.heappop(heap)
        return None

    def _best(self, types: Collection[str] | None) -> _ReadyEntry | None:
        best: _ReadyEntry | None = None
        for job_type in self._ready if types is None else types:
            entry = self._head(job_type)
            if entry is not None and (best is None or entry < best):
                best = entry
        return best

    def _claim(self, job_id: str, worker: str) -> RunningJob[Any, Any]:
        # The job's heap entry goes stale here (``_set`` drops ``_entry``).
        pending = self._jobs[job_id]
        assert isinstance(pending, PendingJob)
        now = self.clock.now()
        running: RunningJob[Any, Any] = start(pending, claim=new_claim(worker), now=now)
        self._set(running, pending)
        until = to_us(now) + self._lease_us
        self._lease_until[job_id] = until
        heapq.heappush(self._leases, (until, next(self._seq), job_id))
        return running

    # -- the contract ----------------------------------------------------------------------

    # Stored jobs hold their values as JSON text and are immutable, so they
    # are decoded into the caller's copies after the lock is released:
    # decoding may run user code (attrs validators of registered classes).

    def create_job(self, job: PendingJob[P]) -> PendingJob[P]:
        stored = self._encode_new(job)
        with self._lock:
            self._enter()
            if stored.metadata.id in self._jobs:
                raise DuplicateJobError(stored.metadata.id)
            self._set(stored, None)
        # The stored form holds text; the caller gets params of its own type back.
        return cast("PendingJob[P]", self._decode(stored))

    def get_job(self, job_id: JobId | str) -> AnyJob | None:
        with self._lock:
            self._enter()
            stored = self._jobs.get(job_id)
        return None if stored is None else self._decode(stored)

    def update_job(
        self, job: AnyJob, old_status: str | None = None, *, claim: Any = None
    ) -> AnyJob:
        submitted = self._encode_update(job)
        expected = submitted.status if old_status is None else old_status
        with self._lock:
            self._enter()
            stored = self._jobs.get(submitted.metadata.id)
            if stored is None:
                raise JobNotFoundError(submitted.metadata.id)
            new = apply_update(stored, submitted, expected, now=self.clock.now(), claim=claim)
            if new.status == "running":
                self._jobs[new.metadata.id] = new  # progress: no index changes
            else:
                self._set(new, stored)
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
        rejected: set[str] = set()
        while True:
            with self._lock:
                self._check_open()
                if stop_event is not None and stop_event.is_set():
                    return None
                now = to_us(self.clock.now())
                self._due(now)
                claimed: RunningJob[Any, Any] | None = None
                if predicate is None:
                    entry = self._best(wanted)
                    if entry is not None:
                        heapq.heappop(self._ready[self._jobs[entry[3]].metadata.type])
                        claimed = self._claim(entry[3], worker)
                    candidates: list[PendingJob[Any]] = []
                else:
                    candidates = self._candidates(wanted, rejected)
                if claimed is None and not candidates:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    wake_in = self._next_wake(now)
                    if wake_in is not None and (remaining is None or wake_in < remaining):
                        remaining = wake_in
                    if waiter is None:
                        waiter = _Waiter(self._lock, wanted)
                    self._waiters.append(waiter)
                    try:
                        waiter.cond.wait(remaining)
                    finally:
                        self._waiters.remove(waiter)
                    continue
            if claimed is not None:
                return self._decode(claimed)
            # The predicate is user code: run it with no lock held.
            for candidate in candidates:
                if predicate is not None and predicate(self._decode(candidate)):
                    claimed = self._claim_if_pending(candidate, worker)
                    if claimed is not None:
                        return self._decode(claimed)
                else:
                    rejected.add(candidate.metadata.id)

    def _candidates(
        self, wanted: frozenset[str] | None, rejected: set[str]
    ) -> list[PendingJob[Any]]:
        """Ready jobs for a predicate to judge, best first.

        The head of each type comes first; only a type whose head the
        predicate already rejected is scanned further. A predicate that
        decides by type therefore costs O(types), like a worker that names
        its types; one that rejects jobs of a type it otherwise takes pays
        a scan of that type.
        """
        entries: list[_ReadyEntry] = []
        for job_type in list(self._ready) if wanted is None else wanted:
            head = self._head(job_type)
            if head is None:
                continue
            if head[3] not in rejected:
                entries.append(head)
                continue
            entries.extend(
                entry
                for entry in self._ready[job_type]
                if self._entry.get(entry[3]) == entry[2] and entry[3] not in rejected
            )
        entries.sort()
        return [self._jobs[entry[3]] for entry in entries]  # type: ignore[misc]

    def _claim_if_pending(self, job: PendingJob[Any], worker: str) -> RunningJob[Any, Any] | None:
        with self._lock:
            self._enter()
            job_id = job.metadata.id
            # Still the very value the predicate saw, and still queued?
            if self._jobs.get(job_id) is not job or job_id not in self._entry:
                return None
            return self._claim(job_id, worker)

    def renew_lease(self, job: RunningJob[Any, Any]) -> bool:
        with self._lock:
            # An expired lease is recovered here before it could be renewed.
            self._enter()
            job_id = job.metadata.id
            stored = self._jobs.get(job_id)
            if not isinstance(stored, RunningJob) or stored.claim.token != job.claim.token:
                return False
            until = to_us(self.clock.now()) + self._lease_us
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
            self._enter()
            stored = self._jobs.get(job_id)
            if stored is None or not isinstance(stored, (PendingJob, RunningJob)):
                return False
            self._set(cancel(stored, now=self.clock.now()), stored)
            return True

    def cleanup_old_jobs(self, retention_hours: float = 24) -> int:
        if not retention_hours >= 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours!r}")
        with self._lock:
            self._enter()
            cutoff = to_us(self.clock.now()) - round(retention_hours * 3_600_000_000)
            old = [
                job
                for job in self._jobs.values()
                if isinstance(job, (CompleteJob, FailedJob, CancelledJob))
                and to_us(job.completed_at) < cutoff
            ]
            for job in old:
                del self._jobs[job.metadata.id]
                self._counts[job.status] -= 1
            return len(old)

    def get_stats(self) -> dict[str, int]:
        with self._lock:
            self._enter()
            return dict(self._counts)

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
                self._ended.wait(remaining)
        return self._decode(job)

    def wake(self) -> None:
        with self._lock:
            self._notify(None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._notify(None)
            self._ended.notify_all()
