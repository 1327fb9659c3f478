"""Schema version 3's indexes serve the dashboard's job list and never a claim (SQLite plans)."""

from __future__ import annotations

from pathlib import Path

import jobworker as jw


def plan(queue: jw.SQLiteQueue, sql: str, args: list[object]) -> str:
    rows = queue._conn().execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
    return " | ".join(str(row[3]) for row in rows)


def test_claims_keep_their_indexes_and_the_list_uses_the_new_ones(tmp_path: Path) -> None:
    queue = jw.SQLiteQueue(str(tmp_path / "jobs.sqlite3"))
    try:
        for i in range(300):
            queue.create_job(jw.new_job(f"t{i % 3}", {"i": i}, priority=i % 2))
        for _ in range(50):
            assert queue.poll_next_pending_job(worker="w") is not None
        queue._conn().execute("ANALYZE")
        for kind in (None, 1, 2):
            sql = queue._claim_sql(kind)
            found = plan(queue, sql, [0] * sql.count("?"))
            assert "jobworker_jobs_ready" in found, found
            assert "status_created" not in found and "pending_created" not in found, found
        for status, index in (("running", "status_created"), ("pending", "pending_created")):
            page_sql = queue._q(
                "SELECT id FROM {t} WHERE status = ?"
                + (" AND status <> 'pending'" if status != "pending" else "")
                + " ORDER BY created_us DESC, rowid DESC LIMIT 51"
            )
            assert f"jobworker_jobs_{index}" in plan(queue, page_sql, [status])
        assert [job.metadata.id for job in queue.browse_jobs(status="running").jobs] == [
            job.metadata.id for job in queue.list_jobs(status="running", limit=50)
        ]
    finally:
        queue.close()
