"""Configuration: settings checked, the database refused when it cannot hold a queue, migrations."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from jobworker.contrib.django import build_workers, get_queue, get_settings


@pytest.mark.parametrize(
    ("jobworker", "message"),
    [
        ({"DATABASES": "default"}, "unknown key"),
        ({"DATABASE": "nowhere"}, "DATABASE must name an alias"),
        ({"CONCURRENCY": 0}, "CONCURRENCY must be an int >= 1"),
        ({"WORKERS": "shop.Worker"}, "WORKERS must be a list"),
        ({"START_WORKERS": "yes"}, "START_WORKERS must be True or False"),
        ({"STOP_TIMEOUT": -1}, "STOP_TIMEOUT must be a number"),
        ({"LIMITS": {"export": {"concurrency": 0}}}, "LIMITS: the limits of 'export'"),
        ({"LIMITS": {"export": {"burst": 2}}}, "unknown options"),
        ({"SCHEDULES": "0 3 * * *"}, "SCHEDULES must be a list"),
        ({"SCHEDULES": [{"name": "n", "when": "0 3 *", "job_type": "t"}]}, "SCHEDULES a cron"),
    ],
)
def test_bad_settings_are_refused_clearly(jobworker: dict[str, object], message: str) -> None:
    with override_settings(JOBWORKER=jobworker), pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


def test_a_worker_that_is_not_a_django_worker_is_refused(sqlite_db: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"subclass of jobworker\.contrib\.django"):
        build_workers(["jobworker.MemoryQueue"])
    with pytest.raises(ImproperlyConfigured, match="cannot import"):
        build_workers(["tests.django.shop.workers.Nothing"])


def test_schedules_are_read_from_the_settings() -> None:
    nightly = {
        "name": "nightly",
        "when": "0 3 * * *",
        "job_type": "report",
        "timezone": "Europe/Paris",
    }
    with override_settings(JOBWORKER={"SCHEDULES": [nightly]}):
        (schedule,) = get_settings().schedules
    assert (schedule.name, schedule.job_type, str(schedule.when.tz)) == (
        "nightly",
        "report",
        "Europe/Paris",
    )  # type: ignore[union-attr]


def test_build_workers_from_the_settings(sqlite_db: str) -> None:
    with override_settings(JOBWORKER={**settings.JOBWORKER, "CONCURRENCY": 3}):
        workers = build_workers()
    assert [w.get_worker_name() for w in workers] == ["ship"] * 3
    assert all(w.poll_interval == 0.5 for w in workers)


def test_an_in_memory_sqlite_database_is_refused(sqlite_db: str) -> None:
    databases = {"memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    from django.db import connections

    connections.settings["memory"] = {**connections.settings["default"], **databases["memory"]}
    try:
        with pytest.raises(ImproperlyConfigured, match="in-memory SQLite"):
            get_queue("memory")
    finally:
        del connections.settings["memory"]


def test_unknown_queue_options_are_refused(sqlite_db: str) -> None:
    with (
        override_settings(JOBWORKER={"QUEUE_OPTIONS": {"colour": "blue"}}),
        pytest.raises(ImproperlyConfigured, match="QUEUE_OPTIONS"),
    ):
        get_queue()


def test_limits_from_the_settings_are_set_on_the_queue(sqlite_db: str) -> None:
    from jobworker.contrib.django import close_queues
    from jobworker.throttling import TypeLimits

    close_queues()
    limits = {"export": {"concurrency": 2}, "api": {"rate": 50, "period": 1.0}}
    try:
        with override_settings(JOBWORKER={**settings.JOBWORKER, "LIMITS": limits}):
            queue = get_queue()
        assert queue.registry.limits == {
            "export": TypeLimits(concurrency=2),
            "api": TypeLimits(rate=50, period=1.0),
        }
    finally:
        close_queues()


def test_the_migrations_match_the_models(sqlite_db: str) -> None:
    out = io.StringIO()
    call_command("makemigrations", "jobworker", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_migrating_backwards_drops_the_tables_and_forwards_makes_them(db: str) -> None:
    from django.db import connections

    def tables() -> set[str]:
        return set(connections[db].introspection.table_names()) & {
            "jobworker_jobs",
            "jobworker_meta",
        }

    from jobworker.contrib.django import close_queues

    close_queues()
    assert tables() == {"jobworker_jobs", "jobworker_meta"}
    call_command("migrate", "jobworker", "zero", database=db, verbosity=0)
    assert tables() == set()
    call_command("migrate", "jobworker", database=db, verbosity=0)
    assert tables() == {"jobworker_jobs", "jobworker_meta"}
    assert get_queue().get_stats()["pending"] == 0
