"""The jobworker dashboard: a WSGI application that shows a queue's jobs, live.

One app, served three ways: ``jobworker dashboard --queue URL`` (on
loopback), in Django (:mod:`jobworker.contrib.django.dashboard`) and in
Flask (:mod:`jobworker.contrib.flask.dashboard`). Standard library only.
"""

from ._app import ACTIONS, Authorize, Dashboard, allow_all, mounted_environ
from ._server import DashboardServer, make_dashboard_server

__all__ = [
    "ACTIONS",
    "Authorize",
    "Dashboard",
    "DashboardServer",
    "allow_all",
    "make_dashboard_server",
    "mounted_environ",
]
