"""Unique keys: the pure rules of which job holds a key, shared by every backend.

A job may carry a unique key and the states in which it holds that key (its
scope). At most one job holds a key at a time: a store refuses a new job, or a
requeue, that would make a second holder. The scope always includes
``pending`` and ``running`` (a job that waits or runs holds its key; a claim or
a retry never changes who holds it) and may add ``complete``, ``failed`` and
``cancelled``. A key is free again once its holder leaves the scope (it ends in
a state outside it, or a finished job is cleaned up).

Each backend enforces the rule in the store itself: the memory queue under its
lock, the SQL queues with a partial unique index on the key over the rows whose
status is in the row's own scope (:func:`states_to_text` is the stored scope),
never a check followed by an insert.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Collection, Mapping
from typing import Any, Final

import attrs

from .errors import InvalidJobError, safe_repr

__all__ = [
    "DEFAULT_UNIQUE_STATES",
    "OPTIONAL_UNIQUE_STATES",
    "Unique",
    "check_unique",
    "holds_key",
    "states_from_text",
    "states_to_text",
]

#: The states in which every unique job holds its key.
DEFAULT_UNIQUE_STATES: Final[frozenset[str]] = frozenset({"pending", "running"})
#: The states a scope may add to the default ones.
OPTIONAL_UNIQUE_STATES: Final[frozenset[str]] = frozenset({"complete", "failed", "cancelled"})
#: Keys are metadata text, bounded like ids.
MAX_KEY_LENGTH: Final = 1000


def check_unique(key: object, states: object) -> None:
    """Raise :class:`~jobworker.InvalidJobError` unless *key* and *states* make a valid scope."""
    if key is None:
        if states != DEFAULT_UNIQUE_STATES:
            raise InvalidJobError(
                "metadata.unique_states is set but metadata.unique_key is None: a scope needs a key"
            )
        return
    if not isinstance(key, str) or not key:
        raise InvalidJobError(
            f"metadata.unique_key must be a non-empty string, got {safe_repr(key)}"
        )
    if "\x00" in key or len(key) > MAX_KEY_LENGTH:
        raise InvalidJobError(
            f"metadata.unique_key must be at most {MAX_KEY_LENGTH} characters without NUL, "
            f"got {safe_repr(key, 60)}"
        )
    try:
        key.encode()
    except UnicodeEncodeError:
        raise InvalidJobError(
            f"metadata.unique_key is not valid Unicode: {safe_repr(key)}"
        ) from None
    if not isinstance(states, frozenset) or not all(isinstance(s, str) for s in states):
        raise InvalidJobError(
            f"metadata.unique_states must be a frozenset of statuses, got {safe_repr(states)}"
        )
    if not states >= DEFAULT_UNIQUE_STATES:
        raise InvalidJobError(
            "metadata.unique_states must include 'pending' and 'running' (a claim or a retry "
            f"never hands a key over), got {sorted(states)}"
        )
    extra = states - DEFAULT_UNIQUE_STATES - OPTIONAL_UNIQUE_STATES
    if extra:
        raise InvalidJobError(f"metadata.unique_states has unknown statuses {sorted(extra)}")


def holds_key(status: str, key: str | None, states: frozenset[str]) -> bool:
    """Return whether a job in *status* with *key* and scope *states* holds its key."""
    return key is not None and status in states


def states_to_text(states: frozenset[str]) -> str:
    """Return the stored form of a scope: ``",complete,pending,running,"``.

    The SQL backends' index tests ``',' || status || ','`` against it.
    """
    return "," + ",".join(sorted(states)) + ","


def states_from_text(text: str | None) -> frozenset[str]:
    """Return the scope stored as *text* (the default scope for ``None``)."""
    if text is None:
        return DEFAULT_UNIQUE_STATES
    if not isinstance(text, str) or not (text.startswith(",") and text.endswith(",")):
        raise ValueError(f"column unique_states holds {safe_repr(text)}, not a scope")
    return frozenset(part for part in text.split(",") if part)


def _canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(f"a unique key's params must be JSON values: {exc}") from None


def _fields(value: Collection[str] | None) -> tuple[str, ...] | None:
    if isinstance(value, str):
        raise TypeError(f"fields is a collection of param names, got the string {value!r}")
    return None if value is None else tuple(value)


def _states(value: Collection[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError(f"states is a collection of statuses, got the string {value!r}")
    return frozenset(value)


@attrs.frozen
class Unique:
    """How a new job's unique key is made, and in which states it is held.

    :param key: the key itself. Without it, the key is the job type and the
        params named by *fields* (all of them if ``None``), as canonical JSON,
        so two jobs of one type with equal chosen params share a key.
    :param fields: the params that make the key when *key* is not given; the
        params must then be a mapping (or an attrs instance).
    :param states: the scope: ``pending`` and ``running`` always, plus any of
        ``complete``, ``failed``, ``cancelled``.
    :param period: seconds. The key holds within one period only: the start
        of the period the job's ``created`` falls in (periods are aligned on
        the Unix epoch, in UTC) is part of the key. With ``complete`` in the
        scope, this is "at most one job a period".

    >>> unique = Unique(fields=("account",))
    >>> unique.key_for("sync", {"account": 7, "full": True}, None)
    'sync:{"account":7}'
    """

    key: str | None = None
    fields: tuple[str, ...] | None = attrs.field(default=None, converter=_fields)
    states: frozenset[str] = attrs.field(default=DEFAULT_UNIQUE_STATES, converter=_states)
    period: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.key is not None and self.fields is not None:
            raise ValueError("give a unique key or the fields that make it, not both")
        if self.period is not None and not (
            isinstance(self.period, (int, float)) and math.isfinite(self.period) and self.period > 0
        ):
            raise ValueError(
                f"period must be a number of seconds > 0, got {safe_repr(self.period)}"
            )
        check_unique(self.key or "k", self.states)

    def key_for(self, job_type: str, params: Any, created: _dt.datetime | None) -> str:
        """Return the key of a job of *job_type* with *params*, created at *created*."""
        if self.key is not None:
            key = self.key
        elif self.fields is None:
            key = f"{job_type}:{_canonical(params)}"
        else:
            key = f"{job_type}:{_canonical(_pick(params, self.fields))}"
        if self.period is not None:
            if created is None:
                raise InvalidJobError("a unique key with a period needs the job's created time")
            period_us = round(self.period * 1_000_000)
            epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
            elapsed = (created - epoch) // _dt.timedelta(microseconds=1)
            start = epoch + _dt.timedelta(microseconds=elapsed // period_us * period_us)
            key = f"{key}@{start.isoformat()}"
        return key


def _pick(params: Any, fields: Collection[str]) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    for name in fields:
        if isinstance(params, Mapping):
            if name not in params:
                raise InvalidJobError(f"a unique key names param {name!r}, which the job lacks")
            picked[name] = params[name]
        elif attrs.has(type(params)) and hasattr(params, name):
            picked[name] = getattr(params, name)
        else:
            raise InvalidJobError(
                f"a unique key names param {name!r}, but the params are {type(params).__name__}"
            )
    return picked
