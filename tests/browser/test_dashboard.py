"""The dashboard in a real headless Chromium: live updates, actions, CSRF, escaping.

Each test serves a dashboard of a real SQLite queue from a thread of this
process and drives the system browser against it over HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import jobworker as jw
from jobworker.attempts import AttemptError
from jobworker.model import fail
from jobworker.web import allow_all

from .conftest import Served

if not os.environ.get("CI"):
    # Under CI a missing Selenium fails at this import, as it should.
    pytest.importorskip("selenium")

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "howto" / "dashboard.png"


def wait_for(browser: Any, condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Return the first true value of *condition*, polled until *timeout* seconds.

    A page being replaced (a live update, a navigation) is polled again.
    """
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(browser, timeout, poll_frequency=0.05, ignored_exceptions=ignored)
    return wait.until(lambda _: condition())


def updates(browser: Any) -> int:
    """Return how many live updates the open page has had."""
    value = browser.execute_script(
        "var r = document.getElementById('live'); return r && r.getAttribute('data-updates');"
    )
    return int(value or 0)


def wait_for_updates(browser: Any, count: int = 2) -> None:
    wait_for(browser, lambda: updates(browser) >= count)


def status_shown(browser: Any) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, ".facts .status").text)


def console_errors(browser: Any) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def fail_job(queue: jw.JobQueue, job_id: str, max_retries: int = 0) -> None:
    """Create a job and fail its only attempt with a real exception's traceback."""
    queue.create_job(jw.new_job("report", {"n": 1}, id=job_id, max_retries=max_retries))
    running = queue.poll_next_pending_job(worker="tester", types=["report"])
    assert running is not None and running.metadata.id == job_id
    try:
        raise ValueError(f"cannot build report {job_id}")
    except ValueError as exc:
        error = AttemptError.from_exception(exc)
    queue.update_job(fail(running, error, now=queue.clock.now()), "running", claim=running.claim)


def post_action(browser: Any, fields: dict[str, str]) -> int:
    """POST the form *fields* to the action URL from the open page; return the status."""
    return int(
        browser.execute_async_script(
            """
            var done = arguments[arguments.length - 1];
            var body = new URLSearchParams(arguments[0]);
            fetch("/action", {method: "POST", body: body, credentials: "same-origin",
                              headers: {"Accept": "application/json"}})
              .then(function (r) { done(r.status); }, function () { done(-1); });
            """,
            fields,
        )
    )


def page_token(browser: Any) -> str:
    return str(
        browser.find_element(By.CSS_SELECTOR, "input[name=csrf_token]").get_attribute("value")
    )


class StepWorker(jw.JobWorker):
    """Runs "steps" jobs: reports 10, 60 and 90 percent, each time waiting for the test's go."""

    PERCENTS = (10, 60, 90)

    def __init__(self, queue: jw.JobQueue, gates: list[threading.Event]) -> None:
        super().__init__(queue)
        self.gates = gates

    def get_worker_name(self) -> str:
        return "stepper"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "steps"

    def execute_job(self, job: jw.AnyJob) -> dict[str, bool]:
        assert jw.is_running_job(job)
        for percent, gate in zip(self.PERCENTS, self.gates, strict=True):
            job = self.report_progress(job, {"percent": percent}, force=True)
            assert gate.wait(60), "the test never let the job go on"
        return {"done": True}


def test_pages_load_without_console_errors(browser: Any, serve: Any, sqlite_queue: Any) -> None:
    queue = sqlite_queue
    for i in range(6):
        queue.create_job(jw.new_job("mail", {"to": f"user{i}@example.com"}, user_id=f"user{i}"))
    done = queue.poll_next_pending_job(worker="mailer", types=["mail"])
    assert done is not None
    queue._complete_job(done, {"sent": True})
    queue.poll_next_pending_job(worker="mailer", types=["mail"])
    fail_job(queue, "report-7")
    queue.create_job(jw.new_job("thumbnail", {"image": "a.png"}, id="thumb-1"))
    server: Served = serve(queue, actions=True, authorize=allow_all)

    for path in ("/", "/jobs", "/jobs?status=failed&type=report", "/job?id=report-7"):
        browser.get(server.url + path)
        wait_for_updates(browser)
        assert console_errors(browser) == [], path
        assert browser.find_element(By.TAG_NAME, "h1").text

    browser.get(server.url + "/")
    wait_for_updates(browser)
    counts = {
        status: browser.find_element(By.ID, f"count-{status}").text
        for status in ("pending", "running", "complete", "failed")
    }
    assert counts == {"pending": "5", "running": "1", "complete": "1", "failed": "1"}
    shot = browser.get_screenshot_as_png()
    assert shot.startswith(b"\x89PNG") and len(shot) > 10_000
    if os.environ.get("JOBWORKER_UPDATE_SCREENSHOT"):
        DOCS_SCREENSHOT.write_bytes(shot)
    assert console_errors(browser) == []


def test_new_job_appears_and_its_progress_moves_without_reload(
    browser: Any, serve: Any, sqlite_queue: Any
) -> None:
    queue = sqlite_queue
    server: Served = serve(queue)
    gates = [threading.Event() for _ in StepWorker.PERCENTS]
    worker = StepWorker(queue, gates)
    browser.get(server.url + "/jobs")
    wait_for_updates(browser, 1)
    browser.execute_script("window.sameDocument = 'yes';")
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-id="late-job"]')

    worker.start_in_thread()
    try:
        queue.create_job(jw.new_job("steps", {"title": "late"}, id="late-job"))

        def row_text() -> str:
            rows = browser.find_elements(By.CSS_SELECTOR, 'tr[data-id="late-job"]')
            return str(rows[0].text) if rows else ""

        assert wait_for(browser, lambda: '"percent": 10' in row_text())
        assert "running" in row_text()
        gates[0].set()
        assert wait_for(browser, lambda: '"percent": 60' in row_text())

        # The job's own page: its progress bar moves too.
        browser.get(server.url + "/job?id=late-job")
        browser.execute_script("window.sameDocument = 'yes';")

        def bar() -> str:
            found = browser.find_elements(By.CSS_SELECTOR, "#live progress")
            return str(found[0].get_attribute("value")) if found else ""

        assert wait_for(browser, lambda: bar() == "60")
        gates[1].set()
        assert wait_for(browser, lambda: bar() == "90")
        gates[2].set()
        assert wait_for(
            browser,
            lambda: browser.find_element(By.CSS_SELECTOR, ".facts .status").text == "complete",
        )
        assert browser.find_element(By.ID, "result").text == '{\n  "done": true\n}'
        assert browser.execute_script("return window.sameDocument;") == "yes"
        assert console_errors(browser) == []
    finally:
        for gate in gates:
            gate.set()
        assert worker.stop(timeout=30)


def test_retry_and_cancel_round_trips(
    browser: Any, serve: Any, sqlite_queue: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobworker.web")
    queue = sqlite_queue
    fail_job(queue, "broken")
    queue.create_job(jw.new_job("report", {"n": 2}, id="waiting"))
    server: Served = serve(queue, actions=True, authorize=allow_all)

    browser.get(server.url + "/job?id=broken")
    assert "ValueError: cannot build report broken" in browser.find_element(By.ID, "live").text
    browser.find_element(By.CSS_SELECTOR, "button.b-retry").click()
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".notice"))
    assert browser.find_element(By.CSS_SELECTOR, ".notice").text == "retry: done"
    assert browser.find_element(By.CSS_SELECTOR, ".facts .status").text == "pending"
    retried = queue.get_job("broken")
    assert retried is not None and retried.status == "pending"
    assert retried.metadata.retry_count == 0 and len(retried.attempts) == 1

    browser.get(server.url + "/job?id=waiting")
    browser.find_element(By.CSS_SELECTOR, "button.b-cancel").click()
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".notice"))
    assert browser.find_element(By.CSS_SELECTOR, ".facts .status").text == "cancelled"
    cancelled = queue.get_job("waiting")
    assert cancelled is not None and cancelled.status == "cancelled"
    assert console_errors(browser) == []

    logged = [r.getMessage() for r in caplog.records if r.name == "jobworker.web"]
    assert any("retry of job 'broken'" in m and "retried" in m for m in logged), logged
    assert any("cancel of job 'waiting'" in m and "cancelled" in m for m in logged), logged


def test_actions_are_refused_when_not_enabled(browser: Any, serve: Any, sqlite_queue: Any) -> None:
    queue = sqlite_queue
    fail_job(queue, "broken")
    server: Served = serve(queue)
    browser.get(server.url + "/job?id=broken")
    assert browser.find_elements(By.CSS_SELECTOR, "button") == []
    for action in ("retry", "delete"):
        assert post_action(browser, {"action": action, "id": "broken", "csrf_token": "x"}) == 403
    job = queue.get_job("broken")
    assert job is not None and job.status == "failed"


def test_actions_are_refused_when_the_hook_says_no(
    browser: Any, serve: Any, sqlite_queue: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobworker.web")
    queue = sqlite_queue
    fail_job(queue, "broken")
    server: Served = serve(queue, actions=True, authorize=lambda environ, action: action == "view")
    browser.get(server.url + "/job?id=broken")
    token = page_token(browser)
    assert post_action(browser, {"action": "retry", "id": "broken", "csrf_token": token}) == 403
    browser.find_element(By.CSS_SELECTOR, "button.b-retry").click()
    wait_for(
        browser, lambda: "you may not retry jobs" in browser.find_element(By.TAG_NAME, "main").text
    )
    job = queue.get_job("broken")
    assert job is not None and job.status == "failed"
    assert any("refused 'retry' of job 'broken'" in r.getMessage() for r in caplog.records)


def test_actions_need_a_valid_csrf_token(browser: Any, serve: Any, sqlite_queue: Any) -> None:
    queue = sqlite_queue
    fail_job(queue, "broken")
    server: Served = serve(queue, actions=True, authorize=allow_all)
    browser.get(server.url + "/job?id=broken")
    token = page_token(browser)
    assert len(token) == 64
    forged = ("0" if token[0] != "0" else "1") + token[1:]
    for fields in (
        {"action": "retry", "id": "broken"},
        {"action": "retry", "id": "broken", "csrf_token": ""},
        {"action": "retry", "id": "broken", "csrf_token": forged},
    ):
        assert post_action(browser, fields) == 403, fields
    # The page's own token from another client, without its cookie: refused too.
    request = urllib.request.Request(
        server.url + "/action",
        data=f"action=retry&id=broken&csrf_token={token}".encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 403
    job = queue.get_job("broken")
    assert job is not None and job.status == "failed"
    # The same request with the page's token is done: the refusals above were the token's.
    assert post_action(browser, {"action": "retry", "id": "broken", "csrf_token": token}) == 200
    job = queue.get_job("broken")
    assert job is not None and job.status == "pending"


EVIL = '<script>window.pwned = 1</script><img src="nowhere" onerror="window.pwned = 2">'


def test_params_with_markup_render_as_text(browser: Any, serve: Any, sqlite_queue: Any) -> None:
    queue = sqlite_queue
    job_id = 'evil-<b id="x">1</b>'
    queue.create_job(jw.new_job("t<i>y</i>pe", {"title": EVIL}, id=job_id, user_id="<u>who</u>"))
    server: Served = serve(queue)
    browser.get(server.url + "/job?" + urllib.parse.urlencode({"id": job_id}))
    wait_for_updates(browser)  # the live copy, swapped in by the script, is checked too
    params = json.loads(browser.find_element(By.ID, "params").text)
    assert params == {"title": EVIL}
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Job {job_id}"
    live = browser.find_element(By.ID, "live")
    assert live.find_elements(By.CSS_SELECTOR, "script, img, b, i, u") == []
    assert "<u>who</u>" in live.text and "t<i>y</i>pe" in live.text

    browser.get(server.url + "/jobs")
    wait_for_updates(browser)
    row = browser.find_element(By.CSS_SELECTOR, "table.jobs tbody tr")
    assert job_id in row.text and "<u>who</u>" in row.text
    assert row.find_elements(By.CSS_SELECTOR, "b, i, u") == []
    assert browser.execute_script("return window.pwned;") is None
    assert console_errors(browser) == []
