"""When a schedule's slots fall: cron expressions and fixed intervals, in a timezone.

A slot is an instant (an aware UTC datetime). :class:`Cron` matches wall-clock
times in its timezone and turns each into the instant it names; two rules
settle the wall times that a DST change makes ambiguous or impossible:

- a wall time that happens twice (clocks go back) runs once, at its first
  occurrence, unless the expression's hour field is ``*``: such a schedule
  follows real time (every 15 minutes stays every 15 minutes), so it also
  runs in the repeated hour;
- a wall time that does not happen (clocks go forward) runs once, shifted by
  the gap (``02:30`` becomes ``03:30`` on that day), unless the hour field is
  ``*``: then it is skipped, as the real time it names never came.

No slot is ever produced twice: slots are strictly increasing instants.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Cron", "Every"]

_UTC: Final = _dt.timezone.utc
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS: Final = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# The search for the next slot gives up after this many days: a valid
# expression matches within 8 years (Feb 29 on a given weekday: 28 years,
# which a day-of-month OR day-of-week rule never needs).
_MAX_DAYS: Final = 366 * 8
_SKIP_MARGIN: Final = _dt.timedelta(hours=4)
_ITEM: Final = re.compile(r"(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/([0-9]+))?\Z")


def _timezone(name: str | _dt.tzinfo) -> _dt.tzinfo:
    if isinstance(name, _dt.tzinfo):
        return name
    if not isinstance(name, str):
        raise TypeError(f"timezone must be a name or a tzinfo, got {type(name).__name__}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}: {exc}") from None


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"cron {what} field: cannot read {item!r}")
        star, first, last, step = match.groups()

        def number(token: str) -> int:
            if token in names:
                return names[token]
            if not token.isdigit():
                raise ValueError(f"cron {what} field: {token!r} is not a number or a name")
            value = int(token)
            if not low <= value <= high:
                raise ValueError(f"cron {what} field: {value} is outside {low}-{high}")
            return value

        if star:
            start, stop = low, high
        else:
            start = number(first)
            # "a/n" runs from a to the end of the range, as in Vixie cron.
            stop = number(last) if last else (high if step else start)
        if start > stop:
            raise ValueError(f"cron {what} field: the range {item!r} runs backwards")
        stride = 1 if step is None else int(step)
        if stride < 1:
            raise ValueError(f"cron {what} field: the step in {item!r} must be at least 1")
        values.update(range(start, stop + 1, stride))
    return frozenset(values)


class Cron:
    """A cron expression, matched in a timezone.

    Five fields (minute, hour, day of month, month, day of week) or six (a
    seconds field first); ``*``, numbers, ranges ``a-b``, steps ``*/n`` and
    ``a-b/n``, lists ``a,b``, month and weekday names (``jan``, ``mon``),
    ``0`` or ``7`` for Sunday, and the macros ``@hourly``, ``@daily``,
    ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``. When both the day
    of month and the day of week are restricted, a day matching either runs
    (as in every cron since Vixie's).

    :raises ValueError: the expression cannot be read, never matches, or the
        timezone is unknown.

    >>> import datetime
    >>> from jobworker.schedules import Cron
    >>> cron = Cron("30 2 * * *", "Europe/Paris")
    >>> cron.next_after(datetime.datetime(2026, 3, 29, tzinfo=datetime.timezone.utc)).isoformat()
    '2026-03-29T01:30:00+00:00'
    """

    def __init__(self, expression: str, timezone: str | _dt.tzinfo = "UTC") -> None:
        if not isinstance(expression, str):
            raise TypeError(f"a cron expression is a string, got {type(expression).__name__}")
        self.expression = expression
        self.tz = _timezone(timezone)
        text = _MACROS.get(expression.strip().lower(), expression.strip().lower())
        fields = text.split()
        if len(fields) == 5:
            fields.insert(0, "0")
        if len(fields) != 6:
            raise ValueError(
                f"a cron expression has 5 fields (6 with seconds first), got {expression!r}"
            )
        second, minute, hour, dom, month, dow = fields
        self.seconds = sorted(_field(second, 0, 59, {}, "second"))
        self.minutes = sorted(_field(minute, 0, 59, {}, "minute"))
        self.hours = sorted(_field(hour, 0, 23, {}, "hour"))
        self.days = _field(dom, 1, 31, {}, "day-of-month")
        self.months = _field(month, 1, 12, _MONTHS, "month")
        self.weekdays = frozenset(day % 7 for day in _field(dow, 0, 7, _DAYS, "day-of-week"))
        self._any_day = dom == "*"
        self._any_weekday = dow == "*"
        #: The hour field is ``*``: DST changes follow real time (module docstring).
        self.every_hour = hour == "*"
        if self.next_after(_dt.datetime(2000, 1, 1, tzinfo=_UTC)) is None:
            raise ValueError(f"the cron expression {expression!r} never matches")

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, {str(self.tz)!r})"

    def _day_matches(self, day: _dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        # isoweekday: Monday 1 .. Sunday 7; cron: Sunday 0 .. Saturday 6.
        on_weekday = day.isoweekday() % 7 in self.weekdays
        if self._any_day:
            return on_weekday
        if self._any_weekday:
            return in_month
        return in_month or on_weekday

    def _hour_slots(self, day: _dt.date, hour: int) -> list[_dt.datetime]:
        """Return the instants of one matching hour of *day*, sorted, per the DST rules."""
        tz = self.tz
        out: list[_dt.datetime] = []
        for minute in self.minutes:
            for second in self.seconds:
                wall = _dt.datetime(day.year, day.month, day.day, hour, minute, second)
                first = wall.replace(tzinfo=tz, fold=0).astimezone(_UTC)
                second_pass = wall.replace(tzinfo=tz, fold=1).astimezone(_UTC)
                if first == second_pass:
                    out.append(first)
                    continue
                exists = first.astimezone(tz).replace(tzinfo=None) == wall
                if exists:  # happens twice: the first always, the second if every hour
                    out.append(first)
                    if self.every_hour:
                        out.append(second_pass)
                elif not self.every_hour:  # does not happen: shifted by the gap
                    out.append(first)
        out.sort()
        return out

    def next_after(self, after: _dt.datetime) -> _dt.datetime | None:
        """Return the first slot strictly after *after* (aware), or ``None`` if there is none."""
        for slot in self.slots(after):
            return slot
        return None

    def slots(
        self, after: _dt.datetime, until: _dt.datetime | None = None
    ) -> Iterator[_dt.datetime]:
        """Yield the slots strictly after *after*, up to and including *until* if given."""
        if after.utcoffset() is None:
            raise ValueError("after must be a timezone-aware datetime")
        # A day earlier: a slot's wall date may precede after's by a DST offset.
        local = after.astimezone(self.tz).replace(tzinfo=None)
        day = local.date() - _dt.timedelta(days=1)
        last = after
        for _ in range(_MAX_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    # An hour that ended well before *after* on the wall clock
                    # (a DST shift moves a slot by less than the margin) has no
                    # slot to give: skip its conversions.
                    start = _dt.datetime(day.year, day.month, day.day, hour)
                    if start + _SKIP_MARGIN < local:
                        continue
                    for slot in self._hour_slots(day, hour):
                        if until is not None and slot > until:
                            return
                        if slot > last:
                            last = slot
                            yield slot
            elif (
                until is not None
                and _dt.datetime(day.year, day.month, day.day, tzinfo=_UTC) - _dt.timedelta(days=2)
                > until
            ):
                return
            day += _dt.timedelta(days=1)


class Every:
    """A fixed interval: slots at ``anchor + k * interval`` for every whole k.

    Timezones do not apply: an interval is real time.

    *interval* is in seconds (at least one), or a :class:`datetime.timedelta`;
    *anchor* is an aware instant the slots are aligned on: the Unix epoch by
    default, so ``Every(3600)`` runs on the hour in UTC.
    """

    def __init__(self, interval: float | _dt.timedelta, *, anchor: _dt.datetime = _EPOCH) -> None:
        seconds = interval.total_seconds() if isinstance(interval, _dt.timedelta) else interval
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"interval must be a number of seconds > 0, got {interval!r}")
        if anchor.utcoffset() is None:
            raise ValueError("anchor must be a timezone-aware datetime")
        self.interval_us = round(seconds * 1_000_000)
        if self.interval_us < 1_000_000:
            raise ValueError(f"interval must be at least one second, got {interval!r}")
        self.anchor = anchor.astimezone(_UTC)

    def __repr__(self) -> str:
        return f"Every({self.interval_us / 1_000_000!r})"

    def next_after(self, after: _dt.datetime) -> _dt.datetime:
        """Return the first slot strictly after *after*."""
        elapsed = (after - self.anchor) // _dt.timedelta(microseconds=1)
        count = elapsed // self.interval_us + 1
        return self.anchor + _dt.timedelta(microseconds=count * self.interval_us)

    def slots(
        self, after: _dt.datetime, until: _dt.datetime | None = None
    ) -> Iterator[_dt.datetime]:
        """Yield the slots strictly after *after*, up to and including *until* if given."""
        slot = self.next_after(after)
        step = _dt.timedelta(microseconds=self.interval_us)
        while until is None or slot <= until:
            yield slot
            slot += step
