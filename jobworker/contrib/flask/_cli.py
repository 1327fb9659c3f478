"""The ``flask jobworker`` commands.

``worker`` runs the app's workers in the foreground; the others pass their
arguments to the ``jobworker`` command (:func:`jobworker.cli.main`) with the
app's queue URL, so ``flask jobworker list --status failed`` is
``jobworker list --queue URL --status failed``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from ... import cli as jobworker_cli
from ..._cli_common import ExitCode
from ..._logging import LOG_FORMATS, LOG_LEVELS, LogFormat, configure_logging
from ...redact import mask_secrets
from ...runner import Runner
from ._config import ConfigurationError, redact_url
from ._extension import AppState, get_state

__all__ = ["DELEGATED_COMMANDS", "jobworker_commands"]

log = logging.getLogger("jobworker.contrib.flask")


class _JobworkerGroup(AppGroup):
    """The ``flask jobworker`` group: an app that cannot load ends in one line, not a traceback.

    Flask finds the group through the ``flask.commands`` entry point before
    it loads the app; a subcommand loads it, and a :class:`ConfigurationError`
    (a bad ``JOBWORKER_QUEUE``, say) then prints one line on standard error
    and exits with status 2, as the ``jobworker`` command does for bad input.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            click.echo(f"flask jobworker: {mask_secrets(' '.join(str(exc).split()))}", err=True)
            ctx.exit(ExitCode.USAGE)


jobworker_commands = _JobworkerGroup(
    "jobworker",
    help=(
        "Run this app's jobworker workers, and read or manage its queue. "
        "The queue is the app's JOBWORKER_QUEUE."
    ),
)

#: The commands handed to ``jobworker.cli.main``, with their one-line help.
DELEGATED_COMMANDS = {
    "enqueue": "Create a job on the app's queue.",
    "list": "List the jobs of the app's queue.",
    "show": "Show one job of the app's queue.",
    "stats": "Count the jobs of the app's queue in each status.",
    "cancel": "Cancel a pending or running job.",
    "retry": "Put a failed job back to pending.",
    "prune": "Delete terminal jobs older than a cutoff.",
    "migrate": "Create or upgrade the tables of the app's durable queue.",
}


def _refuse_memory_queue(state: AppState, command: str) -> None:
    """Exit with one clear line if the app's queue lives in memory."""
    if state.settings.is_memory:
        raise click.UsageError(
            f"'flask jobworker {command}' cannot use JOBWORKER_QUEUE = 'memory:': "
            "a memory queue lives inside one process, and this command would see an "
            "empty queue of its own. Use sqlite:///PATH or postgresql://..., or run "
            "the workers inside the app (JOBWORKER_START_WORKERS = True)."
        )


def _shared_queue_url(state: AppState, command: str) -> str:
    """Return the queue URL the ``jobworker`` command can open, or exit with one clear line."""
    _refuse_memory_queue(state, command)
    url = state.queue_url
    if url is None:
        raise click.UsageError(
            f"'flask jobworker {command}' needs JOBWORKER_QUEUE as a URL; "
            "this app gives a queue object"
        )
    return url


@jobworker_commands.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Workers of each configured class (default: JOBWORKER_CONCURRENCY).",
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="How long a stop waits for jobs in flight (default: JOBWORKER_STOP_TIMEOUT).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Least level of the records logged.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help=(
        "Log readable lines ('text') or one JSON object per line ('json') to stderr. "
        "Without it, text, unless the app configured logging itself."
    ),
)
def worker_command(
    concurrency: int | None,
    stop_timeout: float | None,
    log_level: str,
    log_format: LogFormat | None,
) -> None:
    """Run the app's workers in the foreground until SIGTERM or SIGINT.

    Each job runs inside an app context. The first signal lets every job in
    flight finish within the stop timeout, then the command exits with
    status 0. A second signal stops at once (status 128 + its number: 143
    for SIGTERM, 130 for SIGINT); so does the stop timeout (status 1). A job
    still running then is left to its lease: the queue hands it to another
    worker once the lease expires. Status 1 also when a worker thread ended
    on its own, and 2 when the app's configuration cannot run a worker
    process (no worker, or a memory: queue). The statuses are those of
    ``jobworker worker``.
    """
    state = get_state(current_app)
    if not state.worker_classes:
        raise click.UsageError("JOBWORKER_WORKERS names no worker to run")
    _refuse_memory_queue(state, "worker")
    where = state.queue_url
    if log_format is not None or not logging.getLogger().handlers:
        configure_logging(level=log_level.upper(), format=log_format or "text", stream=sys.stderr)
    workers = state.create_workers(concurrency=concurrency)
    runner = Runner(
        workers,
        # Signals can be handled in the main thread only; elsewhere the caller stops it.
        handle_signals=threading.current_thread() is threading.main_thread(),
        stop_timeout=state.settings.stop_timeout if stop_timeout is None else stop_timeout,
        # JOBWORKER_SCHEDULES: every worker process runs them, one job a slot.
        scheduler=state.create_scheduler(state.get_queue()),
    )
    log.info(
        "flask jobworker worker: %d worker thread(s) of app %s running on %s, pid %d",
        len(workers),
        current_app.name,
        "the app's queue object" if where is None else redact_url(where),
        os.getpid(),
    )
    stopped = runner.run()
    signals = runner.received_signals
    if stopped:
        state.close()
        if not signals:
            log.error("flask jobworker worker: a worker thread ended on its own")
            sys.exit(ExitCode.FAILURE)
        log.info("flask jobworker worker: stopped; every job it held ended")
        sys.exit(ExitCode.OK)
    held = sorted(str(job_id) for worker in workers if (job_id := worker.get_metrics().current_job))
    log.warning(
        "flask jobworker worker: %s; jobs left to their leases (as last seen: a job claimed "
        "at that instant may be missing): %s",
        "stopped now" if len(signals) >= 2 else "not every job ended within the stop timeout",
        ", ".join(held) or "none",
    )
    # Worker threads are non-daemon and still in a job: a normal exit would
    # wait for them. Their leases, no longer renewed, make the jobs recoverable.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signals[-1] if len(signals) >= 2 else ExitCode.FAILURE)


def _add_delegated(name: str, summary: str) -> None:
    @jobworker_commands.command(
        name,
        help=f"{summary} Takes the arguments of 'jobworker {name}' (see --help).",
        short_help=summary,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    @click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
    def command(arguments: tuple[str, ...]) -> None:
        state = get_state(current_app)
        url = _shared_queue_url(state, name)
        sys.exit(jobworker_cli.main([name, *_queue_arguments(state, url, arguments), *arguments]))


def _queue_arguments(state: AppState, url: str, arguments: tuple[str, ...]) -> list[str]:
    """Return the options that name the app's queue, unless *arguments* give their own."""

    def given(option: str) -> bool:
        return any(arg == option or arg.startswith(f"{option}=") for arg in arguments)

    if given("--queue"):
        return []
    names = ["--queue", url]
    if url.startswith(("postgresql://", "postgres://")):
        # A PostgreSQL queue's tables are found by the schema and prefix it was opened with.
        for key in ("schema", "prefix"):
            value = state.settings.queue_options.get(key)
            if value is not None and not given(f"--{key}"):
                names += [f"--{key}", str(value)]
    return names


for _name, _summary in DELEGATED_COMMANDS.items():
    _add_delegated(_name, _summary)
