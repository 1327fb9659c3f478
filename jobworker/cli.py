"""The ``jobworker`` command line.

``worker`` runs worker classes until a signal; ``enqueue``, ``list``,
``show``, ``stats``, ``cancel``, ``retry`` and ``prune`` read and change
jobs; ``dashboard`` serves the web dashboard; ``migrate`` creates a durable
queue's tables; ``demo`` shows the library at work. Each subcommand is a
subparser with a handler; :func:`main` parses, dispatches and turns errors
into one line on standard error and an exit status (:class:`ExitCode`), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__
from ._cli_common import (
    NEGATIVE_VALUE,
    CommandError,
    ExitCode,
    add_queue_options,
    display_url,
    int_between,
    is_postgres_url,
    open_cli_queue,
    postgres_names,
    queue_url,
    seconds,
)
from ._cli_dashboard import add_dashboard_command
from ._cli_jobs import add_job_commands
from ._cli_schedules import add_schedules_command
from ._cli_types import add_type_commands
from ._cli_worker import add_worker_command
from .demo import run_demo
from .errors import BackendError, InvalidJobError, JobNotFoundError, JobworkerError
from .queues._postgres_schema import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from .queues._sqlite_schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from .redact import mask_secrets

__all__ = ["ExitCode", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

EPILOG = """\
The queue: every command but demo takes --queue URL (memory:, sqlite:///PATH or
postgresql://...), with --schema and --prefix, before or after the command name;
it defaults to $JOBWORKER_QUEUE. Passwords in URLs are masked in all output.

exit status:
  0    ok (worker: stopped by a signal after every current job ended)
  1    failure: the job is in the wrong state, a worker did not stop in time,
       a worker thread died, the demo's counts do not add up
  2    bad arguments
  3    the queue cannot be reached, or its backend failed
  4    no such job
  130  interrupted by SIGINT; worker: stopped at once by a second SIGINT
  143  worker: stopped at once by a second SIGTERM
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors take one line, with a pointer to ``--help``.

    A value such as ``-5`` or ``-5m`` is taken as a value, not an option.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse's private hook (every supported Python has it): its own
        # pattern takes -5 but not -5m, and -5m would then "expect one argument".
        self._negative_number_matcher = NEGATIVE_VALUE

    def error(self, message: str) -> NoReturn:
        """Print *message* (any password masked) on one line and exit with status 2."""
        message = mask_secrets(message)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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
        type=int_between(1, 10_000),
        default=300,
        metavar="N",
        help="number of jobs (default: 300)",
    )
    parser.add_argument(
        "--workers",
        type=int_between(2, 64),
        default=4,
        metavar="N",
        help="number of workers, split between the two job types (default: 4)",
    )
    parser.add_argument(
        "--seed",
        type=int_between(0, 2**63 - 1),
        default=None,
        metavar="N",
        help="decides which jobs fail and which are cancelled (default: random, printed)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds(zero=False),
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


def _sqlite_version(path: str) -> int | None:
    """Return the schema version of the SQLite file at *path*, read only (``None``: none)."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    uri = pathlib.Path(path).resolve().as_uri() + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            row = conn.execute(
                "SELECT value FROM jobworker_meta WHERE key = 'schema_version'"
            ).fetchone()
        return None if row is None else int(row[0])
    except (sqlite3.Error, ValueError):
        return None  # opening the queue below says what is wrong with the file


def _migrated(found: int | None, current: int) -> str:
    """Say what migrating from schema version *found* (``None`` or 0: none) did."""
    if not found:
        return f"created the tables at schema version {current}"
    if found < current:
        return f"upgraded the tables from schema version {found} to {current}"
    return f"the tables were already at the current schema version {current}"


def _migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the tables of a durable queue; say which it did."""
    if args.url is not None:
        if args.queue is not None:
            raise CommandError("give the URL once: as an argument or with --queue", ExitCode.USAGE)
        args.queue = args.url
    url = queue_url(args)
    if is_postgres_url(url):
        # Imported here: psycopg is optional (jobworker[postgres]).
        from ._cli_postgres import migrate_tables  # noqa: PLC0415

        names = postgres_names(args)
        found: int | None = migrate_tables(url, names)
        current = POSTGRES_SCHEMA_VERSION
        where = f"{display_url(url)} (schema {names.schema}, prefix {names.prefix})"
    elif url.startswith("sqlite:///"):
        found = _sqlite_version(url.removeprefix("sqlite:///"))
        open_cli_queue(args, create=True).close()
        current = SQLITE_SCHEMA_VERSION
        where = display_url(url)
    else:
        raise CommandError(
            f"{display_url(url)} is not a durable queue: give sqlite:///PATH or postgresql://...",
            ExitCode.USAGE,
        )
    print(f"jobworker migrate: {where}: {_migrated(found, current)}")
    return ExitCode.OK


def _add_migrate(subcommands: argparse._SubParsersAction[_Parser]) -> None:
    parser = subcommands.add_parser(
        "migrate",
        help="create or upgrade the tables of a durable queue",
        description=(
            "Create the tables of a durable queue, or bring them up to this release's "
            "schema. Safe to run again, and from several processes at once."
        ),
    )
    parser.add_argument(
        "url", nargs="?", default=None, help="sqlite:///PATH or postgresql://... (or --queue)"
    )
    add_queue_options(parser)
    parser.set_defaults(handler=_migrate)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``jobworker`` command and its subcommands."""
    parser = _Parser(
        prog="jobworker",
        description="jobworker: a threaded job queue library.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Also before the command's name, as in `jobworker --queue URL list`.
    add_queue_options(parser, subcommand=False)
    subcommands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    add_worker_command(subcommands)
    add_job_commands(subcommands)
    add_dashboard_command(subcommands)
    add_type_commands(subcommands)
    add_schedules_command(subcommands)
    _add_migrate(subcommands)
    _add_demo(subcommands)
    return parser


def _one_line(text: str) -> str:
    # Driver messages span lines (libpq adds hints); the contract is one line.
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command given by *argv* (``sys.argv[1:]`` by default); return its exit status.

    Errors print one line on standard error and return their status
    (:class:`ExitCode`): a failed operation 1, a queue that cannot be reached
    3, a missing job 4, an interrupt 130.

    :raises SystemExit: with status 2 for bad arguments, 0 after ``--help``.
    """
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    name = f"jobworker {args.command}"
    code: int
    try:
        return int(handler(args))
    except CommandError as exc:
        message, code = str(exc), exc.code
    except JobNotFoundError as exc:
        message, code = str(exc), ExitCode.NOT_FOUND
    except BackendError as exc:
        message, code = f"queue error: {exc}", ExitCode.BACKEND
    except InvalidJobError as exc:
        message, code = str(exc), ExitCode.USAGE
    except JobworkerError as exc:
        message, code = f"{type(exc).__name__}: {exc}", ExitCode.FAILURE
    except KeyboardInterrupt:
        message, code = "interrupted", ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say, and nowhere to say it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitCode.FAILURE)
    # Masked here, once for every error: a driver's message may quote the DSN.
    print(f"{name}: {mask_secrets(_one_line(message))}", file=sys.stderr)
    return int(code)
