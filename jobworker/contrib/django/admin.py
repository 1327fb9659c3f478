"""A read-only admin of the queue's jobs: a list with filters and search, and a detail page.

Nothing can be added, changed or deleted here: jobs change only through the
queue, whose transitions keep them consistent. Two actions pause and resume
the job types of the selected jobs, for users with the ``change_job``
permission (superusers), through the queue.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .conf import get_settings
from .models import Job
from .queues import get_queue

__all__ = ["JobAdmin"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Jobs, newest first, filtered by status and type, searched by id, type or user."""

    list_display = ("id", "type", "status", "priority", "created", "attempt_count", "completed")
    list_filter = ("status", "type")
    search_fields = ("=id", "type", "=user_id")
    list_per_page = 50
    show_full_result_count = False
    fields = (
        "id",
        "type",
        "status",
        "user_id",
        "priority",
        "attempt_count",
        "created",
        "run_after",
        "started",
        "completed",
        "claim_worker",
        "params_json",
        "progress_json",
        "result_json",
        "error",
        "history_text",
    )
    readonly_fields = fields
    actions = ("pause_types", "resume_types")

    def has_pause_permission(self, request: HttpRequest) -> bool:
        """Pausing and resuming job types needs the ``change_job`` permission."""
        return bool(request.user.has_perm("jobworker.change_job"))  # type: ignore[union-attr]

    def _change_types(self, request: HttpRequest, jobs: QuerySet[Job], *, pause: bool) -> None:
        queue = get_queue()
        types = sorted(set(jobs.values_list("type", flat=True)))
        changed = [t for t in types if (queue.pause_type(t) if pause else queue.resume_type(t))]
        verb = "paused" if pause else "resumed"
        if changed:
            self.message_user(request, f"{verb}: {', '.join(changed)}", messages.SUCCESS)
        unchanged = [t for t in types if t not in changed]
        if unchanged:
            state = "already paused" if pause else "not paused"
            self.message_user(request, f"{state}: {', '.join(unchanged)}", messages.INFO)

    @admin.action(description="Pause the job types of the selected jobs", permissions=["pause"])
    def pause_types(self, request: HttpRequest, jobs: QuerySet[Job]) -> None:
        """Pause the selected jobs' types: nothing new of them starts until resumed."""
        self._change_types(request, jobs, pause=True)

    @admin.action(description="Resume the job types of the selected jobs", permissions=["pause"])
    def resume_types(self, request: HttpRequest, jobs: QuerySet[Job]) -> None:
        """Resume the selected jobs' types."""
        self._change_types(request, jobs, pause=False)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        """Read the jobs from the queue's database (``JOBWORKER["DATABASE"]``)."""
        return super().get_queryset(request).using(get_settings().database)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="attempts")
    def attempt_count(self, job: Job) -> str:
        """Attempts so far, out of the most allowed: ``1 / 4``."""
        ran = job.retry_count + (0 if job.status == "pending" or job.started_us is None else 1)
        return f"{ran} / {job.max_retries + 1}"

    @admin.display(description="created", ordering="created_us")
    def created(self, job: Job) -> _dt.datetime | None:
        return job.created

    @admin.display(description="run after", ordering="run_after_us")
    def run_after(self, job: Job) -> _dt.datetime | None:
        return job.run_after

    @admin.display(description="started", ordering="started_us")
    def started(self, job: Job) -> _dt.datetime | None:
        return job.started

    @admin.display(description="ended", ordering="completed_us")
    def completed(self, job: Job) -> _dt.datetime | None:
        return job.completed

    @admin.display(description="params")
    def params_json(self, job: Job) -> str:
        return job.params_json

    @admin.display(description="progress")
    def progress_json(self, job: Job) -> str:
        return job.progress_json

    @admin.display(description="attempts and their errors")
    def history_text(self, job: Job) -> str:
        return job.history_text

    @admin.display(description="result")
    def result_json(self, job: Job) -> str:
        return job.result_json
