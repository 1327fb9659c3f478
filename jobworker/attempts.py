"""The attempts of a job: which worker ran each one, when, and how it failed.

Every backend keeps a job's history on the job itself (``job.attempts``):
one :class:`Attempt` per attempt that ended without completing the job
(failed, retried, lost or cancelled), oldest first. The attempt that
completes a job is the :class:`~jobworker.CompleteJob`'s own ``started_at``,
``completed_at`` and ``worker``: the path every job takes allocates nothing
more. An attempt's error is kept as three separate fields, so
any message, blank lines included, reads back exactly as it was raised.

The history is bounded, so a job retried many times stays small:

- an error message keeps at most :data:`MAX_MESSAGE_LENGTH` characters,
- a traceback keeps its last :data:`MAX_TRACEBACK_LENGTH` characters (the
  frames nearest the error),
- a job keeps :data:`MAX_ATTEMPTS_KEPT` attempts: its first and its latest
  ones (so when it first started is never lost).

Tracebacks hold the formatted frames only, never local variables.
"""

from __future__ import annotations

import datetime as _dt
import json
import traceback as _traceback
from typing import Any, Final, NamedTuple

import attrs

from .errors import safe_str

__all__ = [
    "MAX_ATTEMPTS_KEPT",
    "MAX_MESSAGE_LENGTH",
    "MAX_TRACEBACK_LENGTH",
    "Attempt",
    "AttemptError",
    "attempts_from_json",
    "attempts_to_json",
    "clean_text",
]

#: An attempt's error message is cut to this many characters.
MAX_MESSAGE_LENGTH: Final = 8_000
#: An attempt's traceback keeps this many characters, from its end.
MAX_TRACEBACK_LENGTH: Final = 16_000
#: A job keeps this many of its latest attempts.
MAX_ATTEMPTS_KEPT: Final = 20

_CUT: Final = "..."


def clean_text(text: str) -> str:
    """Return *text* with NUL characters and lone surrogates replaced.

    For free text jobworker stores on the caller's behalf (errors, worker
    names), which every store must take.
    """
    # The usual case, checked in O(1) and a memchr: nothing to replace.
    if type(text) is str and text.isascii() and "\x00" not in text:
        return text
    return str(text).replace("\x00", "\ufffd").encode(errors="replace").decode()


def _head(text: str, limit: int) -> str:
    text = clean_text(text)
    return text if len(text) <= limit else text[: limit - len(_CUT)] + _CUT


def _tail(text: str, limit: int) -> str:
    text = clean_text(text)
    return text if len(text) <= limit else _CUT + text[len(text) - limit + len(_CUT) :]


@attrs.frozen
class AttemptError:
    """Why an attempt failed: the exception's class, its message and its traceback.

    ``class_path`` is the exception class's ``module.qualname`` (for
    example ``"builtins.ValueError"``); ``message`` is ``str(exception)``;
    ``traceback`` is the formatted traceback, or ``""`` where there is none
    (a lost worker). Build one with :meth:`from_exception`.
    """

    class_path: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> AttemptError:
        """Return the error of an attempt that raised *exc*, within the documented bounds."""
        kind = type(exc)
        message = safe_str(exc)
        trace = "".join(_traceback.format_exception(kind, exc, exc.__traceback__))
        return cls(
            _head(f"{kind.__module__}.{kind.__qualname__}", 500),
            _head(message, MAX_MESSAGE_LENGTH),
            _tail(trace, MAX_TRACEBACK_LENGTH),
        )

    @classmethod
    def from_text(cls, text: str) -> AttemptError:
        """Return the error that a one-line ``"Type: message"`` describes (no traceback)."""
        name, sep, message = text.partition(": ")
        if not sep or not name.replace(".", "").replace("_", "").isalnum():
            name, message = "", text
        return cls(_head(name, 500), _head(message, MAX_MESSAGE_LENGTH))

    @property
    def type_name(self) -> str:
        """The exception class's own name, without its module."""
        return self.class_path.rpartition(".")[2]

    def describe(self) -> str:
        """Return ``"Type: message"``, the one-line form of :attr:`FailedJob.error`."""
        if not self.type_name:
            return self.message
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


class Attempt(NamedTuple):
    """One attempt at a job that has ended.

    ``number`` counts the job's attempts from 1; ``worker`` is the name of
    the worker that ran it (its claim's worker); ``error`` is ``None`` for
    an attempt that ended without one (cancelled while it ran).

    A named tuple, not an attrs class: every job that completes records one,
    and a tuple costs a third as much to make on that path.
    """

    #: The attempt's number, counted from 1.
    number: int
    #: The name of the worker that ran it.
    worker: str
    #: When it started.
    started_at: _dt.datetime
    #: When it ended: failed, lost or cancelled.
    ended_at: _dt.datetime
    #: Why it failed; ``None`` for an attempt cancelled while it ran.
    error: AttemptError | None = None


def append(history: tuple[Attempt, ...], attempt: Attempt) -> tuple[Attempt, ...]:
    """Return *history* with *attempt* added, keeping the first and the latest attempts.

    At most :data:`MAX_ATTEMPTS_KEPT` in all: past that, the second oldest goes.
    """
    if len(history) >= MAX_ATTEMPTS_KEPT:
        return (history[0], *history[len(history) - MAX_ATTEMPTS_KEPT + 2 :], attempt)
    return (*history, attempt)


def _time(value: _dt.datetime) -> str:
    return value.isoformat()


def attempt_to_dict(attempt: Attempt) -> dict[str, Any]:
    """Return *attempt* as a JSON-safe dict."""
    error = attempt.error
    return {
        "number": attempt.number,
        "worker": attempt.worker,
        "started_at": _time(attempt.started_at),
        "ended_at": _time(attempt.ended_at),
        "error": None
        if error is None
        else {
            "class_path": error.class_path,
            "message": error.message,
            "traceback": error.traceback,
        },
    }


def attempt_from_dict(data: Any) -> Attempt:
    """Return the attempt :func:`attempt_to_dict` gave *data* for.

    :raises ValueError: *data* is not a stored attempt.
    """
    try:
        error = data["error"]
        number, worker = data["number"], data["worker"]
        if not isinstance(number, int) or isinstance(number, bool) or not isinstance(worker, str):
            raise ValueError(f"not an attempt: {data!r}")
        started = _dt.datetime.fromisoformat(data["started_at"])
        ended = _dt.datetime.fromisoformat(data["ended_at"])
        if started.utcoffset() is None or ended.utcoffset() is None:
            raise ValueError(f"attempt times must be timezone-aware: {data!r}")
        if error is not None:
            parts = (error["class_path"], error["message"], error["traceback"])
            if not all(isinstance(part, str) for part in parts):
                raise ValueError(f"not an attempt error: {error!r}")
            error = AttemptError(*parts)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an attempt: {data!r}") from exc
    return Attempt(number, worker, started, ended, error)


def attempts_to_json(history: tuple[Attempt, ...]) -> str | None:
    """Return the JSON text a backend stores for *history*; ``None`` for no attempts."""
    if not history:
        return None
    return json.dumps([attempt_to_dict(a) for a in history], ensure_ascii=False)


def attempts_from_json(text: str | None) -> tuple[Attempt, ...]:
    """Return the history :func:`attempts_to_json` stored as *text*.

    :raises ValueError: *text* is not a stored history.
    """
    if text is None:
        return ()
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"attempts must be a JSON list, got {type(data).__name__}")
    return tuple(attempt_from_dict(item) for item in data)
