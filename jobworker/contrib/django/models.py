"""A read-only model of the queue's table, for the admin.

The table belongs to the queue: the migrations create it with jobworker's
own schema (the same one the queue creates and checks), and the model is
unmanaged, so Django never alters it. Write jobs through the queue, never
through this model.
"""

from __future__ import annotations

import datetime as _dt
import json

from django.db import models

from ...attempts import Attempt, attempts_from_json
from ...clock import from_us
from ...model import STATUSES

__all__ = ["Job"]


def _time(value: int | None) -> _dt.datetime | None:
    return None if value is None else from_us(value)


def _pretty(text: str | None) -> str:
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text


class Job(models.Model):
    """One row of ``jobworker_jobs``: a job in any state. Read it, never save it."""

    id: models.TextField[str, str] = models.TextField(primary_key=True)
    type: models.TextField[str, str] = models.TextField()
    user_id: models.TextField[str, str] = models.TextField(blank=True)
    status: models.TextField[str, str] = models.TextField(
        choices=[(status, status) for status in STATUSES]
    )
    priority: models.IntegerField[int, int] = models.IntegerField()
    created_us: models.BigIntegerField[int, int] = models.BigIntegerField()
    retry_count: models.IntegerField[int, int] = models.IntegerField()
    max_retries: models.IntegerField[int, int] = models.IntegerField()
    run_after_us: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    params: models.TextField[str, str] = models.TextField()
    progress: models.TextField[str | None, str | None] = models.TextField(null=True)
    result: models.TextField[str | None, str | None] = models.TextField(null=True)
    error: models.TextField[str | None, str | None] = models.TextField(null=True)
    started_us: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    completed_us: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    claim_worker: models.TextField[str | None, str | None] = models.TextField(null=True)
    attempts: models.TextField[str | None, str | None] = models.TextField(null=True)
    time_limit: models.FloatField[float | None, float | None] = models.FloatField(null=True)
    unique_key: models.TextField[str | None, str | None] = models.TextField(null=True)
    unique_states: models.TextField[str | None, str | None] = models.TextField(null=True)
    lease_until_us: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(
        null=True
    )

    class Meta:
        managed = False
        db_table = "jobworker_jobs"
        ordering = ("-created_us",)
        default_permissions = ("view",)
        verbose_name = "job"

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"

    @property
    def created(self) -> _dt.datetime | None:
        """When the job was created."""
        return _time(self.created_us)

    @property
    def run_after(self) -> _dt.datetime | None:
        """The earliest the job may run, if it is scheduled."""
        return _time(self.run_after_us)

    @property
    def started(self) -> _dt.datetime | None:
        """When the last attempt started."""
        return _time(self.started_us)

    @property
    def completed(self) -> _dt.datetime | None:
        """When the job ended (complete, failed or cancelled)."""
        return _time(self.completed_us)

    @property
    def history(self) -> tuple[Attempt, ...]:
        """Every attempt that ended, oldest first (see :mod:`jobworker.attempts`)."""
        try:
            return attempts_from_json(self.attempts)
        except ValueError:
            return ()

    @property
    def history_text(self) -> str:
        """Each attempt: its number, worker, times and whole error, traceback included."""
        lines: list[str] = []
        for attempt in self.history:
            lines.append(
                f"#{attempt.number} {attempt.worker} "
                f"{attempt.started_at.isoformat()} - {attempt.ended_at.isoformat()}: "
                + ("complete" if attempt.error is None else attempt.error.class_path)
            )
            if attempt.error is not None:
                lines.append(attempt.error.message)
                if attempt.error.traceback:
                    lines.append(attempt.error.traceback)
        return "\n".join(lines)

    @property
    def params_json(self) -> str:
        """The params as indented JSON."""
        return _pretty(self.params)

    @property
    def result_json(self) -> str:
        """The result as indented JSON, or ``""``."""
        return _pretty(self.result)

    @property
    def progress_json(self) -> str:
        """The progress as indented JSON, or ``""``."""
        return _pretty(self.progress)
