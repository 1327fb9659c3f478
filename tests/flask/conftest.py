"""Fixtures for the Flask tests: an app factory that cleans up after itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from jobworker.contrib.flask._extension import get_state

from .sample_app import create_app

MakeApp = Callable[..., Flask]

GREETER = "tests.flask.sample_app:GreetingWorker"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A queue URL on a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"


@pytest.fixture(params=["memory", "sqlite"])
def queue_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Each test that takes it runs on a memory queue and on a real SQLite file."""
    return "memory:" if request.param == "memory" else sqlite_url


@pytest.fixture
def make_app() -> Iterator[MakeApp]:
    """Return ``make_app(**config)``: a new sample app; each is closed at the end."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        config.setdefault("TESTING", True)
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        assert get_state(app).close(timeout=10), "a worker did not stop"
