"""Serve a WSGI app from the standard library's server, one thread per request."""

from __future__ import annotations

import logging
import socketserver
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["DashboardServer", "make_dashboard_server"]

log = logging.getLogger("jobworker.web")


class DashboardServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server that answers each request in its own thread.

    Request threads are not daemons, so ``server_close`` joins them; a
    request takes a few queries at most, so the join is short.
    """

    daemon_threads = False


class _Handler(WSGIRequestHandler):
    """Log requests on the ``jobworker.web`` logger, not on standard error."""

    #: Seconds a connection may stay silent: a browser's idle (preconnected)
    #: socket holds a thread no longer, so closing the server waits no longer.
    timeout = 5.0

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_dashboard_server(app: Any, host: str = "127.0.0.1", port: int = 0) -> DashboardServer:
    """Return a server of *app* bound to *host* and *port* (0: any free port), not yet serving.

    Serve with ``serve_forever()`` (in a thread of your own, if need be);
    stop with ``shutdown()`` from another thread, then ``server_close()``.
    """
    server = make_server(host, port, app, server_class=DashboardServer, handler_class=_Handler)
    assert isinstance(server, DashboardServer)
    return server
