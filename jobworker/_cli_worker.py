"""``jobworker worker``: run worker classes in this process until a signal.

The first SIGTERM or SIGINT stops gracefully: every worker finishes its
current job within ``--stop-timeout`` and the command exits with 0. A second
signal stops at once: the process exits with 128 + the signal number, and the
jobs it held are recovered by other workers when their leases expire. So are
they when the stop timeout passes first (exit status 1).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from ._cli_common import (
    CommandError,
    ExitCode,
    add_queue_options,
    display_url,
    int_between,
    open_cli_queue,
    seconds,
)
from ._logging import JOB_LOG_MODES, LOG_FORMATS, LOG_LEVELS, configure_logging
from .runner import Runner
from .schedules import Scheduler
from .tasks import TaskWorker
from .worker import JobWorker

__all__ = ["add_worker_command", "load_worker_class"]

log = logging.getLogger("jobworker.cli")


def load_worker_class(spec: str) -> type[JobWorker]:
    """Return the :class:`JobWorker` subclass that ``module:Class`` names.

    The current directory is on the import path, as with ``python -m``.

    :raises CommandError: (``USAGE``) it cannot be imported, or is not a
        concrete JobWorker subclass.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CommandError(f"expected module:Class, got {spec!r}", ExitCode.USAGE)
    found: Any = import_module(module_name)
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CommandError(f"{module_name!r} has no {attribute!r}", ExitCode.USAGE) from None
    if not (isinstance(found, type) and issubclass(found, JobWorker)):
        raise CommandError(f"{spec} is not a JobWorker subclass", ExitCode.USAGE)
    if inspect.isabstract(found):
        raise CommandError(
            f"{spec} is abstract: it must implement the three methods", ExitCode.USAGE
        )
    return found


def import_module(module_name: str) -> Any:
    """Import the module the operator named on the command line, and return it.

    The current directory is on the import path, as with ``python -m``.

    :raises CommandError: (``USAGE``) it cannot be imported.
    """
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # broad: the module's own code failed; say so, and where, in one line
        log.debug("importing %s failed", module_name, exc_info=True)
        if (
            isinstance(exc, ImportError)
            and exc.name
            and f"{module_name}.".startswith(f"{exc.name}.")
        ):
            # The module itself (or its package) is not there: no file to point at.
            raise CommandError(f"cannot import {module_name!r}: {exc}", ExitCode.USAGE) from None
        raise CommandError(
            f"importing {module_name!r} failed{_where(exc)}: {type(exc).__name__}: {exc}",
            ExitCode.USAGE,
        ) from None


def _where(exc: BaseException) -> str:
    """Return `` at FILE:LINE``, where *exc* was raised in the imported code (or ``""``)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {exc.filename}:{exc.lineno}"
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen ")  # importlib's own machinery
    ]
    if not frames:
        return ""
    return f" at {frames[-1].filename}:{frames[-1].lineno}"


def _build(
    cls: Callable[..., JobWorker], queue: Any, options: dict[str, Any], spec: str
) -> JobWorker:
    try:
        return cls(queue, **options)
    except (TypeError, ValueError) as exc:
        given = "".join(f", {key}={value!r}" for key, value in options.items())
        raise CommandError(f"cannot create {spec}(queue{given}): {exc}", ExitCode.USAGE) from None


class _CommandRunner(Runner):
    """A Runner that logs one line once the workers run and signals are handled."""

    def __init__(self, workers: list[JobWorker], url: str, **options: Any) -> None:
        super().__init__(workers, **options)
        self.url = url

    def start(self) -> None:
        super().start()  # run() installs the signal handlers before it calls start()
        names = sorted({worker.get_worker_name() for worker in self.workers})
        count = len(self.workers)
        log.info(
            "jobworker worker: %d worker thread%s (%s) running on %s, pid %d",
            count,
            "" if count == 1 else "s",
            ", ".join(names),
            self.url,
            os.getpid(),
        )


def _exit_now(code: int) -> NoReturn:
    """Leave the process at once, with worker threads still running jobs.

    The threads are not daemons and the library never kills one, so only
    ``os._exit`` ends the process now. Their jobs' leases, no longer renewed,
    expire and the queue recovers the jobs.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _worker(args: argparse.Namespace) -> int:
    configure_logging(
        level=args.log_level, format=args.log_format, stream=sys.stderr, job_log=args.job_log
    )
    classes: list[tuple[str, Callable[..., JobWorker]]] = [
        (spec, load_worker_class(spec)) for spec in args.classes
    ]
    if args.tasks:
        # Only the modules the operator named are imported; their @task
        # functions register themselves. A job naming any other task fails.
        for module_name in args.tasks:
            import_module(module_name)
        classes.append(("TaskWorker", TaskWorker))
    if not classes:
        raise CommandError("name a worker class (module:Class) or --tasks MODULE", ExitCode.USAGE)
    from ._cli_schedules import load_schedules  # noqa: PLC0415  (it imports this module)

    schedules = load_schedules(args.schedules)
    options: dict[str, Any] = {}
    for name in ("poll_interval", "heartbeat_interval", "error_backoff"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.job_types:
        options["job_types"] = frozenset(args.job_types)
    queue_options = {} if args.lease_duration is None else {"lease_duration": args.lease_duration}
    threads = len(classes) * args.concurrency
    # Every worker thread and its heartbeat may hold a connection at once.
    postgres = {"pool_size": max(10, 2 * threads)}
    queue = open_cli_queue(args, create=True, postgres=postgres, **queue_options)
    try:
        workers = [
            _build(cls, queue, options, spec)
            for spec, cls in classes
            for _ in range(args.concurrency)
        ]
    except BaseException:
        queue.close()
        raise
    url = display_url(args.queue or os.environ.get("JOBWORKER_QUEUE", ""))
    try:
        close_metrics = _start_telemetry(args, queue, workers)
    except BaseException:
        queue.close()
        raise
    runner = _CommandRunner(
        workers,
        url,
        # Signals can be handled in the main thread only; elsewhere the caller stops it.
        handle_signals=threading.current_thread() is threading.main_thread(),
        stop_timeout=args.stop_timeout,
        # One more scheduler among any others on this store: no leader (see schedules).
        scheduler=Scheduler(queue, schedules) if schedules else None,
    )
    if schedules:
        log.info("jobworker worker: running schedules %s", ", ".join(s.name for s in schedules))
    try:
        stopped = runner.run()
    finally:
        close_metrics()
    signals = runner.received_signals
    if stopped:
        queue.close()
        if not signals:
            log.error("jobworker worker: a worker thread ended on its own; stopped the others")
            return ExitCode.FAILURE
        log.info("jobworker worker: stopped; every job it held ended")
        return ExitCode.OK
    held = sorted(str(job_id) for worker in workers if (job_id := worker.get_metrics().current_job))
    lease = queue.lease_duration
    if len(signals) >= 2:
        log.warning(
            "jobworker worker: stopped now, without waiting for the jobs in progress. "
            "Jobs left unfinished: %s. Another worker runs them again once their "
            "leases expire, within %.0f s.",
            ", ".join(held) or "none",
            lease,
        )
        _exit_now(128 + signals[-1])
    log.error(
        "jobworker worker: not every job ended within --stop-timeout %s s; jobs left to "
        "their leases, recovered within %.0f s: %s",
        args.stop_timeout,
        lease,
        ", ".join(held) or "none",
    )
    _exit_now(ExitCode.FAILURE)


def _require(module: str, extra: str, option: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise CommandError(
            f"{option} needs {module}: pip install 'jobworker[{extra}]'", ExitCode.USAGE
        )


def _start_telemetry(
    args: argparse.Namespace, queue: Any, workers: list[JobWorker]
) -> Callable[[], None]:
    """Start what --tracing and --metrics-port ask for; return what stops it."""
    if args.tracing:
        _require("opentelemetry", "otel", "--tracing")
        from .metrics import tracing  # noqa: PLC0415 (the otel extra, needed with --tracing only)

        tracing.instrument(workers)
    if args.metrics_port is None:
        return lambda: None
    _require("prometheus_client", "prometheus", "--metrics-port")
    from .metrics import prometheus  # noqa: PLC0415 (the prometheus extra, with --metrics-port only)

    metrics = prometheus.PrometheusMetrics(queue)
    for worker in workers:
        metrics.watch(worker)
    try:
        server = prometheus.serve_metrics(metrics, port=args.metrics_port, host=args.metrics_host)
    except OSError as exc:
        raise CommandError(
            f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc}",
            ExitCode.USAGE,
        ) from None
    host, port = server.address
    log.info("jobworker worker: metrics on http://%s:%d/metrics", host, port)
    return server.close


def add_worker_command(subcommands: Any) -> None:
    """Add the ``worker`` subcommand to *subcommands*."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        "worker",
        help="run workers until SIGTERM or SIGINT",
        description=(
            "Run worker classes, each given as module:Class and built as "
            "Class(queue, **options), and the tasks of the modules given with --tasks, in "
            "threads of this process. The first SIGTERM or "
            "SIGINT stops gracefully: current jobs finish within --stop-timeout, then exit "
            "0. A second signal exits at once with 128 + its number; the jobs held are "
            "recovered by other workers when their leases expire."
        ),
    )
    parser.set_defaults(handler=_worker)
    parser.add_argument(
        "classes", nargs="*", metavar="module:Class", help="a JobWorker subclass to run"
    )
    parser.add_argument(
        "--tasks",
        action="append",
        default=[],
        metavar="MODULE",
        help=(
            "import MODULE and run the @task functions registered in this process, in "
            "TaskWorker threads (repeatable); a job naming any other task fails"
        ),
    )
    parser.add_argument(
        "--schedules",
        action="append",
        default=[],
        metavar="module:NAME",
        help=(
            "also enqueue the jobs of these schedules (a Schedule or a list of them; "
            "repeatable); any number of processes may run the same ones"
        ),
    )
    parser.add_argument(
        "--concurrency",
        type=int_between(1, 1024),
        default=1,
        metavar="N",
        help="threads (worker instances) per class (default: 1)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=seconds(zero=True),
        default=60.0,
        metavar="SECONDS",
        help="how long current jobs may take to finish after a signal (default: 60)",
    )
    add_queue_options(parser)
    group = parser.add_argument_group("worker and queue options (default: the class's own)")
    group.add_argument("--poll-interval", type=seconds(zero=False), metavar="SECONDS")
    group.add_argument(
        "--lease-duration",
        type=seconds(zero=False),
        metavar="SECONDS",
        help="how long a claim lasts unrenewed: how soon a lost job is recovered",
    )
    group.add_argument("--heartbeat-interval", type=seconds(zero=False), metavar="SECONDS")
    group.add_argument("--error-backoff", type=seconds(zero=True), metavar="SECONDS")
    group.add_argument(
        "--job-type",
        dest="job_types",
        action="append",
        metavar="TYPE",
        help="take only jobs of this type (repeat for more)",
    )
    telemetry = parser.add_argument_group("telemetry")
    telemetry.add_argument(
        "--metrics-port",
        type=int_between(0, 65535),
        metavar="PORT",
        help="serve Prometheus metrics on this port (0: any free one); needs the prometheus extra",
    )
    telemetry.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the metrics are served on (default: 127.0.0.1, this machine only)",
    )
    telemetry.add_argument(
        "--tracing",
        action="store_true",
        help="an OpenTelemetry span per attempt, continuing the trace of the task's "
        "enqueue; needs the otel extra and a configured SDK",
    )
    logs = parser.add_argument_group("logging (to standard error)")
    logs.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    logs.add_argument("--log-level", choices=LOG_LEVELS, default="INFO", type=str.upper)
    logs.add_argument(
        "--job-log",
        choices=JOB_LOG_MODES,
        default="all",
        help="one line per finished job: all of them (default), only failed, "
        "retried and lost attempts, or none",
    )
