"""What every ``jobworker`` subcommand shares: exit codes, errors, the queue option."""

from __future__ import annotations

import argparse
import datetime as _dt
import enum
import os
import re
import shlex
from collections.abc import Callable
from typing import Any, Final

from .queues._postgres_schema import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from .queues._postgres_schema import Names
from .queues.base import JobQueue
from .redact import mask_secrets
from .urls import open_queue

__all__ = [
    "QUEUE_ENV",
    "CommandError",
    "ExitCode",
    "add_queue_options",
    "display_url",
    "is_postgres_url",
    "migrate_command",
    "open_cli_queue",
    "postgres_names",
    "parse_duration",
    "parse_when",
    "positive_duration",
]

#: The environment variable ``--queue`` defaults to.
QUEUE_ENV: Final = "JOBWORKER_QUEUE"


class ExitCode(enum.IntEnum):
    """The exit statuses of the ``jobworker`` command."""

    #: The command did what it was asked.
    OK = 0
    #: It could not: the job is in the wrong state, a worker did not stop in
    #: time, a worker thread died, or the demo's counts do not add up.
    FAILURE = 1
    #: Bad arguments: an unknown option, a value that does not parse, a
    #: worker class that cannot be imported.
    USAGE = 2
    #: The queue cannot be reached or its backend failed (a missing SQLite
    #: file, a PostgreSQL server that refuses, missing tables).
    BACKEND = 3
    #: No job has the given id.
    NOT_FOUND = 4
    #: Interrupted by SIGINT (Ctrl-C), or ``worker`` stopped at once by a
    #: second SIGINT: 128 + 2.
    INTERRUPTED = 130
    #: ``worker`` stopped at once by a second SIGTERM: 128 + 15.
    TERMINATED = 143


class CommandError(Exception):
    """A subcommand ends with one line on standard error and *code*."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.code = code


#: The queue options and their defaults, shared by the command and its subcommands.
QUEUE_DEFAULTS: Final[dict[str, str | None]] = {
    "queue": None,
    "schema": "public",
    "prefix": "jobworker_",
}


def add_queue_options(parser: argparse.ArgumentParser, *, subcommand: bool = True) -> None:
    """Add ``--queue``, ``--schema`` and ``--prefix`` to *parser*.

    The ``jobworker`` parser holds the defaults; a subcommand's parser adds
    the same options without defaults (``SUPPRESS``), so an option given
    before the subcommand's name is kept unless it is given again after it.
    """

    def default(name: str) -> Any:
        return argparse.SUPPRESS if subcommand else QUEUE_DEFAULTS[name]

    group = parser.add_argument_group("queue")
    group.add_argument(
        "--queue",
        metavar="URL",
        default=default("queue"),
        help=f"memory:, sqlite:///PATH or postgresql://... (default: ${QUEUE_ENV})",
    )
    group.add_argument(
        "--schema",
        default=default("schema"),
        help="PostgreSQL only: the schema (default: public)",
    )
    group.add_argument(
        "--prefix",
        default=default("prefix"),
        help="PostgreSQL only: the table name prefix (default: jobworker_)",
    )


def queue_url(args: argparse.Namespace) -> str:
    """Return the queue URL of ``--queue`` or ``$JOBWORKER_QUEUE``."""
    url: str | None = args.queue or os.environ.get(QUEUE_ENV) or None
    if url is None:
        raise CommandError(f"no queue given: use --queue URL or set {QUEUE_ENV}", ExitCode.USAGE)
    return url


def display_url(url: str) -> str:
    """Return *url* with its password masked, for messages and logs."""
    return mask_secrets(url)


def migrate_command(args: argparse.Namespace) -> str:
    """Return the ``jobworker migrate`` command line for the queue *args* name.

    The URL is quoted for a shell, its password masked; a URL taken from
    ``$JOBWORKER_QUEUE`` is left there.
    """
    words = ["jobworker", "migrate"]
    if args.queue:
        words += ["--queue", shlex.quote(mask_secrets(args.queue))]
    for name in ("schema", "prefix"):
        value = getattr(args, name, QUEUE_DEFAULTS[name])
        if value != QUEUE_DEFAULTS[name]:
            words += [f"--{name}", shlex.quote(str(value))]
    return " ".join(words)


def postgres_names(args: argparse.Namespace) -> Names:
    """Return the table names ``--schema`` and ``--prefix`` give.

    :raises CommandError: (``USAGE``) a name PostgreSQL would not take.
    """
    try:
        return Names(schema=args.schema, prefix=args.prefix)
    except ValueError as exc:
        raise CommandError(str(exc), ExitCode.USAGE) from None


def is_postgres_url(url: str) -> bool:
    """Return whether *url* names a PostgreSQL queue."""
    return url.startswith(("postgresql://", "postgres://"))


def open_cli_queue(
    args: argparse.Namespace,
    *,
    create: bool,
    postgres: dict[str, Any] | None = None,
    **options: Any,
) -> JobQueue:
    """Open the queue the command line names, with the JobQueue *options*.

    *postgres* holds more options for a PostgreSQL queue only.

    With *create* false, a missing SQLite file is refused rather than
    created: a command that reads or changes jobs must not make an empty
    queue out of a typo. Missing or outdated PostgreSQL tables are refused
    with the ``jobworker migrate`` command that creates them.

    :raises CommandError: the URL is missing or malformed (``USAGE``), or
        the queue cannot be opened (``BACKEND``).
    :raises BackendError: the backend failed.
    """
    url = queue_url(args)
    if url.startswith("sqlite:///") and not create:
        path = url.removeprefix("sqlite:///")
        if path and not os.path.exists(path):
            raise CommandError(
                f"no queue at {display_url(url)}: the file does not exist; "
                f"create it with: {migrate_command(args)}",
                ExitCode.BACKEND,
            )
    try:
        if is_postgres_url(url):
            # Imported here: psycopg is optional (jobworker[postgres]).
            from ._cli_postgres import tables_version  # noqa: PLC0415

            names = postgres_names(args)
            found = tables_version(url, names)
            if found != POSTGRES_SCHEMA_VERSION:
                state = "missing" if found is None else f"at schema version {found}"
                raise CommandError(
                    f"the jobworker tables {names.jobs} and {names.meta} are {state} "
                    f"(this release needs version {POSTGRES_SCHEMA_VERSION}); "
                    f"run: {migrate_command(args)}",
                    ExitCode.BACKEND,
                )
            options = {"schema": args.schema, "prefix": args.prefix, **(postgres or {}), **options}
        return open_queue(url, **options)
    except ImportError as exc:
        raise CommandError(
            f"cannot open {display_url(url)}: {exc} (install jobworker[postgres])",
            ExitCode.BACKEND,
        ) from exc
    except ValueError as exc:  # an unknown URL, a bad schema or prefix name
        raise CommandError(str(exc), ExitCode.USAGE) from exc


_DURATION = re.compile(r"([-+]?)(\d+(?:\.\d*)?|\.\d+)\s*(s|m|h|d|w)")

#: What argparse must take as a value, not an option, though it starts with
#: "-": a negative number or duration (``--offset -5``, ``--run-after -5m``).
NEGATIVE_VALUE: Final = re.compile(r"^-(\d+(\.\d*)?|\.\d+)\s*[smhdw]?$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# Bounds up to this are worth quoting as a range ("from 1 to 1024").
_HUMAN_BOUND: Final = 1_000_000


def int_between(low: int, high: int) -> Callable[[str], int]:
    """Return an argparse type that accepts integers from *low* to *high*."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if low <= value <= high:
            return value
        if max(abs(low), abs(high)) <= _HUMAN_BOUND:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        # A storage limit such as 2**62 tells the reader nothing: quote the bound crossed.
        bound = f">= {low}" if value < low else f"<= {high}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")

    return parse


def seconds(*, zero: bool) -> Callable[[str], float]:
    """Return an argparse type for a finite number of seconds, > 0 (or >= 0 with *zero*)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not (value >= 0 if zero else value > 0) or value == float("inf"):  # refuses nan
            raise argparse.ArgumentTypeError(f"must be {'>=' if zero else '>'} 0, got {text}")
        return value

    return parse


def parse_duration(text: str) -> float:
    """Return the seconds of a duration such as ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``.

    A leading ``-`` makes it negative (``-5m``: five minutes ago).

    >>> parse_duration("15m"), parse_duration("1.5h"), parse_duration("-5m")
    (900.0, 5400.0, -300.0)
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 15m, 12h or 7d, got {text!r}"
        )
    value = float(match[2]) * _UNITS[match[3]]
    return -value if match[1] == "-" else value


def positive_duration(text: str) -> float:
    """Return the seconds of a duration that must not be negative (see :func:`parse_duration`)."""
    value = parse_duration(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def parse_when(text: str, *, now: _dt.datetime) -> _dt.datetime:
    """Return the time *text* names: a duration from *now*, or an ISO 8601 time with a zone.

    >>> now = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
    >>> parse_when("10m", now=now).isoformat()
    '2026-01-01T00:10:00+00:00'
    >>> parse_when("-5m", now=now).isoformat()
    '2025-12-31T23:55:00+00:00'
    >>> parse_when("2026-01-02T09:00:00Z", now=now).isoformat()
    '2026-01-02T09:00:00+00:00'
    """
    if _DURATION.fullmatch(text.strip()):
        return now + _dt.timedelta(seconds=parse_duration(text))
    iso = text.strip()
    if iso.endswith(("Z", "z")):  # fromisoformat takes "Z" only from Python 3.11
        iso = iso[:-1] + "+00:00"
    try:
        value = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise CommandError(
            f"--run-after: expected a duration (10m) or an ISO 8601 time, got {text!r}",
            ExitCode.USAGE,
        ) from None
    if value.utcoffset() is None:
        raise CommandError(
            f"--run-after: give the time zone, as in {text}Z or {text}+02:00", ExitCode.USAGE
        )
    return value
