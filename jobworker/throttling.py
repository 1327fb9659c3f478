"""Concurrency and rate limits of job types: the declarations and their pure rules.

A :class:`TypeLimits` says how many jobs of one type may run at once (in
all, or per value of one params field, the *key*) and how many may start in
any window of *period* seconds. The rules here decide, from what a backend
read in its claim (the running jobs, the recent starts), whether one more
job may start; every backend applies them inside its own atomic claim, so
they hold across processes and hosts.

Times are integer microseconds since the epoch, as the SQL backends store them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from .errors import safe_repr

__all__ = [
    "MAX_RATE",
    "TypeLimits",
    "key_of",
    "limits_from_mapping",
    "rate_admits",
    "rate_opens_at",
    "record_start",
]

#: The largest ``rate`` a type may declare: the backends keep that many start times.
MAX_RATE: Final = 10_000


def _check_positive_int(name: str, value: object) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not value >= 1
    ):
        raise ValueError(f"{name} must be an int >= 1 or None, got {safe_repr(value)}")


@attrs.frozen
class TypeLimits:
    """The limits of one job type.

    :param concurrency: the most jobs of the type running at once, in the
        whole cluster (``None``: no limit). With *key*, the most running at
        once per value of the key.
    :param key: the name of a top-level params field whose value groups the
        jobs for *concurrency* ("at most one sync per account": ``key="account"``).
        The value should be a string or an integer; a job whose field is
        missing or null counts under the empty key.
    :param rate: the most jobs of the type that start in any window of
        *period* seconds (``None``: no limit), at most :data:`MAX_RATE`.
    :param period: the length of the rate window in seconds.

    :raises ValueError: a value out of range, or *key* without *concurrency*.

    >>> from jobworker.throttling import TypeLimits
    >>> TypeLimits(concurrency=2)
    TypeLimits(concurrency=2, key=None, rate=None, period=1.0)
    >>> TypeLimits(rate=50, period=1.0).rate
    50
    """

    concurrency: int | None = None
    key: str | None = None
    rate: int | None = None
    period: float = 1.0

    def __attrs_post_init__(self) -> None:
        _check_positive_int("concurrency", self.concurrency)
        _check_positive_int("rate", self.rate)
        if self.rate is not None and self.rate > MAX_RATE:
            raise ValueError(f"rate must be at most {MAX_RATE}, got {self.rate}")
        if (
            not isinstance(self.period, (int, float))
            or isinstance(self.period, bool)
            or not 0 < self.period < 1e9
        ):
            raise ValueError(
                f"period must be a number of seconds > 0, got {safe_repr(self.period)}"
            )
        if self.key is not None:
            if not isinstance(self.key, str) or not self.key or "\x00" in self.key:
                raise ValueError(f"key must be a params field name, got {safe_repr(self.key)}")
            if self.concurrency is None:
                raise ValueError("key groups jobs for a concurrency limit: give concurrency too")

    @property
    def period_us(self) -> int:
        """The rate window in microseconds."""
        return round(self.period * 1_000_000)


def limits_from_mapping(config: Mapping[str, Any]) -> dict[str, TypeLimits]:
    """Read ``{type: {"concurrency": 2, "key": ..., "rate": 50, "period": 1.0}}``.

    The form of Django's ``JOBWORKER["LIMITS"]`` and Flask's ``JOBWORKER_LIMITS``;
    a value may also be a :class:`TypeLimits`.

    :raises ValueError: a type name that is not a non-empty string, an unknown
        option, or a value :class:`TypeLimits` refuses.

    >>> from jobworker.throttling import limits_from_mapping
    >>> limits_from_mapping({"export": {"concurrency": 2}})
    {'export': TypeLimits(concurrency=2, key=None, rate=None, period=1.0)}
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"limits must be a mapping of job types, got {safe_repr(config)}")
    limits: dict[str, TypeLimits] = {}
    for name, value in config.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"a job type name must be a non-empty string, got {safe_repr(name)}")
        if isinstance(value, TypeLimits):
            limits[name] = value
            continue
        if not isinstance(value, Mapping):
            raise ValueError(f"the limits of {name!r} must be a mapping, got {safe_repr(value)}")
        unknown = set(value) - {"concurrency", "key", "rate", "period"}
        if unknown:
            raise ValueError(f"the limits of {name!r} have unknown options {sorted(unknown)}")
        try:
            limits[name] = TypeLimits(**value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the limits of {name!r}: {exc}") from None
    return limits


def key_of(params_json: str, field: str) -> str:
    """Return the concurrency key of a job from its stored params (JSON text).

    A string is its own key, any other value its JSON text (an integer its
    digits); a missing or null field, or params that are not an object, give
    the empty key. The SQL backends compute the same in the database.

    >>> from jobworker.throttling import key_of
    >>> key_of('{"account": "a-1"}', "account"), key_of('{"account": 7}', "account")
    ('a-1', '7')
    >>> key_of('{"other": 1}', "account")
    ''
    """
    try:
        params = json.loads(params_json)
    except ValueError:
        return ""
    value = params.get(field) if isinstance(params, dict) else None
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def rate_admits(starts: Sequence[int], limits: TypeLimits, now: int) -> bool:
    """Return whether one more start at *now* keeps *limits*' rate.

    *starts* are the latest start times of the type, oldest first (at least
    the last ``rate`` of them). A start is admitted when fewer than ``rate``
    starts fall in the window ``(now - period, now]``: so no window of
    *period* seconds ever holds more than ``rate`` starts.

    >>> from jobworker.throttling import TypeLimits, rate_admits
    >>> limits = TypeLimits(rate=2, period=1.0)
    >>> rate_admits([0, 500_000], limits, 900_000), rate_admits([0, 500_000], limits, 1_000_000)
    (False, True)
    """
    rate = limits.rate
    if rate is None or len(starts) < rate:
        return True
    return starts[-rate] <= now - limits.period_us


def rate_opens_at(starts: Sequence[int], limits: TypeLimits) -> int | None:
    """Return when the rate next admits a start (us); ``None`` if it does now or always."""
    rate = limits.rate
    if rate is None or len(starts) < rate:
        return None
    return starts[-rate] + limits.period_us


def record_start(starts: Iterable[int], limits: TypeLimits, now: int) -> list[int]:
    """Return *starts* with a start at *now* added, keeping only the last ``rate``."""
    kept = [*starts, now]
    rate = limits.rate
    if rate is None:
        return []
    return kept[-rate:]
