"""``jobworker worker --metrics-port`` and ``--tracing`` as a subprocess, on SQLite and PostgreSQL.

The scrape is read by prometheus_client's own text parser, and its counters
are compared with the jobs the process ran; the trace of an enqueue in this
process is followed into the span the worker process exported.
"""

from __future__ import annotations

import json
import pathlib
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families

import jobworker as jw
from jobworker.cli import ExitCode, main
from jobworker.metrics import tracing

from .test_cli_worker import SLEEP, TIMEOUT, WorkerProcess, backend, open_backend, spawn

__all__ = ["backend", "spawn"]  # fixtures, used by name

FAIL = "tests.integration.cli_workers:FailWorker"


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_scrape_of_a_running_worker_counts_the_jobs_it_ran(
    backend: list[str], spawn: Callable[..., WorkerProcess]
) -> None:
    options = ["--concurrency", "2", "--poll-interval", "0.1", "--metrics-port", "0"]
    worker = spawn(SLEEP, FAIL, *backend, *options)
    line = worker.wait_for_line(lambda line: "metrics on http://" in line)
    match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
    assert match, line
    url = f"http://127.0.0.1:{match[1]}/metrics"
    worker.wait_ready()
    with open_backend(backend) as queue:
        done = [queue.create_job(jw.new_job("sleep", {"ms": 0})) for _ in range(5)]
        done += [queue.create_job(jw.new_job("fail", {})) for _ in range(2)]
        ended = [queue.wait_for_job(job.metadata.id, timeout=TIMEOUT) for job in done]
        assert [job.status for job in ended] == ["complete"] * 5 + ["failed"] * 2
        queue.create_job(jw.new_job("other", {}))  # no worker takes it
        # An attempt is counted just after its outcome is stored: the worker's
        # thread may not have counted the last one when wait_for_job returns.
        # Each scrape is a round trip to the process, so this loop paces itself.
        deadline = time.monotonic() + TIMEOUT
        while True:
            samples = scrape(url)
            counted = sum(v for (n, _), v in samples.items() if n == "jobworker_attempts_total")
            if counted >= len(done) or time.monotonic() > deadline:
                break
    attempts = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "jobworker_attempts_total"
    }
    assert attempts == {
        frozenset({("type", "sleep"), ("outcome", "complete")}): 5,
        frozenset({("type", "fail"), ("outcome", "failed")}): 2,
    }
    assert samples["jobworker_attempt_duration_seconds_count", frozenset({("type", "sleep")})] == 5
    assert samples["jobworker_queue_wait_seconds_count", frozenset({("type", "fail")})] == 2
    jobs = {
        (dict(labels)["type"], dict(labels)["status"]): value
        for (name, labels), value in samples.items()
        if name == "jobworker_jobs" and value
    }
    assert jobs == {("sleep", "complete"): 5, ("fail", "failed"): 2, ("other", "pending"): 1}
    threads = {
        (dict(labels)["worker"], dict(labels)["state"]): value
        for (name, labels), value in samples.items()
        if name == "jobworker_workers"
    }
    # Two threads of each class, busy or idle (one may not have let go of its
    # last job yet); none abandoned, as no job has a time limit.
    assert {state for _, state in threads} == {"busy", "idle", "abandoned"}
    for name in ("fail", next(w for w, _ in threads if w.startswith("sleep-"))):
        assert threads[name, "busy"] + threads[name, "idle"] == 2
        assert threads[name, "abandoned"] == 0
    assert "process_cpu_seconds_total" in {name for name, _ in samples}
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0, worker.log()


@pytest.fixture
def traced(tmp_path: pathlib.Path) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    tracing.instrument(tracer_provider=provider)
    try:
        yield provider
    finally:
        tracing.uninstrument()
        provider.shutdown()


def test_a_trace_around_an_enqueue_continues_in_the_worker_process(
    spawn: Callable[..., WorkerProcess],
    tmp_path: pathlib.Path,
    traced: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv("JOBWORKER_TEST_SPANS", str(spans_file))
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    jw.open_queue(url).close()
    worker = spawn("--tasks", "tests.integration.traced_tasks", "--tracing", "--queue", url)
    worker.wait_ready()

    # The worker process's task, by name; the SDK that its module configures stays there.
    @jw.task(name="traced-add", registry=jw.TaskRegistry())
    def traced_add(a: int, b: int) -> int:
        raise AssertionError("runs in the worker process only")

    with jw.open_queue(url) as queue:
        with traced.get_tracer("test").start_as_current_span("request") as request:
            handle = traced_add.enqueue_on(queue, 2, 3)
        assert handle.result(timeout=TIMEOUT) == 5
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0, worker.log()
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    [span] = [s for s in spans if s["name"] == f"process {traced_add.job_type}"]
    context = request.get_span_context()
    assert span["trace_id"] == f"{context.trace_id:032x}"
    assert span["parent_id"] == f"{context.span_id:016x}"
    assert span["attributes"]["messaging.message.id"] == handle.id
    assert span["attributes"]["jobworker.outcome"] == "complete"


def test_a_metrics_port_in_use_is_refused_and_the_queue_closed(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["worker", SLEEP, "--queue", url, "--metrics-port", str(port)])
    assert code == ExitCode.USAGE
    assert f"cannot serve metrics on 127.0.0.1:{port}" in capsys.readouterr().err
    # Nothing was left running: the file can be opened, used and closed.
    with jw.open_queue(url) as queue:
        assert queue.get_stats()["pending"] == 0
