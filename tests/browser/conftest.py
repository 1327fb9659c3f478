"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium.

Without the browser, the driver or Selenium these tests skip on a laptop and
fail under ``CI``, where a skip would hide a broken install. The browser is
never downloaded: only the system one at :data:`CHROMIUM` runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jobworker as jw
from jobworker.web import Dashboard, make_dashboard_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the browser tests must run)")
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path, serve: Any) -> Iterator[Any]:
    """A fresh headless Chromium with its own profile, closed after the test.

    It quits before the servers of *serve* close, so none of its idle
    connections holds a server thread at their close.
    """
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _missing(f"{path} is missing: apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Served:
    """A dashboard served over HTTP on loopback from a thread of this process."""

    def __init__(self, app: Dashboard) -> None:
        self.app = app
        self.server = make_dashboard_server(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            name="dashboard-server",
            kwargs={"poll_interval": 0.05},
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def sqlite_queue(tmp_path: Path) -> Iterator[jw.SQLiteQueue]:
    """A queue in a real SQLite file."""
    queue = jw.SQLiteQueue(str(tmp_path / "jobs.sqlite3"))
    yield queue
    queue.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Return ``serve(queue, **options)``: a dashboard of *queue*, served until the test ends."""
    served: list[Served] = []

    def start(queue: jw.JobQueue, **options: Any) -> Served:
        options.setdefault("refresh_interval", 0.2)
        server = Served(Dashboard(queue, **options))
        served.append(server)
        return server

    yield start
    for server in served:
        server.close()
