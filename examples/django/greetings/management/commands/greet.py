"""``manage.py greet NAME [--wait]``: enqueue a greeting job from the command line."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobworker.contrib.django import enqueue, get_queue


class Command(BaseCommand):
    help = "Enqueue a greeting job; with --wait, wait for a worker to run it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args: Any, **options: Any) -> None:
        job = enqueue("greet", {"name": options["name"]})
        self.stdout.write(f"enqueued job {job.metadata.id}")
        if options["wait"]:
            done = get_queue().wait_for_job(job.metadata.id, timeout=options["timeout"])
            self.stdout.write(f"{done.status}: {getattr(done, 'result', None)}")
