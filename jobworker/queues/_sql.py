"""SQLQueue: what the SQL backends share, on top of a small dialect.

A backend supplies transactions (:meth:`SQLQueue._write`), statements run
outside any transaction (:meth:`SQLQueue._autocommit`), its placeholder and
row-locking clauses, and how it tells other processes that a job is ready.
Everything else (claims, updates, recovery, the set-aside of malformed rows,
waiting) is here once, so the SQL backends cannot drift apart.

A job's common path is one statement per step, each atomic on its own: the
insert; the claim, an ``UPDATE ... WHERE key = (the best ready row)
RETURNING``; the holder's outcome, an ``UPDATE`` fenced by the claim, the
lease and the values the model's transition read (:meth:`SQLQueue._update_fenced`).
Everything else, and every case the fenced update does not cover, takes a
transaction that reads the row, applies the model's transition and writes it.
Expired leases are recovered before each call, but the database is asked only
when a lease may have expired (:meth:`SQLQueue._recover_if_due`).

SQL templates use ``?`` for parameters, ``{t}`` for the jobs table, ``{c}``
for the controls table (pauses and rate windows: see ``_sql_limits``) and
``{now}`` for the time a statement writes a lease at; :meth:`SQLQueue._q`
turns them into the backend's dialect. Times are integer microseconds since
the epoch (see ``_rows``).

A lease is computed from a clock read after every wait that precedes its
write: a claim, a renewal and the fence of an update read the time in the
statement itself (``{now}``: the queue's clock read before the statement,
or later, whichever is later: see :attr:`SQLQueue.NOW`), after the locks
it waited for; a transaction reads the clock after the rows it locks. So a
slow round trip, a lock held by another connection or a slow recovery step
never grants a lease that is already partly spent.

Threads: ``_lock`` (under ``_cond`` and every idle poll's Condition) guards
``_generation``, ``_changes``, ``_closed`` and ``_idle``; ``_lease_lock``
guards the recovery bookkeeping. No database call is made with either held.

Wake-ups: a job that becomes ready wakes one idle poll that takes its type
(see ``_wakeups``); a job that changes otherwise wakes only
:meth:`~SQLQueue.wait_for_job`'s waiters, never the polls.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as _dt
import heapq
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import partial
from typing import Any, ClassVar, Final, TypeVar, cast

from ..attempts import MAX_ATTEMPTS_KEPT, attempts_to_json
from ..errors import (
    DuplicateJobError,
    InvalidJobError,
    JobNotFoundError,
    JobworkerError,
    LeaseLostError,
    QueueClosedError,
    StaleJobError,
    UniqueKeyTakenError,
    WaitTimeoutError,
    safe_repr,
)
from ..model import (
    STATUSES,
    WORKER_LOST,
    AnyJob,
    Claim,
    CompleteJob,
    FailedJob,
    JobId,
    PendingJob,
    RunningJob,
    apply_update,
    cancel,
    fail_or_retry,
    holds_unique_key,
    new_claim,
    release,
    text_problem,
)
from ..serialization import with_params
from . import _sql_browse
from ._rows import (
    COLUMNS,
    MUTABLE,
    N_COLUMNS,
    from_us,
    mutable_values,
    row_to_job,
    sanitize_row,
    to_us,
)
from ._sql_limits import PAUSED, READY, LimitsMixin
from ._wakeups import IdleWaiters, Waiter
from .base import JobPage, JobPredicate, JobQueue

__all__ = ["SQLQueue", "Tx"]

P = TypeVar("P")
T = TypeVar("T")

#: A transaction handle: anything with DB-API ``execute(sql, args)``.
Tx = Any

_PAGE: Final = 16
# Longest wait between two looks at the database in wait_for_job, for
# changes made by processes that send no signal.
_MAX_WAIT_STEP: Final = 0.1
# Longest time between two looks for expired leases, for those another
# process grants with a shorter lease_duration than this queue's.
_RECOVERY_REFRESH: Final = 1.0
_READY: Final = READY


class SQLQueue(LimitsMixin, JobQueue):
    """The shared logic of the SQL backends; see the module docstring."""

    #: The column that records arrival order.
    ARRIVAL: ClassVar[str]
    #: The unique, indexed column a claim's UPDATE finds its row by.
    KEY: ClassVar[str]
    #: Appended to a SELECT of rows a transaction is about to change.
    LOCK_ROW: ClassVar[str] = ""
    #: Appended to a SELECT of candidate rows, so concurrent claimers skip them.
    SKIP_LOCKED: ClassVar[str] = ""
    #: ``run_after_us`` equal to a parameter, NULL included.
    SAME_RUN_AFTER: ClassVar[str] = "run_after_us IS ?"
    SAME_ATTEMPTS: ClassVar[str] = "attempts IS ?"
    SAME_TIME_LIMIT: ClassVar[str] = "time_limit IS ?"
    #: Conditions that a running row's values have the types a job needs,
    #: where the schema does not enforce them (see _update_fenced).
    WELL_TYPED: ClassVar[str] = ""
    #: The condition that a row holds its unique key (see jobworker.unique):
    #: the predicate of the unique index on ``unique_key``.
    HELD: ClassVar[str] = (
        "unique_key IS NOT NULL AND instr(unique_states, ',' || status || ',') > 0"
    )
    #: The time now, in a statement that writes or checks a lease: an
    #: expression of one parameter (the queue's clock, read before the
    #: statement) evaluated when the statement runs, after its waits.
    NOW: ClassVar[str] = "?"
    #: The condition that ``id`` contains a parameter's text, case-sensitive.
    CONTAINS: ClassVar[str] = "instr(id, ?) > 0"

    def __init__(self, *, table: str, controls: str, placeholder: str, **options: Any) -> None:
        super().__init__(**options)
        self._table = table
        self._controls = controls
        # Per thread: when a rate window that held back its last claim opens.
        self._opens = threading.local()
        self._placeholder = placeholder
        self._queries: dict[str, str] = {}
        self._claim_sqls: dict[int | None, str] = {}
        self._lock = threading.Lock()
        # wait_for_job's waiters sleep on _cond; idle polls on their own Conditions.
        self._cond = threading.Condition(self._lock)
        # Bumped when a job may have become ready and no idle poll was woken
        # for it: a poll in flight (between its claim and its sleep) looks again.
        self._generation = 0
        self._changes = 0  # bumped when any job changes, for wait_for_job
        self._closed = False
        self._idle = IdleWaiters()
        # Recovery bookkeeping (see _recover_if_due), guarded by _lease_lock.
        # Reads without the lock are fine: a stale value only makes a look
        # at the database happen sooner.
        self._lease_lock = threading.Lock()
        self._recovery_due = -1  # queue-clock us by which some lease may have expired
        self._recovery_refresh_at = 0.0  # monotonic time of the next look in any case
        self._grants = 0  # leases granted by this queue, to spot one granted during a look
        self._recovery_refresh = min(_RECOVERY_REFRESH, self.lease_duration / 4)

    # -- the dialect ---------------------------------------------------------------------

    @abc.abstractmethod
    def _write(self, body: Callable[[Tx], T]) -> T:
        """Run *body* in one write transaction; commit, or roll back and re-raise."""

    @abc.abstractmethod
    def _autocommit(self, body: Callable[[Tx], T], what: str = "write") -> T:
        """Run *body* outside any transaction: each statement commits on its own."""

    def _reading(self, body: Callable[[Tx], T]) -> T:
        """Run *body*, which only reads, outside any write transaction."""
        return self._autocommit(body, "read")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run one read-only statement (already in dialect) and return its rows."""
        return self._reading(lambda tx: list(tx.execute(sql, args).fetchall()))

    def _run(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Run one statement with RETURNING (already in dialect) on its own; return its rows.

        One statement is atomic, so it needs no explicit transaction: one
        round trip instead of three.
        """
        return self._autocommit(lambda tx: list(tx.execute(sql, args).fetchall()))

    @abc.abstractmethod
    def _insert(self, tx: Tx, stored: PendingJob[str]) -> None:
        """Insert the row of a new job and announce it, in *tx*.

        :raises DuplicateJobError: the id exists (and *tx* can go on).
        """

    def _conflict(self, tx: Tx, stored: PendingJob[str]) -> Exception | None:
        """Say why *stored* was not inserted: its id or its unique key is taken.

        Returns the error to raise, or ``None`` when neither is taken any
        more (the holder let its key go since the insert): then insert again.
        """
        meta = stored.metadata
        if tx.execute(self._q("SELECT 1 FROM {t} WHERE id = ?"), (meta.id,)).fetchone():
            return DuplicateJobError(meta.id)
        if meta.unique_key is None:
            return None
        holder = self._key_holder(tx, meta.unique_key)
        return None if holder is None else UniqueKeyTakenError(meta.unique_key, holder, meta.id)

    def _key_holder(self, tx: Tx, key: str) -> str | None:
        """Return the id of the job that holds *key*, if any."""
        row = tx.execute(
            self._q(f"SELECT id FROM {{t}} WHERE unique_key = ? AND {self.HELD}"), (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _is_unique_violation(self, exc: BaseException) -> bool:
        """Return whether *exc*, raised by a statement, is a unique constraint's refusal."""
        return False

    def _announce(self, tx: Tx, job_type: str) -> None:
        """Tell other processes, within *tx*, that a job of *job_type* is ready."""

    def _best_of_types(self, count: int) -> str:
        """Return a subquery: the KEY of the best ready row among *count* types.

        Its parameters are, for each type, the type and the time now. The
        head of each type comes from that type's index, so the cost does not
        grow with the jobs of other types.
        """
        head = (
            f"SELECT {self.KEY} AS k, priority AS p, created_us AS c, {self.ARRIVAL} AS a "
            f"FROM {{t}} WHERE type = ? AND {_READY} AND {PAUSED} "
            f"ORDER BY priority DESC, created_us, {self.ARRIVAL} LIMIT 1"
        )
        heads = " UNION ALL ".join([f"SELECT * FROM ({head})"] * count)
        return f"SELECT k FROM ({heads}) AS heads ORDER BY p DESC, c, a LIMIT 1"

    def _best_of_types_args(self, wanted: list[str], now: int) -> list[Any]:
        return [value for job_type in wanted for value in (job_type, now)]

    def _q(self, template: str) -> str:
        """Return *template* in this backend's dialect (cached)."""
        sql = self._queries.get(template)
        if sql is None:
            sql = (
                template.replace("{now}", self._now_sql())
                .replace("{t}", self._table)
                .replace("{c}", self._controls)
                .replace("?", self._placeholder)
            )
            self._queries[template] = sql
        return sql

    def _now_sql(self) -> str:
        """Return the SQL of ``{now}`` (see :attr:`NOW`)."""
        return self.NOW

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
        """Wake every waiter: polls and wait_for_job alike."""
        with self._lock:
            self._generation += 1
            self._changes += 1
            self._cond.notify_all()
            self._idle.wake_all()

    def _job_ready(self, job_type: str) -> None:
        """Wake one idle poll that takes *job_type* (a job of it became ready)."""
        with self._lock:
            self._changes += 1
            self._cond.notify_all()
            if not self._idle.wake_one(job_type):
                self._generation += 1

    def _mark_closed(self) -> bool:
        """Refuse further calls and wake every waiter; return whether it was open."""
        with self._lock:
            was_open = not self._closed
            self._closed = True
            self._cond.notify_all()
            self._idle.wake_all()
        return was_open

    def _job_changed(self) -> None:
        """Wake wait_for_job's waiters (a job changed, and none became ready)."""
        with self._lock:
            self._changes += 1
            self._cond.notify_all()

    def _select(self, where: str, suffix: str = "") -> str:
        return self._q(f"SELECT {COLUMNS}, {self.ARRIVAL} FROM {{t}} WHERE {where} {suffix}")

    def _select_leased(self) -> str:
        """A SELECT of one row by id, locked, with its lease expiry last."""
        return self._q(f"SELECT {COLUMNS}, lease_until_us FROM {{t}} WHERE id = ? {self.LOCK_ROW}")

    # -- rows ------------------------------------------------------------------------------

    def _store(self, tx: Tx, job: AnyJob, lease_until: int | None) -> None:
        marks = ", ".join("?" * (MUTABLE.count(",") + 2))
        tx.execute(
            self._q(f"UPDATE {{t}} SET ({MUTABLE}, lease_until_us) = ({marks}) WHERE id = ?"),
            (*mutable_values(job), lease_until, job.metadata.id),
        )

    def _set_aside(
        self, tx: Tx, row: Any, reason: str, *, token: str | None = None, **kw: Any
    ) -> AnyJob:
        """Turn a malformed row into a failed job that says why; return it.

        With *token*, only while the row is still held by that claim.
        """
        fixed = sanitize_row(row, reason, self._now_us(), **kw)
        marks = ", ".join("?" * (N_COLUMNS + 1))
        where, args = (
            ("id = ?", [row[0]])
            if token is None
            else ("id = ? AND claim_token = ?", [row[0], token])
        )
        tx.execute(
            self._q(f"UPDATE {{t}} SET ({COLUMNS}, lease_until_us) = ({marks}) WHERE {where}"),
            (*fixed, None, *args),
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
                self._expire(tx, job, now)
        return bool(rows)

    def _expire(self, tx: Tx, job: RunningJob[Any, Any], now: int) -> AnyJob:
        """Store *job*, whose lease expired, as a failed attempt ("worker lost"); return it."""
        delay = self._recovery_delay(job)
        recovered = fail_or_retry(job, WORKER_LOST, now=from_us(now), delay=delay)
        self._store(tx, recovered, None)
        if isinstance(recovered, PendingJob):
            self._announce(tx, job.metadata.type)
        return recovered

    def _expire_row(self, tx: Tx, row: Any, job: AnyJob, now: int) -> AnyJob:
        """Return *job* (read with its lease expiry last in *row*), recovered if that expired."""
        lease = row[-1]
        if isinstance(job, RunningJob) and isinstance(lease, int) and lease <= now:
            return self._expire(tx, job, now)
        return job

    def _note_lease(self, until: int) -> None:
        """Record a lease about to be granted here, expiring at *until*."""
        with self._lease_lock:
            self._grants += 1
            self._recovery_due = min(self._recovery_due, until)

    def _recover_if_due(self, now: int | None = None) -> int:
        """Recover every expired lease, asking the database only when one may have expired.

        The queue keeps the earliest lease expiry it has seen in the
        database or granted itself (``_recovery_due``). Until then, and for
        at most ``_recovery_refresh`` seconds, no lease can have expired but
        one granted after the last look, by another queue object or process,
        with a shorter ``lease_duration`` than this queue's. So a lease
        granted by this queue is recovered by its first call after the lease
        expires, exactly as if every call recovered; any other within
        ``_recovery_refresh`` seconds of that (a second at most, well inside
        a lease). Between looks a call costs no statement. Returns the time it took as
        now (*now*, if given), for the caller to go on with.
        """
        if now is None:
            now = self._now_us()
        if now < self._recovery_due and time.monotonic() < self._recovery_refresh_at:
            return now
        with self._lease_lock:
            grants = self._grants
        refresh_at = time.monotonic() + self._recovery_refresh
        earliest = self._earliest_lease()
        if earliest is not None and earliest <= now:
            if self._write(lambda tx: self._recover(tx, self._now_us())):
                self._notify()
            # Rows another process was recovering were skipped: they keep this due.
            earliest = self._earliest_lease()
        # A lease granted after the look (by this queue's duration) ends no sooner.
        due = now + self._lease_us()
        if earliest is not None and earliest < due:
            due = earliest
        with self._lease_lock:
            if self._grants != grants:
                # A lease granted during the look may be earlier than what it saw.
                due = min(due, self._recovery_due)
            self._recovery_due = due
            self._recovery_refresh_at = refresh_at
        return now

    def _earliest_lease(self) -> int | None:
        sql = self._q("SELECT min(lease_until_us) FROM {t} WHERE status = 'running'")
        value = self._read(sql)[0][0]
        return value if isinstance(value, int) else None

    # -- the contract ------------------------------------------------------------------------

    def create_job(self, job: PendingJob[P]) -> PendingJob[P]:
        stored, created = self._encode_new(job)
        self._autocommit(lambda tx: self._insert(tx, stored))
        self._wake_local(created.metadata.type)
        return created

    def _wake_local(self, job_type: str) -> None:
        """Wake a poll of this process for a job of *job_type* created here."""
        self._job_ready(job_type)

    def _get_in(self, tx: Tx, job_id: JobId | str) -> AnyJob | None:
        """Return the job *job_id* as the transaction *tx* sees it; for ``get_job(connection=)``.

        Reads only: a row that does not decode raises rather than being set
        aside, which would write in the caller's transaction.
        """
        if not findable(job_id):
            return None
        row = tx.execute(self._select("id = ?"), (job_id,)).fetchone()
        return None if row is None else self._decode(row_to_job(row))

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
        now = self._recover_if_due()
        new = self._update_fenced(submitted, expected, claim, now)
        if new is None:
            new = self._write(
                partial(self._update_row, submitted=submitted, expected=expected, claim=claim)
            )
        if new.status == "pending":
            self._wake_local(new.metadata.type)
        elif new.status != "running":
            self._job_changed()
            if new.metadata.type in self.registry.limits:
                # A slot of a limited type was freed: polls held back by it may claim.
                self._notify()
                self._slot_freed(new.metadata.type)
        return self._decode(new)

    def _slot_freed(self, job_type: str) -> None:
        """Tell other processes that a job of the limited *job_type* stopped running."""

    def _update_row(self, tx: Tx, submitted: AnyJob, expected: str, claim: Any) -> AnyJob:
        """The general update: read the row, apply the model's transition, write it."""
        job_id = submitted.metadata.id
        row = tx.execute(self._select_leased(), (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        now = self._now_us()  # after the row's lock: a lease is judged at the write
        stored = self._expire_row(tx, row, self._load(tx, row), now)
        new = apply_update(stored, submitted, expected, now=from_us(now), claim=claim)
        key = new.metadata.unique_key
        takes_key = key is not None and holds_unique_key(new) and not holds_unique_key(stored)
        if takes_key:
            # A requeue into the key's scope. The unique index decides; this
            # read only names the holder in the error (and spares PostgreSQL
            # an aborted transaction in the usual case).
            assert key is not None
            holder = self._key_holder(tx, key)
            if holder is not None:
                raise UniqueKeyTakenError(key, holder, job_id)
        try:
            self._store(tx, new, row[-1] if new.status == "running" else None)
        except Exception as exc:  # broad: each driver has its own integrity error class
            if takes_key and key is not None and self._is_unique_violation(exc):
                raise UniqueKeyTakenError(key, None, job_id) from None
            raise
        if new.status == "pending":
            self._announce(tx, new.metadata.type)
        return new

    def _update_fenced(
        self, submitted: AnyJob, expected: str, claim: Any, now: int
    ) -> AnyJob | None:
        """Store a holder's progress, result or failure in one statement; ``None`` if not done.

        The model computes the new job from the running job the holder was
        given (``held``, rebuilt from what it submits). The UPDATE applies
        only while the stored row still is that job: same claim, a lease not
        yet expired, and the same values of every column the transition
        reads. Then the model's answer over the stored job is the same, so
        this is the general path without its read and its transaction.
        Anything else changes nothing here and takes the general path, which
        raises the right error: another status or claim, an expired lease,
        metadata that differs, a row of the wrong types, a retry.
        """
        if expected != "running":
            return None
        if isinstance(submitted, RunningJob):
            claim = submitted.claim
        elif not isinstance(submitted, (CompleteJob, FailedJob)):
            return None
        if not isinstance(claim, Claim):
            return None
        meta = submitted.metadata
        # The attempts before this one: a failed attempt's outcome carries
        # them and itself; a whole history may have dropped its oldest.
        history = submitted.attempts
        if isinstance(submitted, FailedJob):
            if not history or len(history) >= MAX_ATTEMPTS_KEPT:
                return None
            history = history[:-1]
        held: RunningJob[None, Any] = RunningJob(
            meta, None, submitted.started_at, claim, None, history
        )
        try:
            new = apply_update(held, submitted, expected, now=from_us(now), claim=claim)
        except JobworkerError:
            return None
        keep_lease = "lease_until_us" if new.status == "running" else "NULL"
        marks = ", ".join("?" * (MUTABLE.count(",") + 1))
        sql = self._q(
            f"""UPDATE {{t}} SET ({MUTABLE}, lease_until_us) = ({marks}, {keep_lease})
            WHERE id = ? AND status = 'running' AND claim_token = ? AND claim_worker = ?
            AND lease_until_us > {{now}} AND started_us = ? AND type = ? AND user_id = ?
            AND priority = ? AND created_us = ? AND retry_count = ? AND max_retries = ?
            AND {self.SAME_RUN_AFTER} AND {self.SAME_ATTEMPTS} AND {self.SAME_TIME_LIMIT}
            {self.WELL_TYPED}
            RETURNING params"""
        )
        try:
            args = (
                *mutable_values(new),
                meta.id,
                claim.token,
                claim.worker,
                now,
                to_us(submitted.started_at),
                meta.type,
                meta.user_id,
                meta.priority,
                to_us(meta.created),
                meta.retry_count,
                meta.max_retries,
                None if meta.run_after is None else to_us(meta.run_after),
                attempts_to_json(history),
                meta.time_limit,
            )
        except (TypeError, ValueError, OverflowError):
            return None  # a submitted time the general path does not read anyway
        rows = self._run(sql, args)
        if not rows:
            return None
        # Params are the one value the transition keeps unread: take the stored ones.
        return with_params(new, rows[0][0])

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
        waiter: Waiter | None = None
        # The job type a wake-up chose this poll for, until the poll answers
        # it: by claiming a job of that type, or by finding none (another
        # poll took it). Any other way out passes it on to another poll.
        woken: str | None = None
        try:
            while True:
                self._check_open()
                with self._lock:
                    generation = self._generation
                if stop_event is not None and stop_event.is_set():
                    return None
                if predicate is None or not rejected:
                    # The head, claimed with SKIP LOCKED: concurrent claimers never
                    # queue up behind the same row.
                    claimed = self._claim_best(wanted, worker)
                else:
                    # The predicate turned a job down in this poll: walk the ready
                    # jobs and ask it before claiming.
                    claimed = self._claim_accepted(wanted, predicate, worker, rejected)
                if claimed is not None:
                    try:
                        job = self._decode(claimed)
                    except (InvalidJobError, ValueError):
                        # Values that do not decode: set the job aside, look for another.
                        self._write(partial(self._reload, job_id=claimed.metadata.id))
                        continue
                    if predicate is None or rejected or self._accepts(predicate, job):
                        if job.metadata.type == woken:
                            woken = None
                        return job
                    rejected.add(job.metadata.id)
                    continue
                woken = None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                wake_in = self._next_wake()
                if wake_in is not None and (remaining is None or wake_in < remaining):
                    remaining = wake_in
                self._before_wait()
                with self._lock:
                    # A job made ready since we looked, and no idle poll woken
                    # for it, bumped the generation: look again at once.
                    if self._generation != generation or self._closed:
                        continue
                    if waiter is None:
                        waiter = Waiter(self._lock, None if wanted is None else frozenset(wanted))
                    self._idle.sleep(waiter, remaining)
                    woken, waiter.woken = waiter.woken, None
        finally:
            if woken is not None:
                self._job_ready(woken)

    def _accepts(self, predicate: JobPredicate, job: RunningJob[Any, Any]) -> bool:
        """Ask *predicate* about a job claimed for it; hand the job back if it says no.

        The predicate is user code and runs after the claim's statement.
        """
        try:
            accepted = predicate(PendingJob(job.metadata, job.params, job.attempts))
        except BaseException:
            self._hand_back(job)
            raise
        if not accepted:
            self._hand_back(job)
        return bool(accepted)

    def _hand_back(self, job: RunningJob[Any, Any]) -> None:
        """Return a job claimed for a predicate that turned it down to pending, unrun."""
        # Cancelled, recovered or deleted meanwhile: no longer ours to give back.
        with contextlib.suppress(StaleJobError, LeaseLostError, JobNotFoundError):
            self.update_job(release(job), "running", claim=job.claim)

    def _before_wait(self) -> None:
        """Prepare to be woken by other processes; called before a poll sleeps (no lock held)."""

    def _wait(self, changes: int, timeout: float | None) -> None:
        with self._lock:
            # A job that changed since we looked bumped the count: then
            # look again at once instead of sleeping.
            if self._changes == changes and not self._closed:
                self._cond.wait(timeout)

    def _ready_rows(
        self, tx: Tx, job_type: str | None, now: int, *, after: Any, limit: int, suffix: str = ""
    ) -> list[Any]:
        where = f"{_READY} AND {PAUSED}"
        if job_type is not None:
            where = f"type = ? AND {where}"
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

    def _claim_sql(self, kind: int | None) -> str:
        """Return the claim statement for *kind* (cached).

        Kinds: ``None``, any type; ``n``, one of *n* types; ``0``, one job
        by id. The values written are those of :func:`jobworker.model.start`:
        running, started now, under a new claim, with no progress, result or
        error; the row's metadata is left as it is.
        """
        sql = self._claim_sqls.get(kind)
        if sql is not None:
            return sql
        order = f"ORDER BY priority DESC, created_us, {self.ARRIVAL} LIMIT 1 {self.SKIP_LOCKED}"
        ready = f"{_READY} AND {PAUSED}"
        if kind is None:
            best = f"SELECT {self.KEY} FROM {{t}} WHERE {ready} {order}"
        elif kind == 0:
            best = f"SELECT {self.KEY} FROM {{t}} WHERE id = ? AND {ready} {self.SKIP_LOCKED}"
        elif kind == 1:
            best = f"SELECT {self.KEY} FROM {{t}} WHERE type = ? AND {ready} {order}"
        else:
            best = self._best_of_types(kind)
        sql = self._q(
            f"""UPDATE {{t}} SET status = 'running', progress = NULL, result = NULL,
            error = NULL, started_us = {{now}}, completed_us = NULL, claim_token = ?,
            claim_worker = ?, lease_until_us = {{now}} + ? WHERE {self.KEY} = ({best})
            RETURNING {COLUMNS}"""
        )
        self._claim_sqls[kind] = sql
        return sql

    def _claim(self, kind: int | None, best_args: Sequence[Any], worker: str, now: int) -> Any:
        """Claim, in one statement, the best ready row of *kind* (see _claim_sql).

        Returns the claimed job, ``False`` if the row was malformed (set
        aside), or ``None`` if there was no such row.
        """
        claim = new_claim(worker)
        # The lease written ends no sooner (see NOW): due no later than this.
        self._note_lease(now + self._lease_us())
        args = (now, claim.token, claim.worker, now, self._lease_us(), *best_args)
        rows = self._run(self._claim_sql(kind), args)
        if not rows:
            return None
        row = rows[0]
        try:
            job = row_to_job(row)
        except (InvalidJobError, ValueError, OverflowError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._autocommit(lambda tx: self._set_aside(tx, row, reason, token=claim.token))
            return False
        assert isinstance(job, RunningJob)
        return job

    def _claim_best(self, wanted: list[str] | None, worker: str) -> RunningJob[Any, Any] | None:
        now = self._recover_if_due()
        if wanted is not None and not wanted:
            return None
        limited = self._limited_types(wanted)
        if limited:
            while True:
                claimed = self._claim_limited(wanted, limited, worker, None)
                if claimed is not False:
                    return cast("RunningJob[Any, Any] | None", claimed)
        self._opens.at = None
        kind = None if wanted is None else len(wanted)
        while True:
            if wanted is None:
                args: list[Any] = [now]
            elif len(wanted) == 1:
                args = [wanted[0], now]
            else:
                args = self._best_of_types_args(wanted, now)
            claimed = self._claim(kind, args, worker, now)
            if claimed is not False:
                return cast("RunningJob[Any, Any] | None", claimed)
            now = self._now_us()

    def _claim_accepted(
        self, wanted: list[str] | None, predicate: JobPredicate, worker: str, rejected: set[str]
    ) -> RunningJob[Any, Any] | None:
        """Walk ready jobs in order; claim the first that *predicate* accepts.

        The predicate is user code: it runs outside any transaction, and the
        claim re-checks that the job is still pending and due. It is asked
        once a poll about each job: the ids it turned down go in *rejected*.
        """
        now = self._recover_if_due()
        streams = [self._stream(t, now) for t in (wanted if wanted is not None else [None])]
        for row in heapq.merge(*streams, key=order_key):
            if row[0] in rejected:
                continue
            job = self._decode_row(row)
            if not isinstance(job, PendingJob):
                continue
            if not predicate(job):
                rejected.add(job.metadata.id)
                continue
            if row[1] in self.registry.limits:
                claimed = self._claim_limited([row[1]], [row[1]], worker, row[0])
            else:
                now = self._now_us()
                claimed = self._claim(0, (row[0], now), worker, now)
            if claimed:
                return cast("RunningJob[Any, Any]", claimed)
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
        wake = row[0]
        opens = self._rate_opens()
        if opens is not None and (wake is None or opens < wake):
            # A rate window holds back a ready job: wake when it opens.
            wake = opens
        return None if wake is None else max(0.0, (wake - now) / 1_000_000)

    def renew_lease(self, job: RunningJob[Any, Any]) -> bool:
        now = self._recover_if_due()
        # An expired lease is not renewed: its job is recovered, not held.
        sql = self._q(
            """UPDATE {t} SET lease_until_us = {now} + ? WHERE id = ? AND status = 'running'
            AND claim_token = ? AND lease_until_us > {now} RETURNING 1"""
        )
        args = (now, self._lease_us(), job.metadata.id, job.claim.token, now)
        return bool(self._run(sql, args))

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
        self._recover_if_due()

        def cancel_row(tx: Tx) -> bool:
            row = tx.execute(self._select_leased(), (job_id,)).fetchone()
            if row is None:
                return False
            now = self._now_us()  # after the row's lock
            job = self._expire_row(tx, row, self._load(tx, row), now)
            if not isinstance(job, (PendingJob, RunningJob)):
                return False
            self._store(tx, cancel(job, now=from_us(now)), None)
            return True

        done = self._write(cancel_row)
        if done:
            self._job_changed()
        return done

    def cleanup_old_jobs(self, retention_hours: float = 24) -> int:
        if not retention_hours >= 0:
            raise ValueError(f"retention_hours must be >= 0, got {safe_repr(retention_hours)}")
        cutoff = self._now_us() - round(retention_hours * 3_600_000_000)
        delete = self._q(
            """DELETE FROM {t} WHERE status IN ('complete', 'failed', 'cancelled')
            AND completed_us < ?"""
        )
        return self._autocommit(lambda tx: int(tx.execute(delete, (cutoff,)).rowcount))

    def get_stats(self) -> dict[str, int]:
        self._recover_if_due()
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, count in self._read(
            self._q("SELECT status, count(*) FROM {t} GROUP BY status")
        ):
            if status in counts:
                counts[status] = int(count)
        return counts

    def get_type_stats(self) -> dict[str, dict[str, int]]:
        self._recover_if_due()
        by_type: dict[str, dict[str, int]] = {}
        for job_type, status, count in self._read(
            self._q("SELECT type, status, count(*) FROM {t} GROUP BY type, status")
        ):
            counts = by_type.get(job_type)
            if counts is None:
                counts = by_type[job_type] = dict.fromkeys(STATUSES, 0)
            if status in counts:
                counts[status] = int(count)
        return by_type

    def wait_for_job(self, job_id: JobId | str, *, timeout: float | None = None) -> AnyJob:
        self._check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        step = 0.001
        while True:
            self._check_open()
            with self._lock:
                changes = self._changes
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
            self._wait(changes, step if remaining is None else min(step, remaining))

    def wake(self, job_type: str | None = None) -> None:
        if job_type is None:
            self._notify()
        else:
            self._wake_local(job_type)

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
        return _sql_browse.browse(
            self,
            status=status,
            type=type,
            user_id=user_id,
            id_contains=id_contains,
            cursor=cursor,
            limit=limit,
        )

    def count_jobs_by_type(self) -> dict[str, dict[str, int]]:
        return _sql_browse.count_by_type(self)

    def count_ended_jobs(
        self, *, since: _dt.datetime, interval: float, slots: int
    ) -> dict[str, list[int]]:
        return _sql_browse.count_ended(self, since=since, interval=interval, slots=slots)

    def delete_job(self, job_id: JobId | str) -> bool:
        return _sql_browse.delete(self, job_id)


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
