"""Schedules and the scheduler that enqueues their jobs, with no leader.

Every process may run a :class:`Scheduler` over the same schedules and the
same store. The job of a slot has an id made of the schedule's name and the
slot's instant (:meth:`Schedule.job_id`), so the store's refusal of a second
job with that id (:class:`~jobworker.DuplicateJobError`) makes exactly one
job per slot, however many schedulers try; there is nothing to elect, and a
scheduler that dies is simply one fewer trying at the next slot.

Catch-up (what a scheduler that looks late does with the slots it missed) is
chosen per schedule: ``"skip"``, ``"latest"`` or ``"all"`` (see
:class:`Schedule`). The jobs themselves are the record of which slots ran:
a slot whose job was cleaned up counts as missed, so the catch-up window
must stay shorter than the retention of finished jobs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from ..clock import Clock
from ..errors import DuplicateJobError, JobworkerError, safe_repr
from ..model import JobId, PendingJob, new_job
from ..queues.base import JobQueue
from ..serialization import encode_value
from ._cron import Cron, Every

__all__ = ["CatchUp", "Schedule", "Scheduler", "schedules_from_config"]

log = logging.getLogger("jobworker.schedules")

CatchUp = Literal["skip", "latest", "all"]
_CATCH_UPS: Final = ("skip", "latest", "all")
_UTC: Final = _dt.timezone.utc


def _when(value: Any) -> Cron | Every:
    if isinstance(value, (Cron, Every)):
        return value
    if isinstance(value, str):
        return Cron(value)
    if isinstance(value, (_dt.timedelta, int, float)) and not isinstance(value, bool):
        return Every(value)
    raise TypeError(f"a schedule is a cron expression, seconds or a Cron / Every, got {value!r}")


@attrs.frozen
class Schedule:
    """A job enqueued at every slot of a cron expression or a fixed interval.

    :param name: identifies the schedule in every process (part of each
        job's id: keep it stable across deploys).
    :param when: a cron expression (five fields, or six with seconds
        first), a number of seconds or :class:`datetime.timedelta` (a fixed
        interval), or a :class:`Cron` / :class:`Every`.
    :param job_type: the type of the jobs it enqueues; *params* their params
        (JSON values).
    :param timezone: an IANA name (``"Europe/Paris"``) for a cron expression
        given as text; DST is handled as :mod:`jobworker.schedules` says.
    :param max_retries: and *priority*: the jobs' options.
    :param catch_up: what a scheduler does with slots that passed while no
        scheduler looked: ``"skip"`` enqueues a slot only if it looks
        within *grace* seconds of it (the slot in progress); ``"latest"``
        enqueues the latest missed slot, once; ``"all"`` enqueues each
        missed slot, the latest *max_catch_up* of them, oldest first. Slots
        are looked for back to *window* seconds ago at most.
    """

    name: str
    when: Cron | Every = attrs.field(converter=_when)
    job_type: str
    params: Any = None
    timezone: str | None = None
    max_retries: int = 3
    priority: int = 0
    catch_up: CatchUp = "skip"
    max_catch_up: int = 10
    grace: float = 60.0
    window: float = 86400.0

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or ":" in self.name:
            raise ValueError(
                f"a schedule name is a non-empty string without ':', got {self.name!r}"
            )
        if self.catch_up not in _CATCH_UPS:
            raise ValueError(f"catch_up must be one of {_CATCH_UPS}, got {self.catch_up!r}")
        if isinstance(self.max_catch_up, bool) or not (
            isinstance(self.max_catch_up, int) and self.max_catch_up >= 1
        ):
            raise ValueError(f"max_catch_up must be an int >= 1, got {self.max_catch_up!r}")
        for name in ("grace", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        if self.timezone is not None:
            if not isinstance(self.when, Cron):
                raise ValueError("a timezone applies to a cron expression, not to an interval")
            object.__setattr__(self, "when", Cron(self.when.expression, self.timezone))
        # Fail here, not at the first slot, on options no job could carry.
        self.job_for(_dt.datetime(2000, 1, 1, tzinfo=_UTC))
        params_cls = type(self.params) if attrs.has(type(self.params)) else None
        encode_value(self.params, params_cls, what="params", limit=None)

    def job_id(self, slot: _dt.datetime) -> JobId:
        """Return the id of the job of *slot*: the same in every process."""
        return JobId(f"schedule:{self.name}:{slot.astimezone(_UTC).isoformat()}")

    def job_for(self, slot: _dt.datetime) -> PendingJob[Any]:
        """Return the pending job of *slot* (created at the slot's instant)."""
        return new_job(
            self.job_type,
            self.params,
            id=self.job_id(slot),
            created=slot.astimezone(_UTC),
            max_retries=self.max_retries,
            priority=self.priority,
        )

    def due(self, last: _dt.datetime | None, now: _dt.datetime) -> list[_dt.datetime]:
        """Return the slots to enqueue at *now*, oldest first, per the catch-up policy.

        *last* is the latest slot already dealt with (``None``: none yet, as
        when a scheduler starts); slots after it up to *now* are candidates,
        never further back than *window*.
        """
        start = now - _dt.timedelta(seconds=self.window)
        if last is not None and last > start:
            start = last
        keep = self.max_catch_up if self.catch_up == "all" else 1
        recent = self._latest(start, now, keep)
        if self.catch_up == "skip":
            grace = _dt.timedelta(seconds=self.grace)
            recent = [slot for slot in recent if now - slot <= grace]
        return recent

    def _latest(self, start: _dt.datetime, now: _dt.datetime, keep: int) -> list[_dt.datetime]:
        """Return the latest *keep* slots after *start* up to *now*, oldest first."""
        recent: list[_dt.datetime] = []
        for slot in self.when.slots(start, now):
            recent.append(slot)
            if len(recent) > keep:
                del recent[0]
        return recent

    def last_job(self, queue: JobQueue, now: _dt.datetime, *, look_back: int = 100) -> Any:
        """Return the job of the latest slot up to *now* that has one, or ``None``.

        Looks at the latest *look_back* slots within *window*, newest first
        (one read each): the jobs are the only record of what ran.
        """
        start = now - _dt.timedelta(seconds=self.window)
        for slot in reversed(self._latest(start, now, look_back)):
            job = queue.get_job(self.job_id(slot))
            if job is not None:
                return job
        return None

    def next_slot(self, after: _dt.datetime) -> _dt.datetime | None:
        """Return the first slot strictly after *after*."""
        return self.when.next_after(after)


class Scheduler:
    """Enqueue the jobs of *schedules* on *queue* as their slots come.

    Runs alongside any number of other schedulers on the same store (see the
    module docstring). :meth:`run_pending` does one round at a given time
    (tests drive it with a fake clock); :meth:`start_in_thread` runs rounds
    in a thread, waking at each next slot, until :meth:`stop`.

    :param clock: where the time comes from (the queue's by default).
    :param max_wait: the longest the thread sleeps between two looks at the
        clock, in seconds, so that a clock that jumps (or runs faster, in
        tests) is noticed.
    """

    def __init__(
        self,
        queue: JobQueue,
        schedules: Iterable[Schedule],
        *,
        clock: Clock | None = None,
        max_wait: float = 60.0,
    ) -> None:
        self.queue = queue
        self.schedules: Sequence[Schedule] = tuple(schedules)
        names = [schedule.name for schedule in self.schedules]
        if len(set(names)) != len(names):
            raise ValueError(f"schedule names must be unique, got {names}")
        if not max_wait > 0:
            raise ValueError(f"max_wait must be > 0, got {safe_repr(max_wait)}")
        self.clock: Clock = clock if clock is not None else queue.clock
        self.max_wait = float(max_wait)
        # Guarded by _lock: the latest slot each schedule dealt with in this scheduler.
        self._lock = threading.Lock()
        self._last: dict[str, _dt.datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def last_slot(self, name: str) -> _dt.datetime | None:
        """Return the latest slot of schedule *name* this scheduler dealt with."""
        with self._lock:
            return self._last.get(name)

    def run_pending(self, now: _dt.datetime | None = None) -> list[PendingJob[Any]]:
        """Enqueue the jobs due at *now* (the clock's time by default); return those created here.

        A slot whose job another scheduler created is left to it. A schedule
        whose job the queue refuses (or a store that fails) is logged and
        tried again at the next round; the others go on.
        """
        if now is None:
            now = self.clock.now()
        created: list[PendingJob[Any]] = []
        for schedule in self.schedules:
            with self._lock:
                last = self._last.get(schedule.name)
            slots = schedule.due(last, now)
            try:
                for slot in slots:
                    # Another scheduler enqueued this slot first: one job per slot.
                    with contextlib.suppress(DuplicateJobError):
                        created.append(self.queue.create_job(schedule.job_for(slot)))
            except JobworkerError:
                log.exception("schedule %s: enqueueing failed; trying again later", schedule.name)
                continue
            # Dealt with up to now: later rounds look only at later slots.
            with self._lock:
                self._last[schedule.name] = now if last is None or now > last else last
        return created

    def next_wake(self, now: _dt.datetime) -> _dt.datetime | None:
        """Return the next slot of any schedule after *now*."""
        slots = [slot for slot in (s.next_slot(now) for s in self.schedules) if slot is not None]
        return min(slots) if slots else None

    def run(self) -> None:
        """Run rounds until :meth:`stop`; blocks."""
        while not self._stop.is_set():
            now = self.clock.now()
            self.run_pending(now)
            wake = self.next_wake(now)
            wait = self.max_wait
            if wake is not None:
                wait = min(wait, max(0.0, (wake - self.clock.now()).total_seconds()))
            self._stop.wait(wait)

    def start_in_thread(self) -> threading.Thread:
        """Start :meth:`run` in a named, non-daemon thread and return it."""
        if self._thread is not None:
            raise RuntimeError("this scheduler was started already")
        self._thread = threading.Thread(target=self.run, name="jobworker-scheduler")
        self._thread.start()
        return self._thread

    def request_stop(self) -> None:
        """Make the thread stop after its current round; returns at once."""
        self._stop.set()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the thread; return whether it ended within *timeout* seconds."""
        self._stop.set()
        if self._thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()


def schedules_from_config(value: Any) -> tuple[Schedule, ...]:
    """Return the schedules a setting declares: :class:`Schedule` objects or dicts of its arguments.

    For Django's ``JOBWORKER["SCHEDULES"]`` and Flask's ``JOBWORKER_SCHEDULES``.

    :raises ValueError: the value is not a list of schedules (or of their
        arguments), a schedule is invalid, or two share a name.
    """
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ValueError(f"must be a list of Schedule objects or dicts, got {value!r}")
    found: list[Schedule] = []
    for item in value:
        schedule = item
        if isinstance(item, dict):
            try:
                schedule = Schedule(**item)
            except TypeError as exc:
                raise ValueError(f"cannot make a Schedule of {item!r}: {exc}") from None
        if not isinstance(schedule, Schedule):
            raise ValueError(f"must hold Schedule objects or dicts, got {item!r}")
        found.append(schedule)
    names = [schedule.name for schedule in found]
    if len(set(names)) != len(names):
        raise ValueError(f"schedule names must be unique, got {names}")
    return tuple(found)
