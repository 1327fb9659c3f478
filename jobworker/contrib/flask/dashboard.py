"""The jobworker dashboard in a Flask app: a blueprint.

::

    from jobworker.contrib.flask.dashboard import dashboard_blueprint

    app.register_blueprint(
        dashboard_blueprint(authorize=lambda environ, action: is_admin()),
        url_prefix="/jobs",
    )

Flask has no notion of a user, so the ``authorize`` hook is required: it is
called inside the request (``flask.request``, ``flask.g`` and your login
extension are available) before every page and action.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from ...queues.base import JobQueue
from ...web import Authorize, Dashboard, mounted_environ
from ._extension import get_state

__all__ = ["dashboard_blueprint"]


def _app_queue() -> JobQueue:
    return get_state().get_queue()


def dashboard_blueprint(
    *,
    authorize: Authorize,
    queue: JobQueue | None = None,
    actions: bool = False,
    name: str = "jobworker_dashboard",
    **options: Any,
) -> Blueprint:
    """Return a blueprint that serves a dashboard; register it with a ``url_prefix``.

    :param authorize: asked ``authorize(environ, action)`` before every page
        (``"view"``) and action.
    :param queue: the queue shown; the app's
        :class:`~jobworker.contrib.flask.FlaskJobworker` queue by default.
    :param actions: enable retry, cancel and delete.
    :param name: the blueprint's name.
    :param options: more :class:`~jobworker.web.Dashboard` options (``secret``,
        ``refresh_interval``, ``page_size``, ``title``).
    """
    app = Dashboard(
        queue if queue is not None else _app_queue,
        authorize=authorize,
        actions=actions,
        **options,
    )
    blueprint = Blueprint(name, __name__)

    def serve(rest: str) -> Response:
        environ = mounted_environ(request.environ, request.get_data(), request.path, rest)
        status, headers, body = app.handle(environ)
        return Response(body, status=int(status.split(" ", 1)[0]), headers=headers)

    blueprint.add_url_rule("/", "dashboard", serve, defaults={"rest": ""}, methods=["GET", "POST"])
    blueprint.add_url_rule("/<path:rest>", "dashboard_path", serve, methods=["GET", "POST"])
    return blueprint
