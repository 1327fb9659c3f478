"""Bad configuration fails at init_app with a ConfigurationError naming the key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

import jobworker as jw
from jobworker.contrib.flask import ConfigurationError, FlaskJobworker
from jobworker.contrib.flask._config import redact_url
from jobworker.testing import FakeClock

from .conftest import GREETER
from .sample_app import GreetingWorker


class AbstractWorker(jw.JobWorker):
    def get_worker_name(self) -> str:
        return "abstract"


def init(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    FlaskJobworker().init_app(app)
    return app


@pytest.mark.parametrize(
    ("config", "key", "match"),
    [
        ({}, "JOBWORKER_QUEUE", "not set"),
        ({"JOBWORKER_QUEUE": 42}, "JOBWORKER_QUEUE", "must be a queue URL"),
        ({"JOBWORKER_QUEUE": "redis://x"}, "JOBWORKER_QUEUE", "unknown queue URL"),
        ({"JOBWORKER_QUEUE": "sqlite:///"}, "JOBWORKER_QUEUE", "unknown queue URL"),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_QUEUE_OPTIONS": {"lease": 1}},
            "JOBWORKER_QUEUE_OPTIONS",
            "unknown option 'lease'",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_QUEUE_OPTIONS": {"synchronous": "FULL"}},
            "JOBWORKER_QUEUE_OPTIONS",
            "unknown option 'synchronous'",
        ),
        (
            {"JOBWORKER_QUEUE": jw.MemoryQueue(), "JOBWORKER_QUEUE_OPTIONS": {"clock": None}},
            "JOBWORKER_QUEUE_OPTIONS",
            "queue object",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_QUEUE_OPTIONS": ["x"]},
            "JOBWORKER_QUEUE_OPTIONS",
            "must be a dict",
        ),
        ({"JOBWORKER_QUEUE": "memory:", "JOBWORKER_WORKERS": GREETER}, "JOBWORKER_WORKERS", "list"),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_WORKERS": ["tests.flask.sample_app"]},
            "JOBWORKER_WORKERS",
            "'module:Class'",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_WORKERS": ["no_such_module:Worker"]},
            "JOBWORKER_WORKERS",
            "cannot import 'no_such_module:Worker'",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_WORKERS": ["tests.flask.sample_app:Nope"]},
            "JOBWORKER_WORKERS",
            "cannot import",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_WORKERS": ["tests.flask.sample_app:jobs"]},
            "JOBWORKER_WORKERS",
            "not a JobWorker subclass",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_WORKERS": [AbstractWorker]},
            "JOBWORKER_WORKERS",
            "abstract",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_CONCURRENCY": 0},
            "JOBWORKER_CONCURRENCY",
            ">= 1",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_CONCURRENCY": True},
            "JOBWORKER_CONCURRENCY",
            "int",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_START_WORKERS": "yes"},
            "JOBWORKER_START_WORKERS",
            "bool",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_START_WORKERS": True},
            "JOBWORKER_START_WORKERS",
            "names no worker",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_STOP_TIMEOUT": -1},
            "JOBWORKER_STOP_TIMEOUT",
            ">= 0",
        ),
        (
            {
                "JOBWORKER_QUEUE": "memory:",
                "JOBWORKER_WORKERS": [GreetingWorker],
                "JOBWORKER_WORKER_OPTIONS": {"pol_interval": 1},
            },
            "JOBWORKER_WORKER_OPTIONS",
            "GreetingWorker cannot take these options",
        ),
        (
            {"JOBWORKER_QUEUE": "memory:", "JOBWORKER_LIMITS": {"api": {"rate": 0}}},
            "JOBWORKER_LIMITS",
            "rate must be an int >= 1",
        ),
    ],
)
def test_bad_configuration_fails_at_init_app(config: dict[str, Any], key: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        init(**config)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    # A typed error the caller can catch as the root, or as a ValueError.
    assert isinstance(caught.value, jw.JobworkerError) and isinstance(caught.value, ValueError)


def test_a_bad_option_value_fails_at_first_use_with_the_key() -> None:
    app = init(JOBWORKER_QUEUE="memory:", JOBWORKER_QUEUE_OPTIONS={"lease_duration": -1})
    with pytest.raises(ConfigurationError, match="lease_duration must be > 0") as caught:
        app.extensions["jobworker"].get_queue()
    assert caught.value.key == "JOBWORKER_QUEUE_OPTIONS"

    app = init(
        JOBWORKER_QUEUE="memory:",
        JOBWORKER_WORKERS=[GREETER],
        JOBWORKER_WORKER_OPTIONS={"poll_interval": 0},
    )
    with pytest.raises(ConfigurationError, match="poll_interval must be > 0") as caught:
        app.extensions["jobworker"].start_workers()
    assert caught.value.key == "JOBWORKER_WORKER_OPTIONS"
    assert app.extensions["jobworker"].get_workers() == []


def test_init_app_twice_and_use_before_init_app_are_refused() -> None:
    app = init(JOBWORKER_QUEUE="memory:")
    with pytest.raises(ConfigurationError, match=r"set up on app .* already"):
        FlaskJobworker().init_app(app)
    with pytest.raises(ConfigurationError, match="call FlaskJobworker"):
        FlaskJobworker().get_queue(Flask("bare"))


def test_a_postgres_url_without_a_password_in_messages() -> None:
    assert redact_url("postgresql://me:secret@db/jobs") == "postgresql://me:***@db/jobs"
    assert redact_url("postgresql://me@db/jobs") == "postgresql://me@db/jobs"
    assert redact_url("sqlite:///jobs.db") == "sqlite:///jobs.db"
    with pytest.raises(ConfigurationError) as caught:
        init(JOBWORKER_QUEUE="mysql://me:secret@db/jobs")
    assert "secret" not in str(caught.value)


def test_limits_from_the_config_are_set_on_the_queue() -> None:
    from jobworker.throttling import TypeLimits

    app = init(JOBWORKER_QUEUE="memory:", JOBWORKER_LIMITS={"export": {"concurrency": 2}})
    queue = app.extensions["jobworker"].get_queue()
    assert queue.registry.limits == {"export": TypeLimits(concurrency=2)}
    given = jw.MemoryQueue()
    init(JOBWORKER_QUEUE=given, JOBWORKER_LIMITS={"sync": {"concurrency": 1, "key": "account"}})
    assert given.registry.limits_of("sync") == TypeLimits(concurrency=1, key="account")


@pytest.mark.parametrize(
    ("schedules", "match"),
    [
        ("* * * * *", "must be a list"),
        ([{"name": "a", "when": "* * *", "job_type": "t"}], "cron expression has 5 fields"),
        ([{"name": "a", "job_type": "t"}], "cannot make a Schedule"),
        ([{"name": "a", "when": 60, "job_type": "t"}] * 2, "names must be unique"),
    ],
)
def test_bad_schedules_fail_at_init_app(schedules: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        init(JOBWORKER_QUEUE="memory:", JOBWORKER_SCHEDULES=schedules)
    assert caught.value.key == "JOBWORKER_SCHEDULES"


def test_started_workers_run_the_configured_schedules() -> None:
    # A tenth of a second before a slot: the scheduler sleeps that long (real
    # time), then finds the fake clock moved on to the slot.
    start = dt.datetime(2026, 6, 1, 11, 59, 59, 900_000, tzinfo=dt.timezone.utc)
    clock = FakeClock(start)
    queue = jw.MemoryQueue(clock=clock, lease_duration=3600)
    tick = {"name": "tick", "when": "* * * * *", "job_type": "tick", "grace": 10}
    app = init(
        JOBWORKER_QUEUE=queue, JOBWORKER_WORKERS=[GreetingWorker], JOBWORKER_SCHEDULES=[tick]
    )
    ext = app.extensions["jobworker"]
    with app.app_context():
        assert ext.start_workers()
        try:
            clock.advance(0.1)
            job = queue.poll_next_pending_job(types=["tick"], timeout=10)
            assert job is not None and job.metadata.id == "schedule:tick:2026-06-01T12:00:00+00:00"
        finally:
            assert ext.stop_workers(timeout=10)
