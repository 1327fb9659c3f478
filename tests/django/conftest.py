"""Django for the tests in this folder: the test project, its test databases, cleanup.

Django is set up here, at import, with the settings of ``tests/django/project``;
the rest of the suite never imports Django. The test databases (an SQLite
file, and a PostgreSQL database when the server answers) are created once
per session, on first use, and dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_DATA = tempfile.mkdtemp(prefix="jobworker-django-")
os.environ["JOBWORKER_DJANGO_DATA"] = _DATA
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.project.settings")

import django  # noqa: E402

django.setup()

from django.db import connections  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.test.utils import (  # noqa: E402
    setup_databases,
    setup_test_environment,
    teardown_databases,
    teardown_test_environment,
)

from jobworker.contrib.django import close_queues, stop_workers  # noqa: E402
from tests.conftest import POSTGRES_DSN, require_postgres  # noqa: E402

# Never imported by the tests (not even to collect doctests): test_hardening
# checks that no job makes the process import them.
collect_ignore = ["hostile"]

#: How long a test waits for a worker thread, at most.
TIMEOUT = 30.0


def _postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception:  # broad: any reason the server is unusable; require_postgres says why
        return False
    return True


@pytest.fixture(scope="session")
def django_databases() -> Iterator[set[str]]:
    """Create the test databases; yield the aliases that have one."""
    aliases = {"default"} | ({"postgres"} if _postgres_answers() else set())
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False, aliases=aliases)
    try:
        yield aliases
    finally:
        stop_workers(timeout=TIMEOUT)
        close_queues()
        connections.close_all()
        teardown_databases(old, verbosity=0)
        teardown_test_environment()
        shutil.rmtree(_DATA, ignore_errors=True)


def _clean(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("DELETE FROM jobworker_jobs")
        cursor.execute("DELETE FROM shop_order")


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, django_databases: set[str]) -> Iterator[str]:
    """The alias of one database, made the queue's (``JOBWORKER["DATABASE"]``); emptied after."""
    alias: str = request.param
    if alias == "postgres":
        require_postgres()
        assert alias in django_databases
    from django.conf import settings

    with override_settings(JOBWORKER={**settings.JOBWORKER, "DATABASE": alias}):
        try:
            yield alias
        finally:
            assert stop_workers(timeout=TIMEOUT)
            _clean(alias)
    connections.close_all()


@pytest.fixture
def sqlite_db(django_databases: set[str]) -> Iterator[str]:
    """The SQLite alias only, emptied after."""
    try:
        yield "default"
    finally:
        assert stop_workers(timeout=TIMEOUT)
        _clean("default")
        connections.close_all()
