"""``manage.py runworker``: run the project's workers until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobworker.contrib.django.conf import get_settings
from jobworker.contrib.django.queues import get_queue
from jobworker.contrib.django.workers import build_workers
from jobworker.runner import Runner
from jobworker.schedules import Scheduler

log = logging.getLogger("jobworker.contrib.django")


class Command(BaseCommand):
    help = (
        "Run jobworker workers in this process until SIGTERM or SIGINT, which let "
        "the current jobs finish (up to --stop-timeout seconds)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--worker",
            action="append",
            dest="workers",
            metavar="DOTTED.PATH",
            help="a DjangoJobWorker subclass to run (repeatable); default JOBWORKER['WORKERS']",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="threads per worker class; default JOBWORKER['CONCURRENCY']",
        )
        parser.add_argument(
            "--tasks",
            action="store_true",
            help="also run the tasks of a jobworker Tasks backend (see --backend, --queue-name)",
        )
        parser.add_argument(
            "--backend", default="default", help="the TASKS alias for --tasks (default: default)"
        )
        parser.add_argument(
            "--queue-name",
            action="append",
            dest="queue_names",
            metavar="NAME",
            help="a task queue for --tasks to take (repeatable); default: the backend's QUEUES",
        )
        parser.add_argument(
            "--stop-timeout",
            type=float,
            help="seconds the workers get to finish on stop; default JOBWORKER['STOP_TIMEOUT']",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        conf = get_settings()
        concurrency = options["concurrency"] or conf.concurrency
        if concurrency < 1:
            raise CommandError(f"--concurrency must be >= 1, got {concurrency}")
        paths = options["workers"]
        try:
            workers = build_workers(paths, concurrency=concurrency)
            if options["tasks"]:
                # Imported here: the Tasks framework is needed only for --tasks.
                from jobworker.contrib.django.tasks import TaskWorker  # noqa: PLC0415

                workers += [
                    TaskWorker(
                        backend=options["backend"],
                        queue_names=options["queue_names"],
                        **conf.worker_options,
                    )
                    for _ in range(concurrency)
                ]
        except ImproperlyConfigured as exc:
            # A bad --worker path or setting: one line, not a traceback.
            raise CommandError(str(exc)) from exc
        if not workers:
            raise CommandError(
                "no workers to run: set JOBWORKER['WORKERS'], or pass --worker or --tasks"
            )
        stop_timeout = options["stop_timeout"]
        runner = Runner(
            workers,
            handle_signals=True,
            stop_timeout=conf.stop_timeout if stop_timeout is None else stop_timeout,
            # JOBWORKER["SCHEDULES"]: every runworker process runs them; the
            # store makes one job per slot (see jobworker.schedules).
            scheduler=Scheduler(get_queue(), conf.schedules) if conf.schedules else None,
        )
        names = ", ".join(sorted({w.get_worker_name() for w in workers}))
        self.stdout.write(f"jobworker: running {len(workers)} worker thread(s): {names}")
        self.stdout.flush()
        stopped = runner.run()
        if not stopped:
            raise CommandError(
                "some jobs did not finish within the stop timeout; their leases expire "
                "and another worker runs them again"
            )
        self.stdout.write("jobworker: stopped")
