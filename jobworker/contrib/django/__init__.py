"""jobworker in a Django project: the queue in the project's database.

Add ``"jobworker.contrib.django"`` to ``INSTALLED_APPS`` and run
``manage.py migrate``. Then:

- :func:`enqueue` creates a job; inside ``transaction.atomic()`` it exists
  only if the transaction commits.
- :class:`DjangoJobWorker` is the base class of workers whose jobs use the
  ORM; ``manage.py runworker`` runs them, or ``JOBWORKER["START_WORKERS"]``
  starts them in the web process.
- :mod:`jobworker.contrib.django.tasks` is a backend for Django's Tasks
  framework.
- The admin shows the jobs, read-only.

Settings: see :mod:`jobworker.contrib.django.conf`.
"""

from .conf import JobworkerSettings, get_settings
from .queues import close_queues, enqueue, enqueue_job, get_queue
from .workers import DjangoJobWorker, build_workers, start_workers, stop_workers

__all__ = [
    "DjangoJobWorker",
    "JobworkerSettings",
    "build_workers",
    "close_queues",
    "enqueue",
    "enqueue_job",
    "get_queue",
    "get_settings",
    "start_workers",
    "stop_workers",
]
