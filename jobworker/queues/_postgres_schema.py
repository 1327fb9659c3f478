"""The PostgreSQL schema of PostgresQueue, its version, and forward migrations.

Names come from a validated schema and table prefix and are always quoted;
every value is a bound parameter. Migrations run in one transaction under an
advisory lock, so two processes migrating at once take turns.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

import attrs

from ..errors import BackendError

__all__ = ["SCHEMA_VERSION", "Names", "migrate", "schema_version"]

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_LENGTH: Final = 40  # leaves room for suffixes within PostgreSQL's 63 bytes
_MAX_CHANNEL: Final = 63


def _quote(name: str) -> str:
    return f'"{name}"'


@attrs.frozen
class Names:
    """The quoted names of one queue's tables, indexes and channel.

    :raises ValueError: the schema or prefix is not a plain identifier.
    """

    schema: str
    prefix: str

    def __attrs_post_init__(self) -> None:
        if not _IDENTIFIER.match(self.schema) or len(self.schema) > _MAX_LENGTH:
            raise ValueError(f"schema must be a plain identifier, got {self.schema!r}")
        if self.prefix and (not _IDENTIFIER.match(self.prefix) or len(self.prefix) > _MAX_LENGTH):
            raise ValueError(f"prefix must be empty or a plain identifier, got {self.prefix!r}")

    def table(self, name: str) -> str:
        return f"{_quote(self.schema)}.{_quote(self.prefix + name)}"

    def index(self, name: str) -> str:
        return _quote(f"{self.prefix}{name}")

    @property
    def jobs(self) -> str:
        return self.table("jobs")

    @property
    def controls(self) -> str:
        return self.table("controls")

    @property
    def meta(self) -> str:
        return self.table("meta")

    @property
    def channel(self) -> str:
        """The LISTEN / NOTIFY channel: one per queue table, within 63 bytes."""
        name = f"{self.schema}.{self.prefix}jobs"
        if len(name) <= _MAX_CHANNEL:
            return name
        # PostgreSQL would cut a longer name; a digest keeps it unique.
        return "jobworker_" + hashlib.sha256(name.encode()).hexdigest()[:32]


def _migrations(names: Names) -> dict[int, tuple[str, ...]]:
    jobs = names.jobs
    return {
        1: (
            f"""CREATE TABLE {jobs} (
                id text PRIMARY KEY,
                type text NOT NULL,
                user_id text NOT NULL,
                status text NOT NULL,
                priority integer NOT NULL,
                created_us bigint NOT NULL,
                retry_count integer NOT NULL,
                max_retries integer NOT NULL,
                run_after_us bigint,
                params text NOT NULL,
                progress text,
                result text,
                error text,
                started_us bigint,
                completed_us bigint,
                claim_token text,
                claim_worker text,
                lease_until_us bigint,
                seq bigserial NOT NULL
            )""",
            f"""CREATE INDEX {names.index("jobs_ready_type")}
                ON {jobs} (type, priority DESC, created_us, seq) WHERE status = 'pending'""",
            f"""CREATE INDEX {names.index("jobs_ready")}
                ON {jobs} (priority DESC, created_us, seq) WHERE status = 'pending'""",
            f"""CREATE INDEX {names.index("jobs_lease")}
                ON {jobs} (lease_until_us) WHERE status = 'running'""",
            f"""CREATE INDEX {names.index("jobs_scheduled")} ON {jobs} (run_after_us)
                WHERE status = 'pending' AND run_after_us IS NOT NULL""",
            f"CREATE INDEX {names.index('jobs_created')} ON {jobs} (created_us, seq)",
            f"""CREATE INDEX {names.index("jobs_ended")} ON {jobs} (completed_us)
                WHERE status IN ('complete', 'failed', 'cancelled')""",
        ),
        # Every attempt's worker, times and error (JSON; see jobworker.attempts).
        2: (f"ALTER TABLE {jobs} ADD COLUMN attempts text",),
        # The dashboard's job list by status, newest first; see the SQLite schema.
        3: (
            f"""CREATE INDEX {names.index("jobs_status_created")}
                ON {jobs} (status, created_us, seq) WHERE status <> 'pending'""",
            f"""CREATE INDEX {names.index("jobs_pending_created")}
                ON {jobs} (created_us, seq) WHERE status = 'pending'""",
        ),
        # A job's own time limit in seconds (NULL: the type's or the worker's applies).
        4: (f"ALTER TABLE {jobs} ADD COLUMN time_limit double precision",),
        # Unique keys (see jobworker.unique): a key is held by the rows whose
        # status is in their own scope, and by one row at most.
        5: (
            f"ALTER TABLE {jobs} ADD COLUMN unique_key text",
            f"ALTER TABLE {jobs} ADD COLUMN unique_states text",
            f"""CREATE UNIQUE INDEX {names.index("jobs_unique")} ON {jobs} (unique_key)
                WHERE unique_key IS NOT NULL
                AND strpos(unique_states, ',' || status || ',') > 0""",
        ),
        # Pauses and rate windows per job type (see queues/_sql_limits.py), and
        # running jobs by type, which a claim of a limited type counts.
        6: (
            f"""CREATE TABLE {names.controls} (
                type text PRIMARY KEY,
                paused integer NOT NULL DEFAULT 0,
                starts text NOT NULL DEFAULT '[]'
            )""",
            f"""CREATE INDEX {names.index("jobs_running_type")}
                ON {jobs} (type) WHERE status = 'running'""",
        ),
    }


#: The schema version this release writes.
SCHEMA_VERSION: Final = 6


def schema_version(conn: Any, names: Names) -> int | None:
    """Return the schema version in the database, or ``None`` if there is none."""
    exists = conn.execute("SELECT to_regclass(%s)", (names.meta,)).fetchone()[0]
    if exists is None:
        return None
    row = conn.execute(f"SELECT value FROM {names.meta} WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def migrate(conn: Any, names: Names) -> int:
    """Create or upgrade the schema in *conn*'s open transaction; return the version found.

    :raises BackendError: the database was written by a newer release.
    """
    # One migrator at a time, across processes; released at commit.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"jobworker:{names.jobs}",))
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{names.schema}"')
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {names.meta} (key text PRIMARY KEY, value text NOT NULL)"
    )
    found = schema_version(conn, names) or 0
    if found > SCHEMA_VERSION:
        raise BackendError(
            f"the database has jobworker schema version {found}; this release knows "
            f"up to {SCHEMA_VERSION}: upgrade jobworker"
        )
    migrations = _migrations(names)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for statement in migrations[version]:
            conn.execute(statement)
        conn.execute(
            f"""INSERT INTO {names.meta} (key, value) VALUES ('schema_version', %s)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
            (str(version),),
        )
    return found
