"""The subcommands that read and change jobs: enqueue, list, show, stats, cancel, retry, prune."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._cli_common import (
    CommandError,
    ExitCode,
    add_queue_options,
    int_between,
    open_cli_queue,
    parse_when,
    positive_duration,
)
from ._console import print_fields, print_table
from .attempts import Attempt, AttemptError
from .errors import DuplicateJobError, JobNotFoundError, StaleJobError
from .model import (
    INT_MAX,
    INT_MIN,
    STATUSES,
    AnyJob,
    CancelledJob,
    CompleteJob,
    FailedJob,
    RunningJob,
    new_job,
    requeue,
)
from .queues.base import JobQueue
from .serialization import job_to_dict

__all__ = ["add_job_commands"]


@contextmanager
def _queue(args: argparse.Namespace, *, create: bool = False) -> Iterator[JobQueue]:
    # A one-shot command needs no LISTEN connection and one pooled connection.
    queue = open_cli_queue(args, create=create, postgres={"notify": False, "pool_size": 1})
    try:
        yield queue
    finally:
        queue.close()


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def _time(value: _dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _summary(job: AnyJob) -> str:
    """The one thing worth seeing in a list: progress, error, or nothing."""
    if isinstance(job, RunningJob) and job.progress is not None:
        return _json_text(job.progress)
    if isinstance(job, FailedJob):
        return job.error
    last = _last_error(job)
    if last is not None:
        # A job waiting to retry: why its last attempt failed.
        return f"last error: {last.describe()}"
    return ""


def _last_error(job: AnyJob) -> AttemptError | None:
    """The error of the job's latest attempt, if that attempt failed."""
    if job.attempts and not isinstance(job, (RunningJob, CompleteJob)):
        return job.attempts[-1].error
    return None


def _attempt_line(attempt: Attempt) -> str:
    error = attempt.error
    outcome = "ok" if error is None else f"{error.class_path}: {error.message}"
    return f"{attempt.worker}, {_time(attempt.started_at)} - {_time(attempt.ended_at)}, {outcome}"


_LIST_HEADERS = (
    "ID",
    "TYPE",
    "STATUS",
    "PRIORITY",
    "RETRIES",
    "CREATED",
    "RUN AFTER",
    "USER",
    "INFO",
)


def _row(job: AnyJob) -> list[str]:
    meta = job.metadata
    return [
        meta.id,
        meta.type,
        job.status,
        str(meta.priority),
        f"{meta.retry_count}/{meta.max_retries}",
        _time(meta.created),
        _time(meta.run_after),
        meta.user_id or "-",
        " ".join(_summary(job).split())[:80],
    ]


def _fields(job: AnyJob) -> list[tuple[str, str]]:
    meta = job.metadata
    fields = [
        ("id", meta.id),
        ("type", meta.type),
        ("status", job.status),
        ("user", meta.user_id or "-"),
        ("priority", str(meta.priority)),
        ("retries", f"{meta.retry_count} of {meta.max_retries}"),
        ("created", _time(meta.created)),
        ("run after", _time(meta.run_after)),
        ("params", _json_text(job.params)),
    ]
    if isinstance(job, (RunningJob, CompleteJob, FailedJob, CancelledJob)):
        fields.append(("started", _time(job.started_at)))
    if isinstance(job, (CompleteJob, FailedJob, CancelledJob)):
        fields.append(("ended", _time(job.completed_at)))
    if isinstance(job, RunningJob):
        fields.append(("worker", job.claim.worker))
        fields.append(("progress", _json_text(job.progress)))
    if isinstance(job, CompleteJob):
        fields.append(("worker", job.worker or "-"))
        fields.append(("result", _json_text(job.result)))
    if isinstance(job, FailedJob):
        fields.append(("error", job.error))
    last = _last_error(job)
    if last is not None and not isinstance(job, FailedJob):
        fields.append(("last error", last.describe()))
    fields.extend((f"attempt {a.number}", _attempt_line(a)) for a in job.attempts)
    if last is not None and last.traceback:
        fields.append(("traceback", last.traceback.rstrip("\n")))
    return fields


def _get(queue: JobQueue, job_id: str) -> AnyJob:
    job = queue.get_job(job_id)
    if job is None:
        raise JobNotFoundError(job_id)
    return job


def _report(args: argparse.Namespace, job: AnyJob, message: str) -> None:
    if args.json:
        _print_json(job_to_dict(job))
    else:
        sys.stdout.write(message + "\n")


# -- handlers --------------------------------------------------------------------------


def _enqueue(args: argparse.Namespace) -> int:
    try:
        params = json.loads(args.params)
    except ValueError as exc:
        raise CommandError(f"--params is not JSON: {exc}", ExitCode.USAGE) from None
    with _queue(args, create=True) as queue:
        now = queue.clock.now()
        run_after = None if args.run_after is None else parse_when(args.run_after, now=now)
        job = new_job(
            args.type,
            params,
            id=args.id,
            user_id=args.user,
            max_retries=args.max_retries,
            priority=args.priority,
            run_after=run_after,
            created=now,
        )
        try:
            stored = queue.create_job(job)
        except DuplicateJobError as exc:
            raise CommandError(str(exc), ExitCode.FAILURE) from None
    _report(args, stored, stored.metadata.id)
    return ExitCode.OK


def _list(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        jobs = queue.list_jobs(
            status=args.status,
            type=args.type,
            user_id=args.user,
            limit=args.limit,
            offset=args.offset,
        )
    if args.json:
        _print_json([job_to_dict(job) for job in jobs])
    else:
        print_table(sys.stdout, _LIST_HEADERS, [_row(job) for job in jobs])
    return ExitCode.OK


def _show(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        job = _get(queue, args.id)
    if args.json:
        _print_json(job_to_dict(job))
    else:
        print_fields(sys.stdout, _fields(job), title=f"job {job.metadata.id}")
    return ExitCode.OK


def _stats(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        counts = queue.get_stats()
    if args.json:
        _print_json(counts)
    else:
        rows = [[status, str(counts[status])] for status in STATUSES]
        rows.append(["total", str(sum(counts.values()))])
        print_table(sys.stdout, ("STATUS", "JOBS"), rows)
    return ExitCode.OK


def _cancel(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        job = _get(queue, args.id)
        if job.status in ("pending", "running") and queue.cancel_job(args.id):
            job = _get(queue, args.id)
            _report(args, job, f"cancelled {args.id}")
            return ExitCode.OK
        job = _get(queue, args.id)
    raise CommandError(
        f"job {args.id!r} is {job.status}: only a pending or running job can be cancelled"
    )


def _retry(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        job = _get(queue, args.id)
        if not isinstance(job, FailedJob):
            raise CommandError(f"job {args.id!r} is {job.status}: only a failed job can be retried")
        try:
            # Compare-and-set on "failed": two operators retrying at once requeue it once.
            stored = queue.update_job(requeue(job), "failed")
        except StaleJobError as exc:
            raise CommandError(f"job {args.id!r} changed meanwhile: {exc}") from None
    _report(args, stored, f"retrying {args.id}: pending again, retry count reset to 0")
    return ExitCode.OK


def _prune(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        deleted = queue.cleanup_old_jobs(retention_hours=args.older_than / 3600)
    if args.json:
        _print_json({"deleted": deleted, "older_than_seconds": args.older_than})
    else:
        sys.stdout.write(f"deleted {deleted} job{'' if deleted == 1 else 's'}" + "\n")
    return ExitCode.OK


# -- parsers ---------------------------------------------------------------------------


def _add(
    subcommands: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help: str,
    description: str,
    *,
    json_help: str | None = None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name, help=help, description=description
    )
    parser.set_defaults(handler=handler)
    add_queue_options(parser)
    if json_help is not None:
        parser.add_argument("--json", action="store_true", help=json_help)
    return parser


def add_job_commands(subcommands: Any) -> None:
    """Add enqueue, list, show, stats, cancel, retry and prune to *subcommands*."""
    enqueue = _add(
        subcommands,
        "enqueue",
        _enqueue,
        "create a job",
        "Create a pending job and print its id.",
        json_help="print the stored job as JSON, not its id",
    )
    enqueue.add_argument("type", help="the job type")
    enqueue.add_argument("--params", default="{}", metavar="JSON", help="params (default: {})")
    enqueue.add_argument("--id", default=None, help="the job id (default: a random one)")
    enqueue.add_argument("--user", default="", metavar="ID", help="the user id (default: none)")
    enqueue.add_argument(
        "--priority", type=int_between(INT_MIN, INT_MAX), default=0, help="higher runs first"
    )
    enqueue.add_argument(
        "--run-after",
        metavar="WHEN",
        default=None,
        help="not before: a duration from now (10m, or -5m: five minutes ago) or an "
        "ISO 8601 time with a zone",
    )
    enqueue.add_argument(
        "--max-retries",
        type=int_between(0, INT_MAX),
        default=3,
        metavar="N",
        help="retries after a failed attempt (default: 3)",
    )

    listing = _add(
        subcommands,
        "list",
        _list,
        "list jobs, newest first",
        "List jobs matching every filter given, newest first.",
        json_help="print a JSON array of jobs",
    )
    listing.add_argument("--status", choices=STATUSES, default=None)
    listing.add_argument("--type", default=None, help="only jobs of this type")
    listing.add_argument("--user", default=None, metavar="ID", help="only jobs of this user")
    listing.add_argument(
        "--limit", type=int_between(0, 1_000_000), default=50, metavar="N", help="(default: 50)"
    )
    listing.add_argument(
        "--offset", type=int_between(0, 2**62), default=0, metavar="N", help="skip N jobs"
    )

    show = _add(
        subcommands,
        "show",
        _show,
        "show one job",
        "Show one job: metadata, params, progress, result or error.",
        json_help="print the job as JSON",
    )
    show.add_argument("id", help="the job id")

    _add(
        subcommands,
        "stats",
        _stats,
        "count jobs in each status",
        "Count the jobs in each status.",
        json_help="print the counts as a JSON object",
    )

    cancel = _add(
        subcommands,
        "cancel",
        _cancel,
        "cancel a pending or running job",
        "Cancel a pending or running job. A running job's worker is told; the job "
        "stops when its code next checks, and its late result is refused.",
        json_help="print the cancelled job as JSON",
    )
    cancel.add_argument("id", help="the job id")

    retry = _add(
        subcommands,
        "retry",
        _retry,
        "put a failed job back to pending",
        "Put a failed job back to pending with its retry count reset to 0, due at "
        "once. Only failed jobs: a cancelled job stays cancelled (enqueue a new one).",
        json_help="print the requeued job as JSON",
    )
    retry.add_argument("id", help="the job id")

    prune = _add(
        subcommands,
        "prune",
        _prune,
        "delete old complete, failed and cancelled jobs",
        "Delete the complete, failed and cancelled jobs that ended longer ago than "
        "--older-than. Pending and running jobs are never deleted.",
        json_help='print {"deleted": N, ...} as JSON',
    )
    prune.add_argument(
        "--older-than",
        type=positive_duration,
        required=True,
        metavar="DURATION",
        help="such as 90s, 15m, 12h, 7d or 2w",
    )
