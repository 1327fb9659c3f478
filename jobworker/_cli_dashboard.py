"""``jobworker dashboard``: serve the web dashboard of a queue, on loopback by default."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from ._cli_common import (
    ExitCode,
    add_queue_options,
    display_url,
    int_between,
    open_cli_queue,
    queue_url,
    seconds,
)
from .web import Dashboard, allow_all, make_dashboard_server

__all__ = ["add_dashboard_command"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _dashboard(args: argparse.Namespace) -> int:
    url = display_url(queue_url(args))
    with open_cli_queue(args, create=False) as queue:
        app = Dashboard(
            queue,
            actions=args.actions,
            # Whoever can reach the port may act: loopback by default.
            authorize=allow_all if args.actions else None,
            refresh_interval=args.refresh,
        )
        server = make_dashboard_server(app, args.host, args.port)
        host, port = str(server.server_address[0]), int(server.server_address[1])
        try:
            shown = f"[{host}]" if ":" in host else host
            mode = "actions enabled" if args.actions else "read-only"
            sys.stdout.write(
                f"jobworker dashboard: {url} on http://{shown}:{port}/ ({mode}); Ctrl-C stops\n"
            )
            sys.stdout.flush()
            if args.actions and not _is_loopback(args.host):
                sys.stderr.write(
                    f"jobworker dashboard: warning: anyone who can reach {args.host} may "
                    "retry, cancel and delete jobs\n"
                )
            server.serve_forever()
        finally:
            server.server_close()
    return ExitCode.OK


def add_dashboard_command(subcommands: Any) -> None:
    """Add the ``dashboard`` subcommand to *subcommands*."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        "dashboard",
        help="serve the web dashboard of a queue",
        description=(
            "Serve the dashboard of the queue (jobs by status and type, throughput, the "
            "job list, each job's attempts) over HTTP until Ctrl-C. Read-only unless "
            "--actions is given; then anyone who can reach the port may retry, cancel "
            "and delete jobs, so it listens on loopback unless --host says otherwise."
        ),
    )
    parser.set_defaults(handler=_dashboard)
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int_between(0, 65535),
        default=8181,
        metavar="N",
        help="the port (default: 8181; 0 picks a free one)",
    )
    parser.add_argument(
        "--actions", action="store_true", help="enable retry, cancel and delete buttons"
    )
    parser.add_argument(
        "--refresh",
        type=seconds(zero=False),
        default=2.0,
        metavar="SECONDS",
        help="how often open pages update (default: 2)",
    )
    add_queue_options(parser)
