"""SQLQueue: what the SQL backends share, on top of a small dialect.

A backend supplies transactions (:meth:`SQLQueue._write`), plain reads
(:meth:`SQLQueue._read`), its placeholder and row-locking clauses, and how it
tells other processes that a job is ready. Everything else (claims, updates,
recovery, the set-aside of malformed rows, waiting) is here once, so the
SQL backends cannot drift apart.

SQL templates use ``?`` for parameters and ``{t}`` for the jobs table;
:meth:`SQLQueue._q` turns them into the backend's dialect. Times are integer
microseconds since the epoch (see ``_rows``).

Threads: ``_cond`` guards ``_generation`` and ``_closed``; no database call is
made with it held.
"""

from __future__ import annotations

import abc
import heapq
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import partial
from typing import Any, ClassVar, Final, TypeVar, cast

from ..errors import InvalidJobError, JobNotFoundError, QueueClosedError, WaitTimeoutError
from ..model import (
    STATUSES,
    WORKER_LOST,
    AnyJob,
    JobId,
    PendingJob,
    RunningJob,
    apply_update,
    cancel,
    fail_or_retry,
    new_claim,
    release,
    start,
    text_problem,
)
from ._rows import (
    COLUMNS,
    MUTABLE,
    N_COLUMNS,
    from_us,
    mutable_values,
    row_to_job,
    sanitize_row,
    to_us,
    values_of,
)
from .base import JobPredicate, JobQueue

__all__ = ["SQLQueue", "Tx"]

P = TypeVar("P")
T = TypeVar("T")

#: A transaction handle: anything with DB-API ``execute(sql, args)``.
Tx = Any

_PAGE: Final = 16
# Longest wait between two looks at the database in wait_for_job, for
# changes made by processes that send no signal.
_MAX_WAIT_STEP: Final = 0.1
_READY: Final = "status = 'pending' AND (run_after_us IS NULL OR run_after_us <= ?)"


class SQLQueue(JobQueue):
    """The shared logic of the SQL backends; see the module docstring."""

    #: The column that records arrival order.
    ARRIVAL: ClassVar[str]
    #: Appended to a SELECT of rows a transaction is about to change.
    LOCK_ROW: ClassVar[str] = ""
    #: Appended to a SELECT of candidate rows, so concurrent claimers skip them.
    SKIP_LOCKED: ClassVar[str] = ""

    def __init__(self, *, table: str, placeholder: str, **options: Any) -> None:
        super().__init__(**options)
        self._table = table
        self._placeholder = placeholder
        self._queries: dict[str, str] = {}
        self._cond = threading.Condition()
        self._generation = 0  # guarded by _cond: bumped when a job may have become ready
        self._closed = False  # guarded by _cond

    # -- the dialect ---------------------------------------------------------------------

    @abc.abstractmethod
    def _write(self, body: Callable[[Tx], T]) -> T:
        """Run *body* in one write transaction; commit, or roll back and re-raise."""

    @abc.abstractmethod
    def _reading(self, body: Callable[[Tx], T]) -> T:
        """Run *body*, which only reads, outside any write transaction."""

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run one read-only statement (already in dialect) and return its rows."""
        return self._reading(lambda tx: list(tx.execute(sql, args).fetchall()))

    @abc.abstractmethod
    def _insert(self, tx: Tx, values: Sequence[Any]) -> None:
        """Insert a row; raise :class:`DuplicateJobError` if the id exists."""

    def _announce(self, tx: Tx, job_type: str) -> None:
        """Tell other processes, within *tx*, that a job of *job_type* is ready."""

    def _q(self, template: str) -> str:
        """Return *template* in this backend's dialect (cached)."""
        sql = self._queries.get(template)
        if sql is None:
            sql = template.replace("{t}", self._table).replace("?", self._placeholder)
            self._queries[template] = sql
        return sql

    def _is_closed(self) -> bool:
        # A plain read of a bool that is set once and never cleared.
        return self._closed

    def _check_open(self) -> None:
        if self._is_closed():
            raise QueueClosedError("the queue is closed")

    def _now_us(self) -> int:
        return to_us(self.clock.now())

    def _lease_us(self) -> int:
        return round(self.lease_duration * 1_000_000)

    def _notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _select(self, where: str, suffix: str = "") -> str:
        return self._q(f"SELECT {COLUMNS}, {self.ARRIVAL} FROM {{t}} WHERE {where} {suffix}")

    # -- rows ------------------------------------------------------------------------------

    def _store(self, tx: Tx, job: AnyJob, lease_until: int | None) -> None:
        marks = ", ".join("?" * (MUTABLE.count(",") + 2))
        tx.execute(
            self._q(f"UPDATE {{t}} SET ({MUTABLE}, lease_until_us) = ({marks}) WHERE id = ?"),
            (*mutable_values(job), lease_until, job.metadata.id),
        )

    def _set_aside(self, tx: Tx, row: Any, reason: str, **kw: Any) -> AnyJob:
        """Turn a malformed row into a failed job that says why; return it."""
        fixed = sanitize_row(row, reason, self._now_us(), **kw)
        marks = ", ".join("?" * (N_COLUMNS + 1))
        tx.execute(
            self._q(f"UPDATE {{t}} SET ({COLUMNS}, lease_until_us) = ({marks}) WHERE id = ?"),
            (*fixed, None, row[0]),
        )
        return row_to_job(fixed)

    def _load(self, tx: Tx, row: Any) -> AnyJob:
        """Return the stored-form job of *row*; a malformed row is set aside as failed."""
        try:
            return row_to_job(row)
        except (InvalidJobError, ValueError, OverflowError) as exc:
            return self._set_aside(tx, row, f"{type(exc).__name__}: {exc}")

    def _decode_row(self, row: Any) -> AnyJob:
        """Decode a row read outside a transaction, setting it aside if malformed."""
        try:
            return self._decode(row_to_job(row))
        except (InvalidJobError, ValueError, OverflowError):
            return self._decode(self._write(partial(self._reload, job_id=row[0])))

    def _reload(self, tx: Tx, job_id: str) -> AnyJob:
        """Read a job in a write transaction and set it aside unless it decodes."""
        row = tx.execute(self._select("id = ?", self.LOCK_ROW), (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        job = self._load(tx, row)
        try:
            self._decode(job)
        except (InvalidJobError, ValueError) as exc:
            # Values that are not JSON, or no longer fit their registered classes.
            job = self._set_aside(tx, row, f"{type(exc).__name__}: {exc}", keep_params=False)
        return job

    # -- recovery ------------------------------------------------------------------------------

    def _recover(self, tx: Tx, now: int) -> bool:
        """Recover every job whose lease expired, as a failed attempt; return whether any."""
        rows = tx.execute(
            self._select("status = 'running' AND lease_until_us <= ?", self.SKIP_LOCKED), (now,)
        ).fetchall()
        for row in rows:
            job = self._load(tx, row)
            if isinstance(job, RunningJob):
                delay = self._recovery_delay(job)
                recovered = fail_or_retry(job, WORKER_LOST, now=from_us(now), delay=delay)
                self._store(tx, recovered, None)
                if isinstance(recovered, PendingJob):
                    self._announce(tx, job.metadata.type)
        return bool(rows)

    def _recover_if_due(self) -> None:
        """Recover expired leases, if any; one cheap indexed read when there are none."""
        due = self._q("SELECT 1 FROM {t} WHERE status = 'running' AND lease_until_us <= ? LIMIT 1")
        if not self._read(due, (self._now_us(),)):
            return
        if self._write(lambda tx: self._recover(tx, self._now_us())):
            self._notify()

    # -- the contract ------------------------------------------------------------------------

    def _create(self, tx: Tx, stored: PendingJob[str]) -> None:
        self._insert(tx, (*values_of(stored), None))
        self._announce(tx, stored.metadata.type)

    def create_job(self, job: PendingJob[P]) -> PendingJob[P]:
        stored = self._encode_new(job)
        self._write(lambda tx: self._create(tx, stored))
        self._notify()
        return cast("PendingJob[P]", self._decode(stored))

    def get_job(self, job_id: JobId | str) -> AnyJob | None:
        self._recover_if_due()
        if not findable(job_id):
            return None
        rows = self._read(self._select("id = ?"), (job_id,))
        return self._decode_row(rows[0]) if rows else None

    def update_job(
        self, job: AnyJob, old_status: str | None = None, *, claim: Any = None
    ) -> AnyJob:
        submitted = self._encode_update(job)
        expected = submitted.status if old_status is None else old_status
        job_id = submitted.metadata.id

        def update(tx: Tx) -> AnyJob:
            now = self._now_us()
            self._recover(tx, now)
            row = tx.execute(
                self._q(
                    f"SELECT {COLUMNS}, lease_until_us FROM {{t}} WHERE id = ? {self.LOCK_ROW}"
                ),
                (job_id,),
            ).fetchone()
            if row is None:
                raise JobNotFoundError(job_id)
            stored = self._load(tx, row)
            new = apply_update(stored, submitted, expected, now=from_us(now), claim=claim)
            self._store(tx, new, row[-1] if new.status == "running" else None)
            if new.status == "pending":
                self._announce(tx, new.metadata.type)
            return new

        new = self._write(update)
        if new.status != "running":
            self._notify()
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
        # A type no job can have (see findable) matches nothing: leave it out.
        wanted = None if types is None else sorted({t for t in types if findable(t)})
        deadline = None if timeout is None else time.monotonic() + timeout
        rejected: set[str] = set()
        while True:
            self._check_open()
            with self._cond:
                generation = self._generation
            if stop_event is not None and stop_event.is_set():
                return None
            if predicate is None or not rejected:
                # The head, claimed with SKIP LOCKED: concurrent claimers never
                # queue up behind the same row.
                claimed = self._write(lambda tx: self._claim_best(tx, wanted, worker))
            else:
                # The predicate turned a job down in this poll: walk the ready
                # jobs and ask it before claiming.
                claimed = self._claim_accepted(wanted, predicate, worker)
            if claimed is not None:
                try:
                    job = self._decode(claimed)
                except (InvalidJobError, ValueError):
                    # Values that do not decode: set the job aside, look for another.
                    self._write(partial(self._reload, job_id=claimed.metadata.id))
                    continue
                if predicate is None or rejected or self._accepts(predicate, job):
                    return job
                rejected.add(job.metadata.id)
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            wake_in = self._next_wake()
            if wake_in is not None and (remaining is None or wake_in < remaining):
                remaining = wake_in
            self._wait(generation, remaining)

    def _accepts(self, predicate: JobPredicate, job: RunningJob[Any, Any]) -> bool:
        """Ask *predicate* about a job claimed for it; hand the job back if it says no.

        The predicate is user code and runs after the claim's transaction.
        """
        try:
            accepted = predicate(PendingJob(metadata=job.metadata, params=job.params))
        except BaseException:
            self.update_job(release(job), "running", claim=job.claim)
            raise
        if not accepted:
            self.update_job(release(job), "running", claim=job.claim)
        return bool(accepted)

    def _wait(self, generation: int, timeout: float | None) -> None:
        with self._cond:
            # A job made ready since we looked bumped the generation: then
            # look again at once instead of sleeping.
            if self._generation == generation and not self._closed:
                self._cond.wait(timeout)

    def _ready_rows(
        self, tx: Tx, job_type: str | None, now: int, *, after: Any, limit: int, suffix: str = ""
    ) -> list[Any]:
        where = _READY if job_type is None else f"type = ? AND {_READY}"
        args: list[Any] = [] if job_type is None else [job_type]
        args.append(now)
        if after is not None:
            # Keyset paging in (priority DESC, created_us, arrival) order.
            where += (
                f" AND (priority < ? OR (priority = ? AND (created_us, {self.ARRIVAL}) > (?, ?)))"
            )
            args += [after[0], after[0], after[1], after[2]]
        order = f"ORDER BY priority DESC, created_us, {self.ARRIVAL} LIMIT ? {suffix}"
        return cast(list[Any], tx.execute(self._select(where, order), (*args, limit)).fetchall())

    def _claim_row(self, tx: Tx, row: Any, worker: str, now: int) -> AnyJob:
        job = self._load(tx, row)
        if not isinstance(job, PendingJob):
            return job  # set aside as failed
        running = start(job, claim=new_claim(worker), now=from_us(now))
        self._store(tx, running, now + self._lease_us())
        return running

    def _claim_best(
        self, tx: Tx, wanted: list[str] | None, worker: str
    ) -> RunningJob[Any, Any] | None:
        now = self._now_us()
        self._recover(tx, now)
        while True:
            heads = [
                row
                for job_type in (wanted if wanted is not None else [None])
                for row in self._ready_rows(
                    tx, job_type, now, after=None, limit=1, suffix=self.SKIP_LOCKED
                )
            ]
            if not heads:
                return None
            claimed = self._claim_row(tx, min(heads, key=order_key), worker, now)
            if isinstance(claimed, RunningJob):
                return claimed

    def _claim_accepted(
        self, wanted: list[str] | None, predicate: JobPredicate, worker: str
    ) -> RunningJob[Any, Any] | None:
        """Walk ready jobs in order; claim the first that *predicate* accepts.

        The predicate is user code: it runs outside any transaction, and the
        claim re-checks that the job is still pending and due.
        """
        self._recover_if_due()
        now = self._now_us()
        streams = [self._stream(t, now) for t in (wanted if wanted is not None else [None])]
        for row in heapq.merge(*streams, key=order_key):
            job = self._decode_row(row)
            if not isinstance(job, PendingJob) or not predicate(job):
                continue

            def claim(tx: Tx, job_id: str = row[0]) -> RunningJob[Any, Any] | None:
                now = self._now_us()
                fresh = tx.execute(
                    self._select(f"id = ? AND {_READY}", self.SKIP_LOCKED), (job_id, now)
                ).fetchone()
                if fresh is None:
                    return None
                claimed = self._claim_row(tx, fresh, worker, now)
                return claimed if isinstance(claimed, RunningJob) else None

            claimed = self._write(claim)
            if claimed is not None:
                return claimed
        return None

    def _stream(self, job_type: str | None, now: int) -> Iterator[Any]:
        after = None
        while True:
            page = partial(self._ready_rows, job_type=job_type, now=now, after=after, limit=_PAGE)
            rows = self._reading(page)
            yield from rows
            if len(rows) < _PAGE:
                return
            priority, created, arrival = order_key(rows[-1])
            after = (-priority, created, arrival)

    def _next_wake(self) -> float | None:
        """Seconds until a scheduled job falls due or a lease expires, if any."""
        now = self._now_us()
        row = self._read(
            self._q(
                """SELECT min(t) FROM (
                SELECT min(run_after_us) AS t FROM {t}
                WHERE status = 'pending' AND run_after_us > ?
                UNION ALL
                SELECT min(lease_until_us) AS t FROM {t} WHERE status = 'running') AS wakes"""
            ),
            (now,),
        )[0]
        return None if row[0] is None else max(0.0, (row[0] - now) / 1_000_000)

    def renew_lease(self, job: RunningJob[Any, Any]) -> bool:
        def renew(tx: Tx) -> bool:
            now = self._now_us()
            if self._recover(tx, now):
                self._notify()
            cursor = tx.execute(
                self._q(
                    """UPDATE {t} SET lease_until_us = ?
                    WHERE id = ? AND status = 'running' AND claim_token = ?"""
                ),
                (now + self._lease_us(), job.metadata.id, job.claim.token),
            )
            return bool(cursor.rowcount == 1)

        return self._write(renew)

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
        self._recover_if_due()
        if not all(findable(value) for value in (type, user_id) if value is not None):
            return []
        where, args = ["1 = 1"], []
        for column, value in (("status", status), ("type", type), ("user_id", user_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = self._select(
            " AND ".join(where), f"ORDER BY created_us DESC, {self.ARRIVAL} DESC LIMIT ? OFFSET ?"
        )
        while True:
            jobs = [self._decode_row(row) for row in self._read(sql, (*args, limit, offset))]
            # A malformed row met here was set aside as failed: read the page
            # again so the filters hold for it. Each pass sets aside rows for
            # good, so this ends.
            if all(status is None or job.status == status for job in jobs):
                return jobs

    def cancel_job(self, job_id: JobId | str) -> bool:
        if not findable(job_id):
            return False

        def cancel_row(tx: Tx) -> bool:
            now = self._now_us()
            self._recover(tx, now)
            row = tx.execute(self._select("id = ?", self.LOCK_ROW), (job_id,)).fetchone()
            if row is None:
                return False
            job = self._load(tx, row)
            if not isinstance(job, (PendingJob, RunningJob)):
                return False
            self._store(tx, cancel(job, now=from_us(now)), None)
            return True

        done = self._write(cancel_row)
        if done:
            self._notify()
        return done

    def cleanup_old_jobs(self, retention_hours: float = 24) -> int:
        if not retention_hours >= 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours!r}")
        cutoff = self._now_us() - round(retention_hours * 3_600_000_000)
        delete = self._q(
            """DELETE FROM {t} WHERE status IN ('complete', 'failed', 'cancelled')
            AND completed_us < ?"""
        )
        return self._write(lambda tx: int(tx.execute(delete, (cutoff,)).rowcount))

    def get_stats(self) -> dict[str, int]:
        self._recover_if_due()
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, count in self._read(
            self._q("SELECT status, count(*) FROM {t} GROUP BY status")
        ):
            if status in counts:
                counts[status] = int(count)
        return counts

    def wait_for_job(self, job_id: JobId | str, *, timeout: float | None = None) -> AnyJob:
        self._check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        step = 0.001
        while True:
            self._check_open()
            with self._cond:
                generation = self._generation
            job = self.get_job(job_id)
            if job is None:
                raise JobNotFoundError(job_id)
            if job.status not in ("pending", "running"):
                return job
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(job_id, timeout or 0.0)
            # Changes made by other processes may send no signal: look again
            # after a step that grows to _MAX_WAIT_STEP; changes made here wake us.
            step = min(step * 2, _MAX_WAIT_STEP)
            self._wait(generation, step if remaining is None else min(step, remaining))

    def wake(self) -> None:
        self._notify()


def findable(text: str) -> bool:
    """Return whether a stored job could hold *text* (an id, type or user).

    Metadata text is valid Unicode without NUL (the model refuses the rest),
    so a lookup by other text finds nothing, and is answered without asking
    a database that could not even take it as a parameter.
    """
    return isinstance(text, str) and text_problem(text) is None


def order_key(row: Any) -> tuple[int, int, int]:
    """Claim order of a row: priority (higher first), created, then arrival.

    A malformed value sorts as 0 here; claiming the row sets it aside.
    """
    priority, created = row[4], row[5]
    return (
        -priority if isinstance(priority, int) else 0,
        created if isinstance(created, int) else 0,
        row[-1],
    )
