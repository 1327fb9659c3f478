"""The dashboard as one WSGI application: routes, authorization, CSRF, actions and their log.

Threads: a :class:`Dashboard` is shared by the server's threads. ``_lock``
guards the overview cache (``_overview``, ``_overview_at``); everything else
is set in ``__init__`` and only read afterwards.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import http.cookies
import importlib.resources
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from ..errors import JobworkerError, StaleJobError, safe_repr
from ..model import FailedJob, requeue
from ..queues.base import JobQueue
from ._html import Html
from ._pages import (
    ACTIONS_BY_STATUS,
    Context,
    Overview,
    filter_form,
    job_data,
    job_page,
    jobs_page,
    layout,
    message_page,
    overview_page,
)

__all__ = ["ACTIONS", "Authorize", "Dashboard", "allow_all", "mounted_environ"]

log = logging.getLogger("jobworker.web")

#: ``authorize(environ, action)``: may the request's user do *action*?
#: *action* is ``"view"`` for every page, or the name of an action.
Authorize = Callable[[dict[str, Any], str], bool]

#: The job actions. (Pausing and resuming a job type, once the queue has
#: them, are type actions: another entry point beside ``/action``, under the
#: same authorization hook, CSRF check and log.)
ACTIONS: Final = ("retry", "cancel", "delete")

_COOKIE: Final = "jobworker_dashboard_csrf"
_MAX_BODY: Final = 64 * 1024
_STATIC: Final = {
    "/static/dashboard.css": "text/css; charset=utf-8",
    "/static/dashboard.js": "text/javascript; charset=utf-8",
}
_HEADERS: Final = [
    # Only this app's own files run or style the page: user data that slipped
    # through escaping could still not run a script.
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
]
_THROUGHPUT_SLOTS: Final = 60
_THROUGHPUT_INTERVAL: Final = 60.0

Response = tuple[str, list[tuple[str, str]], bytes]
StartResponse = Callable[..., Any]


def allow_all(environ: dict[str, Any], action: str) -> bool:
    """Allow everything: for a dashboard only its operator can reach (the CLI's, on loopback)."""
    return True


class _Refused(Exception):
    """An action request that is refused with 403 Forbidden."""


class Dashboard:
    """The jobworker dashboard, a WSGI application.

    Serve it with any WSGI server (``jobworker dashboard`` does, on
    loopback), mount it in Django (:func:`jobworker.contrib.django.dashboard.dashboard_urls`)
    or in Flask (:func:`jobworker.contrib.flask.dashboard.dashboard_blueprint`).
    It reads the queue for every page; the overview's counts are cached for
    *refresh_interval* seconds, so that many viewers cost one count.

    It is read-only unless *actions* is true; then each action is asked of
    *authorize*, needs the CSRF token of the page it came from, and is
    logged on the ``jobworker.web`` logger.

    :param queue: the queue, or a function that returns it (called for each request).
    :param authorize: asked ``authorize(environ, action)`` before every page
        (``"view"``) and action; ``None`` allows viewing and requires
        *actions* to be false.
    :param actions: show and accept retry, cancel and delete.
    :param secret: the key that signs CSRF tokens; random per process by
        default (give one when several processes serve the dashboard).
    :param refresh_interval: seconds between the live updates of an open page.
    :param page_size: jobs per page of the job list.
    :raises ValueError: *actions* without *authorize*, or a bad number.
    """

    def __init__(
        self,
        queue: JobQueue | Callable[[], JobQueue],
        *,
        authorize: Authorize | None = None,
        actions: bool = False,
        secret: bytes | None = None,
        refresh_interval: float = 2.0,
        page_size: int = 50,
        title: str = "jobworker",
    ) -> None:
        if actions and authorize is None:
            raise ValueError(
                "actions=True needs an authorize hook: pass authorize=... "
                "(allow_all to allow anyone)"
            )
        if not isinstance(refresh_interval, (int, float)) or not 0.1 <= refresh_interval <= 3600:
            raise ValueError(
                "refresh_interval must be from 0.1 to 3600 seconds, "
                f"got {safe_repr(refresh_interval)}"
            )
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= 1000
        ):
            raise ValueError(f"page_size must be an int from 1 to 1000, got {safe_repr(page_size)}")
        self._queue_source = queue
        self._authorize = authorize if authorize is not None else allow_all
        self.actions = bool(actions)
        self._secret = secret if secret is not None else os.urandom(32)
        self.refresh_interval = float(refresh_interval)
        self.page_size = page_size
        self.title = title
        self._static = {
            path: (
                importlib.resources.files(__package__) / "static" / path.rsplit("/", 1)[1]
            ).read_bytes()
            for path in _STATIC
        }
        self._lock = threading.Lock()
        self._overview: Overview | None = None  # guarded by _lock
        self._overview_at = -1.0  # guarded by _lock: monotonic time of _overview

    # -- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request (the WSGI entry point)."""
        status, headers, body = self.handle(environ)
        start_response(status, headers)
        return [body]

    def handle(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """Answer one request: return its status line, headers and body."""
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path in _STATIC and method in ("GET", "HEAD"):
            return (
                "200 OK",
                [
                    ("Content-Type", _STATIC[path]),
                    ("Cache-Control", "max-age=3600"),
                    *_HEADERS,
                ],
                self._static[path],
            )
        cookie = self._cookie(environ)
        base = (environ.get("SCRIPT_NAME") or "").rstrip("/")
        # A browser without the cookie gets one with this answer; its forms
        # carry the token of that new cookie.
        page_cookie, fresh = cookie, None
        if self.actions and cookie is None:
            page_cookie = os.urandom(32).hex()
            secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
            fresh = (
                f"{_COOKIE}={page_cookie}; Path={base or '/'}; HttpOnly; SameSite=Strict{secure}"
            )
        ctx = Context(
            base=base,
            csrf_token=self._token(page_cookie) if self.actions else "",
            actions=self.actions,
            refresh_ms=round(self.refresh_interval * 1000),
            title=self.title,
        )
        try:
            if method == "POST" and path == "/action":
                return self._action(environ, ctx, cookie, fresh)
            if method not in ("GET", "HEAD"):
                return self._page(
                    ctx,
                    "405 Method Not Allowed",
                    message_page(ctx, "Not allowed", "Use GET."),
                    fresh,
                )
            if not self._authorize(environ, "view"):
                return self._page(
                    ctx,
                    "403 Forbidden",
                    message_page(ctx, "Forbidden", "You may not view the dashboard."),
                    fresh,
                )
            return self._get(environ, ctx, path, fresh)
        except JobworkerError as exc:
            log.warning("dashboard: %s %s failed: %s", method, path, exc)
            page = message_page(ctx, "Queue error", f"{type(exc).__name__}: {exc}")
            return self._page(ctx, "503 Service Unavailable", page, fresh)

    # -- pages -------------------------------------------------------------------------------------

    def _get(self, environ: dict[str, Any], ctx: Context, path: str, fresh: str | None) -> Response:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        live = path.startswith("/live/")
        route = path.removeprefix("/live") if live else path
        if route == "/":
            body = overview_page(ctx, self._get_overview())
            page = body if live else layout(ctx, "Overview", ctx.url("/live/"), body)
        elif route == "/jobs":
            filters = {
                k: query[k] for k in ("status", "type", "user", "q", "cursor") if query.get(k)
            }
            try:
                found = self.queue.browse_jobs(
                    status=filters.get("status"),
                    type=filters.get("type"),
                    user_id=filters.get("user"),
                    id_contains=filters.get("q"),
                    cursor=filters.get("cursor"),
                    limit=self.page_size,
                )
            except ValueError as exc:
                return self._page(
                    ctx, "400 Bad Request", message_page(ctx, "Bad request", str(exc)), fresh
                )
            body = jobs_page(ctx, found.jobs, filters, found.next_cursor)
            page = (
                body
                if live
                else layout(
                    ctx, "Jobs", ctx.url("/live/jobs", **filters), body, filter_form(ctx, filters)
                )
            )
        elif route == "/job" and query.get("id"):
            job_id = query["id"]
            job = self.queue.get_job(job_id)
            if job is None:
                page = message_page(ctx, "No such job", f"There is no job {job_id!r}.")
                return self._page(ctx, "404 Not Found", page, fresh)
            done = query.get("done", "")
            notice = f"{done}: done" if done in ACTIONS else ""
            body = job_page(ctx, job, job_data(job, self.queue.registry), notice)
            page = (
                body
                if live
                else layout(ctx, f"Job {job_id}", ctx.url("/live/job", id=job_id), body)
            )
        else:
            return self._page(
                ctx, "404 Not Found", message_page(ctx, "Not found", "No such page."), fresh
            )
        return self._page(ctx, "200 OK", page, fresh)

    @property
    def queue(self) -> JobQueue:
        """The queue this dashboard shows (asked of the queue function, if it was given one)."""
        source = self._queue_source
        return source if isinstance(source, JobQueue) else source()

    def _get_overview(self) -> Overview:
        with self._lock:
            if (
                self._overview is not None
                and time.monotonic() - self._overview_at < self.refresh_interval
            ):
                return self._overview
            queue = self.queue
            now = queue.clock.now()
            step = _dt.timedelta(seconds=_THROUGHPUT_INTERVAL)
            since = now - step * (_THROUGHPUT_SLOTS - 1)
            since = since.replace(second=0, microsecond=0)
            self._overview = Overview(
                by_type=queue.count_jobs_by_type(),
                ended=queue.count_ended_jobs(
                    since=since, interval=_THROUGHPUT_INTERVAL, slots=_THROUGHPUT_SLOTS
                ),
                since=since,
                interval=_THROUGHPUT_INTERVAL,
                recent=queue.browse_jobs(limit=10).jobs,
            )
            self._overview_at = time.monotonic()
            return self._overview

    def _page(self, ctx: Context, status: str, page: Html, fresh: str | None) -> Response:
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            *_HEADERS,
        ]
        if fresh is not None:
            headers.append(("Set-Cookie", fresh))
        return status, headers, page.encode()

    # -- actions -----------------------------------------------------------------------------------

    def _action(
        self, environ: dict[str, Any], ctx: Context, cookie: str | None, fresh: str | None
    ) -> Response:
        form = _read_form(environ)
        action, job_id = form.get("action", ""), form.get("id", "")
        who = environ.get("jobworker.user") or environ.get("REMOTE_USER") or "-"
        where = environ.get("REMOTE_ADDR", "-")
        wants_json = "application/json" in environ.get("HTTP_ACCEPT", "")
        try:
            if not self.actions:
                raise _Refused("actions are disabled on this dashboard")
            if not self._csrf_ok(environ, cookie, form):
                raise _Refused("the CSRF token is missing or wrong: reload the page")
            if action not in ACTIONS:
                raise _Refused(f"no action {action!r}")
            if not self._authorize(environ, action):
                raise _Refused(f"you may not {action} jobs")
        except _Refused as exc:
            log.warning(
                "dashboard: refused %s of job %r by %s from %s: %s",
                safe_repr(action, 40),
                job_id,
                who,
                where,
                exc,
            )
            return self._answer(ctx, "403 Forbidden", str(exc), wants_json, fresh)
        ok, outcome = self._perform(action, job_id)
        log.info("dashboard: %s of job %r by %s from %s: %s", action, job_id, who, where, outcome)
        if not ok:
            return self._answer(ctx, "409 Conflict", outcome, wants_json, fresh)
        if wants_json:
            return self._json(
                "200 OK", {"ok": True, "action": action, "id": job_id, "outcome": outcome}
            )
        target = ctx.url("/jobs") if action == "delete" else ctx.url("/job", id=job_id, done=action)
        return (
            "303 See Other",
            [("Location", target), ("Cache-Control", "no-store"), *_HEADERS],
            b"",
        )

    def _perform(self, action: str, job_id: str) -> tuple[bool, str]:
        """Do *action* to the job; return whether it was done and what happened."""
        queue = self.queue
        job = queue.get_job(job_id)
        if job is None:
            return False, "no such job"
        if action not in ACTIONS_BY_STATUS[job.status]:
            return False, f"a {job.status} job cannot be {_PAST[action]}"
        if action == "cancel":
            done = queue.cancel_job(job_id)
        elif action == "delete":
            done = queue.delete_job(job_id)
        else:
            assert isinstance(job, FailedJob)
            try:
                # Compare-and-set on "failed": two operators retrying at once requeue it once.
                queue.update_job(requeue(job), "failed")
                done = True
            except StaleJobError:
                done = False
        return (True, _PAST[action]) if done else (False, "the job changed meanwhile: reload")

    def _answer(
        self, ctx: Context, status: str, message: str, wants_json: bool, fresh: str | None
    ) -> Response:
        if wants_json:
            return self._json(status, {"ok": False, "error": message})
        return self._page(ctx, status, message_page(ctx, status.split(" ", 1)[1], message), fresh)

    @staticmethod
    def _json(status: str, value: Any) -> Response:
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *_HEADERS]
        return status, headers, json.dumps(value).encode()

    # -- CSRF --------------------------------------------------------------------------------------

    @staticmethod
    def _cookie(environ: dict[str, Any]) -> str | None:
        """Return the browser's CSRF cookie, if it sent a well-formed one."""
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(environ.get("HTTP_COOKIE", ""))
        except http.cookies.CookieError:
            return None
        morsel = jar.get(_COOKIE)
        value = morsel.value if morsel is not None else ""
        return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None

    def _token(self, cookie: str | None) -> str:
        """Return the token the forms carry: the cookie signed with the secret."""
        if cookie is None:
            return ""
        return hmac.new(self._secret, cookie.encode(), hashlib.sha256).hexdigest()

    def _csrf_ok(
        self, environ: dict[str, Any], cookie: str | None, form: Mapping[str, str]
    ) -> bool:
        origin = environ.get("HTTP_ORIGIN")
        if origin and urlsplit(origin).netloc != environ.get("HTTP_HOST", ""):
            return False  # a cross-site form, whatever token it carries
        sent = form.get("csrf_token") or environ.get("HTTP_X_CSRF_TOKEN", "")
        return cookie is not None and bool(sent) and hmac.compare_digest(sent, self._token(cookie))


def mounted_environ(
    environ: dict[str, Any], body: bytes, path: str, rest: str, **extra: Any
) -> dict[str, Any]:
    """Return the WSGI environ of a request that a framework routed to the dashboard.

    *path* is the request's whole path and *rest* the part the framework's
    route left for the dashboard: what precedes *rest* becomes
    ``SCRIPT_NAME``. The framework has read the body already: it is given
    again as *body*. *extra* keys (``jobworker.user``, the framework's
    request) are added for the authorization hook and the log.
    """
    prefix = path[: len(path) - len(rest)] if rest and path.endswith(rest) else path
    mounted = dict(environ)
    mounted.update(
        {
            "SCRIPT_NAME": prefix.rstrip("/"),
            "PATH_INFO": "/" + rest,
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
        }
    )
    mounted.update(extra)
    return mounted


_PAST: Final = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}


def _read_form(environ: dict[str, Any]) -> dict[str, str]:
    """Return the url-encoded form of a POST body (at most 64 KiB read)."""
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), _MAX_BODY)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    fields = parse_qs(body.decode("utf-8", "replace"))
    return {k: v[0] for k, v in fields.items()}
