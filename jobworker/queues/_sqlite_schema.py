"""The SQLite schema of SQLiteQueue, its version, and forward migrations.

The version lives in ``jobworker_meta``; each migration moves the schema up
by one and runs in the same transaction as the version bump, so a crash
leaves either the old schema or the new one.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from ..errors import BackendError

__all__ = ["SCHEMA_VERSION", "check_schema", "migrate"]

_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """
        CREATE TABLE jobworker_jobs (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            user_id TEXT NOT NULL,
            status TEXT NOT NULL,
            priority INTEGER NOT NULL,
            created_us INTEGER NOT NULL,
            retry_count INTEGER NOT NULL,
            max_retries INTEGER NOT NULL,
            run_after_us INTEGER,
            params TEXT NOT NULL,
            progress TEXT,
            result TEXT,
            error TEXT,
            started_us INTEGER,
            completed_us INTEGER,
            claim_token TEXT,
            claim_worker TEXT,
            lease_until_us INTEGER
        )
        """,
        # Claims: the best ready job of one type, or of any type, read in index order.
        """
        CREATE INDEX jobworker_jobs_ready_type
        ON jobworker_jobs (type, priority DESC, created_us) WHERE status = 'pending'
        """,
        """
        CREATE INDEX jobworker_jobs_ready
        ON jobworker_jobs (priority DESC, created_us) WHERE status = 'pending'
        """,
        # The next scheduled job, for an idle poll's wait.
        """
        CREATE INDEX jobworker_jobs_scheduled
        ON jobworker_jobs (run_after_us)
        WHERE status = 'pending' AND run_after_us IS NOT NULL
        """,
        # Recovery: running jobs by lease expiry.
        """
        CREATE INDEX jobworker_jobs_lease
        ON jobworker_jobs (lease_until_us) WHERE status = 'running'
        """,
        "CREATE INDEX jobworker_jobs_created ON jobworker_jobs (created_us)",
        # Cleanup. Partial, so that the planner never prefers a status index
        # over the claim indexes above, and pending rows cost it nothing.
        """
        CREATE INDEX jobworker_jobs_ended ON jobworker_jobs (completed_us)
        WHERE status IN ('complete', 'failed', 'cancelled')
        """,
    ),
    # Every attempt's worker, times and error (JSON; see jobworker.attempts).
    2: ("ALTER TABLE jobworker_jobs ADD COLUMN attempts TEXT",),
    # The dashboard's job list by status, newest first (rowid, the arrival
    # order, ends every entry). Without it a rare status walks the whole
    # created index: a second with a million jobs (bench/dashboard.py).
    # Pending rows are left out, so a claim (status = 'pending') can never
    # prefer it over the claim indexes: only a query that repeats the
    # condition word for word (the job list does) may use it.
    3: (
        """
        CREATE INDEX jobworker_jobs_status_created ON jobworker_jobs (status, created_us)
        WHERE status <> 'pending'
        """,
        # Pending jobs by creation: not in the claim order (priority first),
        # so a claim still prefers the claim indexes.
        """
        CREATE INDEX jobworker_jobs_pending_created ON jobworker_jobs (created_us)
        WHERE status = 'pending'
        """,
    ),
    # A job's own time limit in seconds (NULL: the type's or the worker's applies).
    4: ("ALTER TABLE jobworker_jobs ADD COLUMN time_limit REAL",),
    # Unique keys (see jobworker.unique): a key is held by the rows whose status
    # is in their own scope, and by one row at most.
    5: (
        "ALTER TABLE jobworker_jobs ADD COLUMN unique_key TEXT",
        "ALTER TABLE jobworker_jobs ADD COLUMN unique_states TEXT",
        """
        CREATE UNIQUE INDEX jobworker_jobs_unique ON jobworker_jobs (unique_key)
        WHERE unique_key IS NOT NULL AND instr(unique_states, ',' || status || ',') > 0
        """,
    ),
    # Pauses and rate windows per job type (see queues/_sql_limits.py), and
    # running jobs by type, which a claim of a limited type counts.
    6: (
        """
        CREATE TABLE jobworker_controls (
            type TEXT PRIMARY KEY,
            paused INTEGER NOT NULL DEFAULT 0,
            starts TEXT NOT NULL DEFAULT '[]'
        )
        """,
        """
        CREATE INDEX jobworker_jobs_running_type
        ON jobworker_jobs (type) WHERE status = 'running'
        """,
    ),
}

#: The schema version this release writes.
SCHEMA_VERSION: Final = max(_MIGRATIONS)


def _parse_version(value: object) -> int:
    """Return the schema version stored as *value*: decimal digits, nothing else."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise BackendError(
        f"its jobworker_meta table records schema version {value!r}, which jobworker "
        "never writes: the file is damaged or belongs to another program"
    )


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM jobworker_meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else _parse_version(row[0])


def check_schema(conn: sqlite3.Connection) -> int:
    """Return the schema version of the database, reading only; 0 if it has no jobworker tables.

    Takes no write lock and changes nothing, so a file that is refused is
    left exactly as it was.

    :raises BackendError: the tables named ``jobworker_*`` are not jobworker's
        (another program's, or damaged), or a newer release wrote them.
    :raises sqlite3.DatabaseError: the file is not an SQLite database.
    """
    names = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'jobworker%'"
        )
    }
    if "jobworker_meta" not in names:
        if names:
            raise BackendError(
                f"it has tables {sorted(names)} but no jobworker_meta: "
                "they were not made by jobworker"
            )
        return 0
    try:
        found = _version(conn)
    except sqlite3.OperationalError as exc:  # a jobworker_meta of another shape
        raise BackendError(f"its jobworker_meta table is not jobworker's: {exc}") from exc
    if found > SCHEMA_VERSION:
        raise BackendError(
            f"the database has jobworker schema version {found}; this release knows "
            f"up to {SCHEMA_VERSION}: upgrade jobworker"
        )
    if found and "jobworker_jobs" not in names:
        raise BackendError(f"it records jobworker schema version {found} but has no jobs table")
    return found


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` inside the caller's transaction.

    Returns the version found before migrating (0 for a new database).

    :raises BackendError: the database was written by a newer release.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS jobworker_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    found = _version(conn)
    if found > SCHEMA_VERSION:
        raise BackendError(
            f"the database has jobworker schema version {found}; this release knows "
            f"up to {SCHEMA_VERSION}: upgrade jobworker"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[version]:
            conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO jobworker_meta (key, value) VALUES ('schema_version', ?)",
            (str(version),),
        )
    return found
