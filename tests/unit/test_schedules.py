"""Schedules: cron parsing, slots across DST changes, catch-up, and one job per slot."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

import jobworker as jw
from jobworker.schedules import Cron, Every, Schedule, Scheduler
from jobworker.testing import FakeClock

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def day_slots(cron: Cron, day: dt.date) -> list[dt.datetime]:
    """The slots whose wall date in the cron's timezone is *day*."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=cron.tz) - dt.timedelta(days=1)
    end = start + dt.timedelta(days=3)
    return [
        s
        for s in cron.slots(start.astimezone(UTC), end.astimezone(UTC))
        if s.astimezone(cron.tz).date() == day
    ]


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2026-06-01T12:07:00", "2026-06-01T12:15:00"),
        ("0 9 * * mon-fri", "2026-06-05T10:00:00", "2026-06-08T09:00:00"),  # Fri -> Mon
        ("0 0 1 jan *", "2026-06-01T00:00:00", "2027-01-01T00:00:00"),
        ("30 */5 * * * *", "2026-06-01T12:00:31", "2026-06-01T12:05:30"),  # seconds first
        ("0 0 29 2 *", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 13 * 5", "2026-06-01T00:00:00", "2026-06-05T00:00:00"),  # the 13th OR a Friday
        ("0 12 * * 7", "2026-06-01T00:00:00", "2026-06-07T12:00:00"),  # 7 is Sunday too
        ("@hourly", "2026-06-01T12:00:00", "2026-06-01T13:00:00"),
        ("5/20 * * * *", "2026-06-01T12:30:00", "2026-06-01T12:45:00"),
    ],
)
def test_next_slot_in_utc(expression: str, after: str, expected: str) -> None:
    start = dt.datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Cron(expression).next_after(start) == dt.datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize(
    "expression",
    ["* * * *", "* * * * * * *", "60 * * * *", "* 24 * * *", "5-1 * * * *", "*/0 * * * *",
     "0 0 30 2 *", "x * * * *", "1,,2 * * * *"],
)  # fmt: skip
def test_bad_expressions_are_refused_at_once(expression: str) -> None:
    with pytest.raises(ValueError, match=r"cron|never matches"):
        Cron(expression)


def test_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        Cron("0 0 * * *", "Mars/Olympus")


def test_every_is_aligned_on_its_anchor() -> None:
    assert Every(3600).next_after(T0) == T0 + dt.timedelta(hours=1)
    anchor = T0 + dt.timedelta(minutes=10)
    assert Every(dt.timedelta(minutes=30), anchor=anchor).next_after(T0) == anchor
    with pytest.raises(ValueError):
        Every(0)


# -- DST, with two timezones ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [("America/New_York", dt.date(2026, 3, 8), dt.date(2026, 11, 1)),
     ("Europe/Paris", dt.date(2026, 3, 29), dt.date(2026, 10, 25))],
)  # fmt: skip
def test_a_fixed_time_inside_a_dst_change_runs_once(
    zone: str, spring: dt.date, fall: dt.date
) -> None:
    cron = Cron("30 2 * * *", zone)
    tz = ZoneInfo(zone)
    # Spring forward: 02:30 does not exist; it runs once, shifted by the gap.
    (slot,) = day_slots(cron, spring)
    assert slot.astimezone(tz).time() == dt.time(3, 30)
    # Fall back (02:30 is repeated in Paris; New York repeats 01:xx): once, the first time.
    (slot,) = day_slots(cron, fall)
    assert slot.astimezone(tz).replace(tzinfo=None) == dt.datetime.combine(fall, dt.time(2, 30))
    assert slot.astimezone(tz).fold == 0
    repeated = Cron("30 1 * * *" if zone == "America/New_York" else "30 2 * * *", zone)
    (slot,) = day_slots(repeated, fall)
    assert slot.astimezone(tz).fold == 0
    # The days around run at their usual wall time.
    for day in (spring - dt.timedelta(days=1), fall + dt.timedelta(days=1)):
        (slot,) = day_slots(cron, day)
        assert slot.astimezone(tz).time() == dt.time(2, 30)


@pytest.mark.parametrize(
    ("zone", "spring", "fall", "hours"),
    [("America/New_York", dt.date(2026, 3, 8), dt.date(2026, 11, 1), (23, 25)),
     ("Europe/Paris", dt.date(2026, 3, 29), dt.date(2026, 10, 25), (23, 25)),
     ("Australia/Lord_Howe", dt.date(2026, 10, 4), dt.date(2026, 4, 5), (23.5, 24.5))],
)  # fmt: skip
def test_an_every_hour_schedule_follows_real_time_across_dst(
    zone: str, spring: dt.date, fall: dt.date, hours: tuple[float, float]
) -> None:
    cron = Cron("*/15 * * * *", zone)
    for day, length in ((spring, hours[0]), (fall, hours[1])):
        slots = day_slots(cron, day)
        assert len(slots) == length * 4
        gaps = {b - a for a, b in itertools.pairwise(slots)}
        assert gaps == {dt.timedelta(minutes=15)}  # strictly increasing, no repeat, no hole


# -- schedules and catch-up -----------------------------------------------------------------


def every_minute(catch_up: str = "skip", **options: object) -> Schedule:
    return Schedule("tick", "* * * * *", "report", {"kind": "daily"}, catch_up=catch_up, **options)  # type: ignore[arg-type]


def test_a_slot_s_job_has_a_stable_id_and_the_schedule_s_options() -> None:
    schedule = Schedule(
        "nightly",
        "0 3 * * *",
        "report",
        {"n": 1},
        max_retries=5,
        priority=2,
        timezone="Europe/Paris",
    )
    job = schedule.job_for(T0)
    assert job.metadata.id == "schedule:nightly:2026-06-01T12:00:00+00:00"
    assert (job.metadata.type, job.params, job.metadata.created) == ("report", {"n": 1}, T0)
    assert (job.metadata.max_retries, job.metadata.priority) == (5, 2)
    assert schedule.next_slot(T0) == dt.datetime(2026, 6, 2, 1, 0, tzinfo=UTC)  # 03:00 CEST


@pytest.mark.parametrize(
    "options",
    [{"name": "a:b"}, {"name": ""}, {"catch_up": "some"}, {"max_catch_up": 0}, {"grace": 0},
     {"when": 60, "timezone": "Europe/Paris"}, {"params": {1, 2}}, {"max_retries": -1}],
)  # fmt: skip
def test_bad_schedule_options_are_refused_at_once(options: dict[str, object]) -> None:
    base: dict[str, object] = {"name": "x", "when": "* * * * *", "job_type": "t"}
    with pytest.raises((ValueError, jw.InvalidJobError)):
        Schedule(**{**base, **options})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    # After 3 hours without a scheduler (181 slots missed), looking 30 s after
    # the latest slot: skip enqueues none of them (30 s is past its grace of
    # 10 s); latest enqueues one; all enqueues the latest 5, oldest first.
    [("skip", 0), ("latest", 1), ("all", 5)],
)
def test_catch_up_after_a_three_hour_outage(catch_up: str, expected: int) -> None:
    clock = FakeClock(T0)
    queue = jw.MemoryQueue(clock=clock)
    schedule = every_minute(catch_up, max_catch_up=5, grace=10)
    before = Scheduler(queue, [schedule])
    # A first scheduler ever: "all" also enqueues the slots before T0 it never saw.
    first = before.run_pending()
    assert first[-1].metadata.created == T0
    assert len(first) == expected if catch_up == "all" else len(first) == 1
    clock.advance(3 * 3600 + 90)  # every scheduler is down; then one starts
    after = Scheduler(queue, [schedule])
    created = after.run_pending()
    assert len(created) == expected
    late = T0 + dt.timedelta(hours=3, minutes=1)
    assert [j.metadata.created for j in created] == [
        late - dt.timedelta(minutes=n) for n in reversed(range(expected))
    ]
    # The same round in the scheduler that ran before the outage agrees.
    assert before.run_pending() == []
    # Back on time: one job a slot.
    clock.advance(30)
    assert [j.metadata.created for j in after.run_pending()] == [late + dt.timedelta(minutes=1)]
    assert queue.get_stats()["pending"] == len(first) + expected + 1


def test_many_schedulers_make_one_job_per_slot() -> None:
    clock = FakeClock(T0 - dt.timedelta(seconds=1))
    queue = jw.MemoryQueue(clock=clock)
    schedulers = [Scheduler(queue, [every_minute()]) for _ in range(4)]
    made = 0
    for step in range(3 * 60):
        clock.advance(1)
        for scheduler in schedulers[step % 4 :] + schedulers[: step % 4]:
            made += len(scheduler.run_pending())
    assert made == 3
    ids = sorted(job.metadata.id for job in queue.list_jobs())
    assert ids == [f"schedule:tick:2026-06-01T12:0{n}:00+00:00" for n in range(3)]


def test_a_scheduler_thread_enqueues_as_the_clock_moves() -> None:
    clock = FakeClock(T0 - dt.timedelta(seconds=1))
    queue = jw.MemoryQueue(clock=clock, lease_duration=3600)  # claimed jobs stay claimed
    scheduler = Scheduler(queue, [every_minute(grace=10)], max_wait=0.01)
    thread = scheduler.start_in_thread()
    try:
        for minute in range(3):
            clock.advance(60 if minute else 1)
            # A blocking poll wakes when the scheduler's job arrives.
            job = queue.poll_next_pending_job(timeout=10)
            assert job is not None
            assert job.metadata.created == T0 + dt.timedelta(minutes=minute)
        assert queue.poll_next_pending_job(timeout=0.05) is None
    finally:
        assert scheduler.stop(timeout=10)
    assert not thread.is_alive()
