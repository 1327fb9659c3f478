"""The jobworker dashboard in a Django project: URL patterns to include.

::

    from jobworker.contrib.django.dashboard import dashboard_urls

    urlpatterns = [path("jobs/", include(dashboard_urls(actions=True)))]

Only active staff users see it by default (pass ``authorize`` to decide
otherwise); actions are off unless ``actions=True``. The dashboard checks
its own CSRF token (signed with a key derived from ``SECRET_KEY``) on every
action, so its view is exempt from Django's middleware check, which would
need Django's token in the dashboard's forms.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt

from ...queues.base import JobQueue
from ...web import Authorize, Dashboard, mounted_environ
from .queues import get_queue

__all__ = ["dashboard_urls", "staff_only"]


def staff_only(environ: dict[str, Any], action: str) -> bool:
    """Allow active staff users (``request.user.is_staff``) everything; the default."""
    request = environ.get("django.request")
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def dashboard_urls(
    *,
    queue: JobQueue | None = None,
    authorize: Authorize = staff_only,
    actions: bool = False,
    **options: Any,
) -> list[URLPattern]:
    """Return the URL patterns of a dashboard, for ``include()`` under any prefix.

    :param queue: the queue shown; the project's queue
        (``jobworker.contrib.django.get_queue()``) by default, opened at
        the first request.
    :param authorize: asked before every page and action (the request is
        ``environ["django.request"]``); :func:`staff_only` by default.
    :param actions: enable retry, cancel and delete.
    :param options: more :class:`~jobworker.web.Dashboard` options
        (``refresh_interval``, ``page_size``, ``title``).
    """
    secret = hmac.new(
        str(settings.SECRET_KEY).encode(), b"jobworker.dashboard.csrf", hashlib.sha256
    ).digest()
    app = Dashboard(
        queue if queue is not None else get_queue,
        authorize=authorize,
        actions=actions,
        secret=secret,
        **options,
    )

    @csrf_exempt
    def dashboard(request: HttpRequest, rest: str) -> HttpResponse:
        user = getattr(request, "user", None)
        # The form as Django parsed it (urlencoded or multipart), given to
        # the dashboard urlencoded.
        body = urlencode(request.POST.dict()).encode() if request.method == "POST" else b""
        environ = mounted_environ(
            request.META,
            body,
            request.path,
            rest,
            **{
                "django.request": request,
                "jobworker.user": user.get_username()
                if user is not None and user.is_authenticated
                else "",
            },
        )
        status, headers, body = app.handle(environ)
        response = HttpResponse(body, status=int(status.split(" ", 1)[0]))
        for name, value in headers:
            if name == "Set-Cookie":
                response.cookies.load(value)  # Django writes its cookies itself
            else:
                response.headers[name] = value
        return response

    return [re_path(r"^(?P<rest>.*)\Z", dashboard, name="jobworker-dashboard")]
