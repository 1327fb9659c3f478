"""HTML with every value escaped: a marker type for markup and a template that escapes the rest.

The dashboard renders every page and every live region here, on the server,
so escaping happens in one place. A value becomes markup only by passing
through :func:`render` (which escapes each substituted value unless it is
already :class:`Html`) or :func:`join`; nothing else makes :class:`Html`
out of a plain string but the fixed templates of this package.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from typing import Any

__all__ = ["Html", "join", "render"]


class Html(str):
    """Text that is already HTML, inserted as it is by :func:`render`."""

    __slots__ = ()


def escape(value: Any) -> Html:
    """Return *value* as text safe in an element or a quoted attribute."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def render(template: str, **values: Any) -> Html:
    """Substitute ``$name`` in *template*, escaping every value that is not :class:`Html`.

    :raises KeyError: a ``$name`` of the template has no value.
    """
    return Html(string.Template(template).substitute({k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[Html], separator: str = "") -> Html:
    """Concatenate markup (each part already :class:`Html`)."""
    return Html(separator.join(escape(part) for part in parts))
