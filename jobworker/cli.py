"""The ``jobworker`` command line: ``demo`` and ``migrate``.

Each subcommand is a subparser with a handler; ``main`` parses and dispatches.
Bad arguments print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from .demo import run_demo
from .errors import JobworkerError
from .urls import open_queue

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors take one line, with a pointer to ``--help``."""

    def error(self, message: str) -> NoReturn:
        """Print *message* on one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    """Return an argparse type that accepts integers from *low* to *high*."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _demo(args: argparse.Namespace) -> int:
    """Run the demo; 0 if every job ended as planned and the counts add up, else 1."""
    try:
        summary = run_demo(
            jobs=args.jobs,
            workers=args.workers,
            seed=args.seed,
            quiet=args.quiet,
            as_json=args.json,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:
        print("jobworker demo: interrupted; workers stopped", file=sys.stderr)
        return 130
    return 0 if summary.ok else 1


def _add_demo(subcommands: argparse._SubParsersAction[_Parser]) -> None:
    parser = subcommands.add_parser(
        "demo",
        help="run a few hundred jobs through several workers, with live progress",
        description=(
            "Create jobs of two typed job types, run them through several workers with "
            "retries, progress and cancellation, show live progress and end with a "
            "summary. Exits with 0 if every job ended as planned and the counts add up."
        ),
    )
    parser.add_argument(
        "--jobs",
        type=_int_between(1, 10_000),
        default=300,
        metavar="N",
        help="number of jobs (default: 300)",
    )
    parser.add_argument(
        "--workers",
        type=_int_between(2, 64),
        default=4,
        metavar="N",
        help="number of workers, split between the two job types (default: 4)",
    )
    parser.add_argument(
        "--seed",
        type=_int_between(0, 2**63 - 1),
        default=None,
        metavar="N",
        help="decides which jobs fail and which are cancelled (default: random, printed)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="give up if the jobs have not all ended by then (default: 300)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print the summary only, no live progress"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the summary as one JSON line, not a table"
    )
    parser.set_defaults(handler=_demo)


def _migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the tables of a durable queue; 1 with one line if it fails."""
    options = {}
    if args.url.startswith(("postgresql://", "postgres://")):
        options = {"schema": args.schema, "prefix": args.prefix, "migrate": True, "notify": False}
    try:
        queue = open_queue(args.url, **options)
    except (JobworkerError, ValueError, ImportError) as exc:
        print(f"jobworker migrate: {exc}", file=sys.stderr)
        return 1
    queue.close()
    print(f"jobworker migrate: {args.url.split('@')[-1]} is at the current schema")
    return 0


def _add_migrate(subcommands: argparse._SubParsersAction[_Parser]) -> None:
    parser = subcommands.add_parser(
        "migrate",
        help="create or upgrade the tables of a durable queue",
        description=(
            "Create the tables of a durable queue, or bring them up to this release's "
            "schema. Safe to run again, and from several processes at once."
        ),
    )
    parser.add_argument("url", help="sqlite:///PATH or postgresql://...")
    parser.add_argument("--schema", default="public", help="PostgreSQL schema (default: public)")
    parser.add_argument(
        "--prefix", default="jobworker_", help="table name prefix (default: jobworker_)"
    )
    parser.set_defaults(handler=_migrate)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``jobworker`` command and its subcommands."""
    parser = _Parser(prog="jobworker", description="jobworker: a threaded job queue library.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    _add_demo(subcommands)
    _add_migrate(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command given by *argv* (``sys.argv[1:]`` by default); return its exit status.

    :raises SystemExit: with status 2 for bad arguments, 0 after ``--help``.
    """
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)
