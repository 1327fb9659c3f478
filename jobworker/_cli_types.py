"""The subcommands that pause and resume job types: pause, resume, paused."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._cli_common import CommandError, ExitCode, add_queue_options, open_cli_queue

__all__ = ["add_type_commands"]


def _change(args: argparse.Namespace, *, pause: bool) -> int:
    queue = open_cli_queue(args, create=False, postgres={"notify": False, "pool_size": 1})
    try:
        try:
            changed = queue.pause_type(args.type) if pause else queue.resume_type(args.type)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        paused = args.type in queue.paused_types()
    finally:
        queue.close()
    if args.json:
        sys.stdout.write(json.dumps({"type": args.type, "paused": paused, "changed": changed}))
        sys.stdout.write("\n")
    else:
        verb = "paused" if pause else "resumed"
        state = verb if changed else f"was already {'paused' if pause else 'not paused'}"
        sys.stdout.write(f"{args.type}: {state}\n")
    return ExitCode.OK


def _pause(args: argparse.Namespace) -> int:
    return _change(args, pause=True)


def _resume(args: argparse.Namespace) -> int:
    return _change(args, pause=False)


def _paused(args: argparse.Namespace) -> int:
    queue = open_cli_queue(args, create=False, postgres={"notify": False, "pool_size": 1})
    try:
        types = sorted(queue.paused_types())
    finally:
        queue.close()
    if args.json:
        sys.stdout.write(json.dumps(types) + "\n")
    else:
        sys.stdout.write("".join(f"{name}\n" for name in types))
    return ExitCode.OK


def add_type_commands(subcommands: Any) -> None:
    """Add pause, resume and paused to *subcommands*."""
    for name, handler, help, description in (
        (
            "pause",
            _pause,
            "stop claims of a job type",
            "Pause a job type: no worker of any process claims its jobs until it is "
            "resumed. Running jobs finish; pending ones wait in their place. Durable "
            "on SQLite and PostgreSQL.",
        ),
        (
            "resume",
            _resume,
            "let a paused job type be claimed again",
            "Resume a paused job type: its pending jobs are claimed again.",
        ),
    ):
        parser: argparse.ArgumentParser = subcommands.add_parser(
            name, help=help, description=description
        )
        parser.set_defaults(handler=handler)
        add_queue_options(parser)
        parser.add_argument("type", help="the job type")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    paused: argparse.ArgumentParser = subcommands.add_parser(
        "paused", help="list the paused job types", description="List the paused job types."
    )
    paused.set_defaults(handler=_paused)
    add_queue_options(paused)
    paused.add_argument("--json", action="store_true", help="print a JSON array")
