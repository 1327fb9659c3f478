"""Run each job inside a Flask application context.

The extension builds its workers from subclasses that put
:class:`AppContextMixin` in front of the application's own worker class, so
the worker class itself needs no change.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from flask import Flask

from ...errors import WorkerStateError
from ...worker import JobOutcome, JobWorker

__all__ = ["AppContextMixin", "with_app_context"]

W = TypeVar("W", bound=JobWorker)


class AppContextMixin(JobWorker):
    """A worker whose every step runs inside an app context of :attr:`flask_app`.

    One context per job: it is pushed before the job is claimed and popped
    after its outcome is stored and the hooks ran, so ``can_process_job``,
    ``on_job_start``, ``execute_job`` and the other hooks see
    :data:`flask.current_app`, :data:`flask.g` and the app's extensions, and
    the app's ``teardown_appcontext`` functions (a Flask-SQLAlchemy session's
    cleanup, for one) run once per job. An idle wait for a job also happens
    inside a context, popped when the wait ends.

    Use :func:`with_app_context` rather than subclassing this directly.
    """

    #: The app whose context each job runs in; set by :func:`with_app_context`.
    flask_app: ClassVar[Flask | None] = None

    def run_once(self, timeout: float | None = 0.0) -> JobOutcome | None:
        """Claim one job and run it, all inside a new app context.

        :raises WorkerStateError: the class has no ``flask_app``.
        """
        app = type(self).flask_app
        if app is None:
            raise WorkerStateError(
                f"{type(self).__name__} has no flask_app: build it with with_app_context()"
            )
        with app.app_context():
            return super().run_once(timeout)


def with_app_context(worker_class: type[W], app: Flask) -> type[W]:
    """Return a subclass of *worker_class* that runs each job in an app context of *app*.

    The subclass keeps the name, module and docstring of *worker_class* and
    changes nothing else; see :class:`AppContextMixin` for what runs inside
    the context. The extension calls this for every configured worker class;
    call it yourself for a worker you build and start on your own::

        worker = with_app_context(ReportWorker, app)(queue)
    """
    bases: tuple[type[Any], ...] = (
        (worker_class,)
        if issubclass(worker_class, AppContextMixin)
        else (AppContextMixin, worker_class)
    )
    namespace = {
        "flask_app": app,
        "__module__": worker_class.__module__,
        "__qualname__": worker_class.__qualname__,
        "__doc__": worker_class.__doc__,
    }
    bound: type[W] = type(worker_class.__name__, bases, namespace)
    return bound
