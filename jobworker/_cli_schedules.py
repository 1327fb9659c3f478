"""``jobworker schedules`` and the loading of schedules named on the command line."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Iterable
from typing import Any

from ._cli_common import CommandError, ExitCode, add_queue_options, int_between, open_cli_queue
from ._console import print_table
from .schedules import Cron, Schedule

__all__ = ["add_schedules_command", "add_schedules_option", "load_schedules"]


def load_schedules(specs: Iterable[str]) -> list[Schedule]:
    """Return the schedules that each ``module:NAME`` names (a Schedule or an iterable of them).

    :raises CommandError: (``USAGE``) a name cannot be imported or is not schedules.
    """
    from ._cli_worker import import_module  # noqa: PLC0415  (the worker command imports us)

    found: list[Schedule] = []
    for spec in specs:
        module_name, sep, attribute = spec.partition(":")
        if not sep or not module_name or not attribute:
            raise CommandError(f"expected module:NAME, got {spec!r}", ExitCode.USAGE)
        value: Any = import_module(module_name)
        for part in attribute.split("."):
            if not hasattr(value, part):
                raise CommandError(f"{module_name!r} has no {attribute!r}", ExitCode.USAGE)
            value = getattr(value, part)
        items = [value] if isinstance(value, Schedule) else value
        try:
            items = list(items)
        except TypeError:
            items = [None]
        if not all(isinstance(item, Schedule) for item in items):
            raise CommandError(f"{spec} is not a Schedule or a list of them", ExitCode.USAGE)
        found.extend(items)
    names = [schedule.name for schedule in found]
    if len(set(names)) != len(names):
        raise CommandError(f"schedule names must be unique, got {names}", ExitCode.USAGE)
    return found


def add_schedules_option(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Add the repeatable ``--schedules module:NAME`` option to *parser*."""
    parser.add_argument(
        "--schedules",
        action="append",
        default=[],
        required=required,
        metavar="module:NAME",
        help="a Schedule, or a list of them, to run (repeatable)",
    )


def _time(value: _dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _describe(schedule: Schedule) -> str:
    when = schedule.when
    if isinstance(when, Cron):
        return f"{when.expression} ({when.tz})"
    return f"every {when.interval_us / 1_000_000:g} s"


def _schedules(args: argparse.Namespace) -> int:
    schedules = load_schedules(args.schedules)
    queue = open_cli_queue(args, create=False, postgres={"notify": False, "pool_size": 1})
    try:
        now = queue.clock.now()
        rows: list[dict[str, Any]] = []
        for schedule in schedules:
            upcoming: list[_dt.datetime] = []
            slot: _dt.datetime | None = now
            while slot is not None and len(upcoming) < args.count:
                slot = schedule.next_slot(slot)
                if slot is not None:
                    upcoming.append(slot)
            last = schedule.last_job(queue, now)
            rows.append(
                {
                    "name": schedule.name,
                    "when": _describe(schedule),
                    "job_type": schedule.job_type,
                    "catch_up": schedule.catch_up,
                    "next": [_time(slot) for slot in upcoming],
                    "last_job": None if last is None else last.metadata.id,
                    "last_status": None if last is None else last.status,
                }
            )
    finally:
        queue.close()
    if args.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return ExitCode.OK
    table = [
        [
            row["name"],
            row["when"],
            row["job_type"],
            row["catch_up"],
            " ".join(row["next"]) or "-",
            "-" if row["last_job"] is None else f"{row['last_job']} ({row['last_status']})",
        ]
        for row in rows
    ]
    print_table(
        sys.stdout, ("SCHEDULE", "WHEN", "TYPE", "CATCH-UP", "NEXT RUNS", "LAST JOB"), table
    )
    return ExitCode.OK


def add_schedules_command(subcommands: Any) -> None:
    """Add the ``schedules`` subcommand to *subcommands*."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        "schedules",
        help="list schedules, their next runs and the last job each enqueued",
        description=(
            "List the schedules named with --schedules: when they run, their next slots, "
            "and the job of the latest slot that has one in the queue."
        ),
    )
    parser.set_defaults(handler=_schedules)
    add_schedules_option(parser, required=True)
    parser.add_argument(
        "--count", type=int_between(1, 100), default=3, metavar="N", help="next runs to show"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_queue_options(parser)
