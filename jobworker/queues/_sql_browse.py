"""What the dashboard asks of a SQL queue: keyset pages, grouped counts, deletion.

Functions of an :class:`~jobworker.queues._sql.SQLQueue`, kept apart so the
claim and update logic of ``_sql.py`` stays on its own. Every value is a
bound parameter.

Pages are read in the order of the ``created`` index, ``(created_us,
arrival)`` descending, from the row after the cursor: a page costs the rows
it reads, however deep it is. A filter on status, type or user walks the same
index and skips the rows that do not match, so a rare value costs the rows
passed over (see ``bench/dashboard.py`` for the figures).
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any

from .base import _TERMINAL, JobPage, _check_slots, keyset_cursor, parse_keyset_cursor

if TYPE_CHECKING:
    from ._sql import SQLQueue

__all__ = ["browse", "count_by_type", "count_ended", "delete"]


def browse(
    queue: SQLQueue,
    *,
    status: str | None,
    type: str | None,
    user_id: str | None,
    id_contains: str | None,
    cursor: str | None,
    limit: int,
) -> JobPage:
    """Return one keyset page; see :meth:`JobQueue.browse_jobs`."""
    from ._sql import findable  # noqa: PLC0415 (_sql imports this module)

    after = None if cursor is None else parse_keyset_cursor(cursor)
    if not all(findable(value) for value in (type, user_id, id_contains) if value is not None):
        return JobPage((), None)
    queue._recover_if_due()
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    for column, value in (("status", status), ("type", type), ("user_id", user_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if status is not None and status != "pending":
        # Word for word the condition of the status index (schema version 3),
        # so that every planner sees it may use that index.
        where.append("status <> 'pending'")
    if id_contains:
        where.append(queue.CONTAINS)
        args.append(id_contains)
    if after is not None:
        where.append(f"(created_us, {queue.ARRIVAL}) < (?, ?)")
        args.extend(after)
    sql = queue._select(
        " AND ".join(where), f"ORDER BY created_us DESC, {queue.ARRIVAL} DESC LIMIT ?"
    )
    rows = queue._read(sql, (*args, limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    jobs = [queue._decode_row(row) for row in rows]
    # A malformed row met here was set aside as failed: it no longer matches a status filter.
    jobs = [job for job in jobs if status is None or job.status == status]
    next_cursor = keyset_cursor(rows[-1][5], rows[-1][-1]) if more else None
    return JobPage(tuple(jobs), next_cursor)


def count_by_type(queue: SQLQueue) -> dict[str, dict[str, int]]:
    """Return ``{type: {status: n}}`` with one grouped count."""
    queue._recover_if_due()
    counts: dict[str, dict[str, int]] = {}
    for job_type, status, count in queue._read(
        queue._q("SELECT type, status, count(*) FROM {t} GROUP BY type, status")
    ):
        counts.setdefault(job_type, {})[status] = int(count)
    return counts


def count_ended(
    queue: SQLQueue, *, since: _dt.datetime, interval: float, slots: int
) -> dict[str, list[int]]:
    """Return ended jobs per slot; see :meth:`JobQueue.count_ended_jobs`."""
    start, step = _check_slots(since, interval, slots)
    # The same status condition as the partial index on completed_us, so
    # every planner sees that the index covers the query.
    sql = queue._q(
        """SELECT status, (completed_us - ?) / ? AS slot, count(*) FROM {t}
        WHERE status IN ('complete', 'failed', 'cancelled')
        AND completed_us >= ? AND completed_us < ?
        GROUP BY status, slot"""
    )
    counts = {status: [0] * slots for status in _TERMINAL}
    for status, slot, count in queue._read(sql, (start, step, start, start + step * slots)):
        if status in counts and 0 <= int(slot) < slots:
            counts[status][int(slot)] += int(count)
    return counts


def delete(queue: SQLQueue, job_id: Any) -> bool:
    """Delete one ended job; see :meth:`JobQueue.delete_job`."""
    from ._sql import findable  # noqa: PLC0415 (_sql imports this module)

    if not findable(job_id):
        return False
    sql = queue._q("DELETE FROM {t} WHERE id = ? AND status IN ('complete', 'failed', 'cancelled')")
    return bool(queue._autocommit(lambda tx: tx.execute(sql, (job_id,)).rowcount))
