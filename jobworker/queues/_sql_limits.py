"""Pauses, concurrency limits and rate limits on the SQL backends.

The state lives in the controls table (``{c}``): one row per job type with
its pause flag and its latest start times (JSON, for the rate window). A
claim that may take a limited type runs in one write transaction that locks
the control rows of the limited types it may take (``FOR UPDATE`` on
PostgreSQL, in type order so two claims never deadlock; SQLite's
``BEGIN IMMEDIATE`` already holds the whole database), recovers expired
leases (their slots are free again), counts the running jobs of each limited
type (per key where the limit has one), reads the rate windows, and then
claims the best ready job among what is left: types at their limit are left
out, and so are the jobs of saturated keys, so other jobs start meanwhile.
The rules themselves are :mod:`jobworker.throttling`'s.

A pause needs no lock: every claim statement leaves out the ready rows of
a paused type (``NOT EXISTS`` on the controls table), so a pause committed
before a claim's statement holds for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Final

from ..errors import InvalidJobError
from ..model import Claim, RunningJob, new_claim
from ..throttling import TypeLimits, rate_admits, rate_opens_at, record_start
from ._rows import COLUMNS, row_to_job

__all__ = ["PAUSED", "READY", "LimitsMixin"]

#: Pending rows that are due (one parameter: the time now).
READY: Final = "status = 'pending' AND (run_after_us IS NULL OR run_after_us <= ?)"
#: The rows of a type that is not paused (a condition on ``{t}``).
PAUSED: Final = "NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.type = {t}.type AND {c}.paused = 1)"
_READY: Final = READY

Tx = Any


class LimitsMixin:
    """The SQL of pauses and limits, mixed into ``SQLQueue`` (which supplies the rest)."""

    #: SQL of a job's concurrency key: one placeholder, for :meth:`_key_arg`.
    KEY_SQL: ClassVar[str]
    KEY: ClassVar[str]
    ARRIVAL: ClassVar[str]
    LOCK_ROW: ClassVar[str]
    SKIP_LOCKED: ClassVar[str]

    # Supplied by SQLQueue.
    registry: Any
    _q: Any
    _write: Any
    _run: Any
    _read: Any
    _now_us: Any
    _lease_us: Any
    _note_lease: Any
    _recover: Any
    _set_aside: Any
    _notify: Any
    _check_job_type: Any

    _opens: threading.local

    def _key_arg(self, field: str) -> str:
        """The parameter of :attr:`KEY_SQL` for the params field *field*."""
        return field

    _announce: Any

    # -- pause ---------------------------------------------------------------------------------

    def pause_type(self, job_type: str) -> bool:
        self._check_job_type(job_type)
        sql = self._q(
            """INSERT INTO {c} (type, paused, starts) VALUES (?, 1, '[]')
            ON CONFLICT (type) DO UPDATE SET paused = 1 WHERE {c}.paused = 0 RETURNING 1"""
        )
        return bool(self._run(sql, (job_type,)))

    def resume_type(self, job_type: str) -> bool:
        self._check_job_type(job_type)

        def resume(tx: Tx) -> bool:
            sql = self._q("UPDATE {c} SET paused = 0 WHERE type = ? AND paused = 1 RETURNING 1")
            done = bool(tx.execute(sql, (job_type,)).fetchall())
            if done:
                self._announce(tx, job_type)
            return done

        done: bool = self._write(resume)
        if done:
            self._notify()
        return done

    def paused_types(self) -> frozenset[str]:
        return frozenset(
            row[0] for row in self._read(self._q("SELECT type FROM {c} WHERE paused = 1"))
        )

    # -- limited claims ----------------------------------------------------------------------

    def _limited_types(self, wanted: Collection[str] | None) -> list[str]:
        """The limited types a claim of *wanted* (``None``: any type) may take, sorted."""
        limits = self.registry.limits
        if not limits:
            return []
        if wanted is None:
            return sorted(limits)
        return sorted(t for t in wanted if t in limits)

    def _rate_opens(self) -> int | None:
        """When a rate window that held back this thread's last claim opens (us), if any."""
        return getattr(self._opens, "at", None)

    def _claim_limited(
        self, wanted: Sequence[str] | None, limited: list[str], worker: str, job_id: str | None
    ) -> Any:
        """Claim the best ready job that no limit holds back, in one transaction.

        Returns the claimed job, ``False`` if the row was malformed (set
        aside), or ``None``. Records in this thread when a rate window that
        holds back a ready job opens (:meth:`_rate_opens`).
        """
        claim = new_claim(worker)
        self._opens.at = None
        result: Any = self._write(
            lambda tx: self._claim_limited_in(tx, wanted, limited, claim, job_id)
        )
        return result

    def _claim_limited_in(
        self,
        tx: Tx,
        wanted: Sequence[str] | None,
        limited: list[str],
        claim: Claim,
        job_id: str | None,
    ) -> Any:
        limits: dict[str, TypeLimits] = dict(self.registry.limits)
        controls = self._lock_controls(tx, limited)
        now: int = self._now_us()  # after the locks: the counts and windows are judged now
        # Lost leases free their slots before the slots are counted.
        self._recover(tx, now)
        blocked: set[str] = set()
        excluded: list[tuple[str, str, list[str]]] = []
        opens: int | None = None
        for job_type in limited:
            limit = limits.get(job_type)
            paused, starts = controls[job_type]
            if limit is None or paused:
                blocked.add(job_type)
                continue
            if not rate_admits(starts, limit, now):
                blocked.add(job_type)
                at = rate_opens_at(starts, limit)
                if (
                    at is not None
                    and (opens is None or at < opens)
                    and self._has_ready(tx, job_type, now)
                ):
                    opens = at
                continue
            if limit.concurrency is None:
                continue
            if limit.key is None:
                count = tx.execute(
                    self._q("SELECT count(*) FROM {t} WHERE status = 'running' AND type = ?"),
                    (job_type,),
                ).fetchone()[0]
                if count >= limit.concurrency:
                    blocked.add(job_type)
            else:
                saturated = tx.execute(
                    self._q(
                        f"""SELECT {self.KEY_SQL} FROM {{t}} WHERE status = 'running' AND type = ?
                        GROUP BY 1 HAVING count(*) >= ?"""
                    ),
                    (self._key_arg(limit.key), job_type, limit.concurrency),
                ).fetchall()
                if saturated:
                    excluded.append((job_type, limit.key, [row[0] for row in saturated]))
        self._opens.at = opens
        where = [_READY, PAUSED]
        args: list[Any] = [now]
        if job_id is not None:
            where.append("id = ?")
            args.append(job_id)
        if wanted is not None:
            allowed = [t for t in wanted if t not in blocked]
            if not allowed:
                return None
            where.append(f"type IN ({', '.join('?' * len(allowed))})")
            args += allowed
        elif blocked:
            where.append(f"type NOT IN ({', '.join('?' * len(blocked))})")
            args += sorted(blocked)
        for job_type, field, keys in excluded:
            where.append(f"NOT (type = ? AND {self.KEY_SQL} IN ({', '.join('?' * len(keys))}))")
            args += [job_type, self._key_arg(field), *keys]
        best = (
            f"SELECT {self.KEY} FROM {{t}} WHERE {' AND '.join(where)} "
            f"ORDER BY priority DESC, created_us, {self.ARRIVAL} LIMIT 1 {self.SKIP_LOCKED}"
        )
        # Started now, as the rate window records it; *now* was read after
        # every wait of the transaction (the row is taken with SKIP LOCKED).
        sql = self._q(
            f"""UPDATE {{t}} SET status = 'running', progress = NULL, result = NULL,
            error = NULL, started_us = ?, completed_us = NULL, claim_token = ?,
            claim_worker = ?, lease_until_us = ? WHERE {self.KEY} = ({best})
            RETURNING {COLUMNS}"""
        )
        until = now + self._lease_us()
        self._note_lease(until)
        row = tx.execute(sql, (now, claim.token, claim.worker, until, *args)).fetchone()
        if row is None:
            return None
        job_type = row[1]
        limit = limits.get(job_type)
        if limit is not None and limit.rate is not None:
            starts = record_start(controls[job_type][1], limit, now)
            tx.execute(
                self._q("UPDATE {c} SET starts = ? WHERE type = ?"), (json.dumps(starts), job_type)
            )
        try:
            job = row_to_job(row)
        except (InvalidJobError, ValueError, OverflowError) as exc:
            self._set_aside(tx, row, f"{type(exc).__name__}: {exc}", token=claim.token)
            return False
        assert isinstance(job, RunningJob)
        return job

    def _lock_controls(self, tx: Tx, types: list[str]) -> dict[str, tuple[bool, list[int]]]:
        """Lock (creating them if missing) the control rows of *types*; return their state."""
        insert = self._q(
            "INSERT INTO {c} (type, paused, starts) VALUES (?, 0, '[]') "
            "ON CONFLICT (type) DO NOTHING"
        )
        for job_type in types:
            tx.execute(insert, (job_type,))
        marks = ", ".join("?" * len(types))
        rows = tx.execute(
            self._q(
                f"SELECT type, paused, starts FROM {{c}} WHERE type IN ({marks}) "
                f"ORDER BY type {self.LOCK_ROW}"
            ),
            types,
        ).fetchall()
        state: dict[str, tuple[bool, list[int]]] = {}
        for job_type, paused, starts in rows:
            state[job_type] = (bool(paused), _starts(starts))
        return state

    def _has_ready(self, tx: Tx, job_type: str, now: int) -> bool:
        sql = self._q(f"SELECT 1 FROM {{t}} WHERE type = ? AND {_READY} LIMIT 1")
        return tx.execute(sql, (job_type, now)).fetchone() is not None


def _starts(text: object) -> list[int]:
    """The start times stored as JSON text; a damaged value counts as none."""
    try:
        value = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, int) and not isinstance(item, bool)]
