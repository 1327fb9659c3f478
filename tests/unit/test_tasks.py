"""Tests for jobworker.tasks on the memory backend: @task, handles, TaskWorker, eager runs.

The process tests (tests/integration/test_tasks_processes.py) run the same
paths across processes on SQLite and PostgreSQL. Threads here are real
worker threads, waited on with handles (``wait_for_job``) and Events.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import jobworker as jw
from jobworker.testing import run_pending

TIMEOUT = 10.0  # upper bound on any wait for a worker thread


@attrs.frozen
class Span:
    start: dt.datetime
    days: int


@pytest.fixture
def registry() -> jw.TaskRegistry[jw.Task[Any, Any]]:
    return jw.TaskRegistry()


@pytest.fixture
def mq() -> Iterator[jw.MemoryQueue]:
    queue = jw.MemoryQueue()
    yield queue
    queue.close()


@pytest.fixture
def running(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> Iterator[jw.TaskWorker]:
    """A TaskWorker thread running every task of *registry*."""
    worker = jw.TaskWorker(mq, registry=registry, poll_interval=0.05)
    worker.start_in_thread()
    yield worker
    assert worker.stop(timeout=TIMEOUT)


# -- enqueue -------------------------------------------------------------------------


def test_enqueue_checks_the_call_against_the_signature(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="add", registry=registry)
    def add(a: int, b: int = 1) -> int:
        return a + b

    bad_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1, 2, 3), {}),
        ((), {}),
        ((1,), {"c": 2}),
        ((1,), {"a": 2}),
    ]
    for args, kwargs in bad_calls:
        with pytest.raises(TypeError, match=r"^task add: "):
            add.enqueue_on(mq, *args, **kwargs)
    assert mq.list_jobs() == []
    handle = add.enqueue_on(mq, 1, b=5)
    job = mq.get_job(handle.id)
    assert job is not None and job.metadata.type == "fn:add"
    assert job.params == {"args": [1], "kwargs": {"b": 5}}


def test_an_unstorable_argument_is_refused_at_enqueue_and_nothing_is_stored(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="keep", registry=registry)
    def keep(value: Any) -> None:
        pass

    for value in (object(), {1: "a", "1": "b"}, float("nan")):
        with pytest.raises(jw.SerializationError):
            keep.enqueue_on(mq, value)
    assert mq.list_jobs() == []


def test_options_make_the_jobs(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="urgent", max_retries=7, priority=5, registry=registry)
    def urgent() -> None:
        pass

    job = mq.get_job(urgent.enqueue_on(mq).id)
    assert job is not None
    assert (job.metadata.max_retries, job.metadata.priority) == (7, 5)
    for bad in ({"max_retries": -1}, {"max_retries": True}, {"priority": 1.5}):
        with pytest.raises(ValueError):
            jw.task(registry=registry, **bad)


def test_enqueue_uses_the_default_queue(
    no_default_queue: None, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="one", registry=registry)
    def one() -> int:
        return 1

    with pytest.raises(jw.QueueNotInitializedError):
        one.enqueue()
    queue = jw.initialize_job_queue(data_dir=None)
    handle = one.enqueue()
    assert handle.queue is queue
    assert handle.status == "pending"
    assert one.handle(handle.id).status == "pending"


# -- running, and the handle -----------------------------------------------------------


def test_a_task_runs_in_a_worker_thread_and_the_handle_reads_its_result(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]], running: jw.TaskWorker
) -> None:
    @jw.task(name="add", registry=registry)
    def add(a: int, b: int) -> int:
        return a + b

    handle = add.enqueue_on(mq, 2, 3)
    assert handle.result(timeout=TIMEOUT) == 5
    assert handle.status == "complete"
    assert handle.wait(timeout=TIMEOUT).status == "complete"
    # From the id alone, untyped and typed.
    assert jw.JobHandle(handle.id, queue=mq).result(timeout=0) == 5
    assert add.handle(handle.id, queue=mq).result() == 5
    assert not handle.cancel()  # already complete


def test_converted_values_are_stored_as_json_and_come_back_as_their_classes(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="widen", registry=registry)
    def widen(span: Span, extra: int, until: dt.datetime | None = None) -> Span:
        assert isinstance(span, Span) and isinstance(span.start, dt.datetime)
        assert until is None or isinstance(until, dt.datetime)
        return Span(span.start, span.days + extra)

    start = dt.datetime(2024, 2, 28, tzinfo=dt.timezone.utc)
    handle = widen.enqueue_on(mq, Span(start, 1), extra=2, until=start)
    job = mq.get_job(handle.id)
    assert job is not None
    assert job.params == {
        "args": [{"start": start.isoformat(), "days": 1}],
        "kwargs": {"extra": 2, "until": start.isoformat()},
    }
    run_pending(jw.TaskWorker(mq, [widen]))
    assert handle.result(timeout=0) == Span(start, 3)
    stored = mq.get_job(handle.id)
    assert isinstance(stored, jw.CompleteJob)
    assert stored.result == {"start": start.isoformat(), "days": 3}


def test_a_raising_task_is_retried_then_fails_with_a_typed_error(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]], running: jw.TaskWorker
) -> None:
    attempts: list[int] = []

    @jw.task(
        name="flaky",
        max_retries=2,
        retry_policy=jw.RetryPolicy.immediate(),
        takes_context=True,
        registry=registry,
    )
    def flaky(context: jw.TaskContext, succeed_on: int) -> int:
        attempts.append(context.attempt)
        if context.attempt < succeed_on:
            raise KeyError(f"attempt {context.attempt}")
        return context.attempt

    assert flaky.enqueue_on(mq, 2).result(timeout=TIMEOUT) == 2
    assert attempts == [1, 2]
    handle = flaky.enqueue_on(mq, 9)
    with pytest.raises(jw.JobFailedError) as failed:
        handle.result(timeout=TIMEOUT)
    assert failed.value.error_type == "KeyError"
    assert failed.value.error == "KeyError: 'attempt 3'"
    assert failed.value.job_id == handle.id
    assert attempts == [1, 2, 1, 2, 3]


def test_progress_and_cancel_from_another_thread(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]], running: jw.TaskWorker
) -> None:
    reported = threading.Event()
    cancelled = threading.Event()

    @jw.task(name="long", takes_context=True, max_retries=0, registry=registry)
    def long(context: jw.TaskContext) -> None:
        context.report_progress({"done": 1}, force=True)
        reported.set()
        assert cancelled.wait(TIMEOUT)
        context.raise_if_cancelled()

    handle = long.enqueue_on(mq)
    assert reported.wait(TIMEOUT)
    assert handle.status == "running"
    assert handle.progress == {"done": 1}
    assert handle.cancel()
    cancelled.set()
    with pytest.raises(jw.JobCancelledError):
        handle.result(timeout=TIMEOUT)
    assert handle.status == "cancelled"


def test_an_unknown_task_name_fails_at_once_and_imports_nothing(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    # ``this`` prints the Zen of Python when imported: a visible side effect.
    assert "this" not in sys.modules
    job = mq.create_job(jw.new_job("fn:this.main", {"args": [], "kwargs": {}}, max_retries=3))
    [outcome] = run_pending(jw.TaskWorker(mq, registry=registry), fail_fast=False)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, jw.UnknownTaskError)
    assert outcome.error.name == "this.main"
    with pytest.raises(jw.JobFailedError, match=r"no task 'this\.main' is defined in this process"):
        jw.JobHandle(job.metadata.id, queue=mq).result(timeout=0)
    assert "this" not in sys.modules


def test_a_worker_given_tasks_takes_only_theirs_beside_class_workers(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="mine", registry=registry)
    def mine() -> str:
        return "mine"

    @jw.task(name="theirs", registry=registry)
    def theirs() -> str:
        return "theirs"

    class Generation(jw.JobWorker):
        def get_worker_name(self) -> str:
            return "Generation"

        def can_process_job(self, job: jw.AnyJob) -> bool:
            return job.metadata.type == "generation"

        def execute_job(self, job: jw.AnyJob) -> str:
            return "generated"

    a, b = mine.enqueue_on(mq), theirs.enqueue_on(mq)
    c = mq.create_job(jw.new_job("generation", {}))
    assert [o.job.metadata.id for o in run_pending(jw.TaskWorker(mq, [mine]))] == [a.id]
    assert b.status == "pending"
    assert [o.job.metadata.id for o in run_pending(Generation(mq))] == [c.metadata.id]
    assert [o.job.metadata.id for o in run_pending(jw.TaskWorker(mq, registry=registry))] == [b.id]
    assert (a.result(), b.result()) == ("mine", "theirs")
    with pytest.raises(TypeError, match="not one task"):
        jw.TaskWorker(mq, mine)  # type: ignore[arg-type]


def test_a_task_job_with_malformed_params_fails_at_once(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="add", registry=registry)
    def add(a: int, b: int) -> int:
        return a + b

    for params in (
        [1, 2],
        {"args": [1, 2]},
        {"args": "12", "kwargs": {}},
        {"args": [1]} | {"kwargs": {"zz": 1}},
    ):
        mq.create_job(jw.new_job("fn:add", params, max_retries=3))
    outcomes = run_pending(jw.TaskWorker(mq, [add]), fail_fast=False)
    assert [o.status for o in outcomes][:3] == ["failed"] * 3
    assert all("task add: params must be" in o.job.error for o in outcomes[:3])  # type: ignore[union-attr]
    # Arguments that do not fit the function: a TypeError of the call, retried like any error.
    assert outcomes[3].status == "retry"


def test_calling_a_task_runs_the_function_here(
    registry: jw.TaskRegistry[jw.Task[Any, Any]],
) -> None:
    @jw.task(name="double", registry=registry)
    def double(n: int) -> int:
        return 2 * n

    @jw.task(name="where", takes_context=True, registry=registry)
    def where(context: jw.TaskContext) -> tuple[str | None, bool]:
        context.report_progress(1)
        return context.job_id, context.is_cancelled()

    assert double(4) == 8
    assert where() == (None, False)
    assert double.__name__ == "double" and double.name == "double"


def test_takes_context_needs_a_first_positional_parameter(
    registry: jw.TaskRegistry[jw.Task[Any, Any]],
) -> None:
    def no_params() -> None:
        pass

    with pytest.raises(TypeError, match="first parameter must take the TaskContext"):
        jw.task(takes_context=True, registry=registry)(no_params)  # type: ignore[arg-type]


# -- the registry --------------------------------------------------------------------


def test_a_name_is_held_by_one_function(registry: jw.TaskRegistry[jw.Task[Any, Any]]) -> None:
    @jw.task(name="send", registry=registry)
    def send() -> None:
        pass

    def other() -> None:
        pass

    with pytest.raises(ValueError, match="task name 'send' is already used by"):
        jw.task(name="send", registry=registry)(other)
    assert registry.get("send") is send
    # The same function defined again (a module reloaded) takes its name back.
    again = jw.task(name="send", registry=registry)(send.function)
    assert registry.get("send") is again
    assert registry.names() == ["send"] and len(registry) == 1 and "send" in registry
    assert registry.get(3) is None and 3 not in registry
    with pytest.raises(jw.UnknownTaskError) as unknown:
        registry.require("nope")
    assert isinstance(unknown.value, jw.PermanentJobError)
    assert isinstance(unknown.value, LookupError)


def test_the_default_name_is_the_module_path() -> None:
    @jw.task
    def default_named(n: int) -> int:
        return n

    assert default_named.name == f"{__name__}.{default_named.__qualname__}"
    assert jw.tasks.default_registry.get(default_named.name) is default_named


# -- eager runs ----------------------------------------------------------------------


def test_run_eagerly_makes_the_round_trip_a_queue_makes(
    registry: jw.TaskRegistry[jw.Task[Any, Any]],
) -> None:
    seen: list[Any] = []

    @jw.task(name="echo", registry=registry)
    def echo(value: Any) -> Any:
        seen.append(value)
        return value

    @jw.task(name="widen", registry=registry)
    def widen(span: Span) -> Span:
        return Span(span.start, span.days + 1)

    assert echo.run_eagerly((1, "a")) == [1, "a"]  # a tuple comes back a list, as stored
    assert seen == [[1, "a"]]
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert widen.run_eagerly(Span(start, 1)) == Span(start, 2)


def test_run_eagerly_refuses_what_the_queue_refuses(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    ran: list[Any] = []

    @jw.task(name="keep", registry=registry)
    def keep(value: Any) -> None:
        ran.append(value)

    @jw.task(name="make", registry=registry)
    def make() -> Any:
        return {1: "a", "1": "b"}

    refused: list[Any] = [object(), {1: "a", "1": "b"}, "x" * (2 * 1024 * 1024)]
    for value in refused:
        with pytest.raises(jw.InvalidJobError) as queued:
            keep.enqueue_on(mq, value)
        with pytest.raises(type(queued.value)):
            keep.run_eagerly(value)
    with pytest.raises(TypeError, match="task keep"):
        keep.run_eagerly(1, 2)  # type: ignore[call-arg]
    assert ran == [] and mq.list_jobs() == []
    with pytest.raises(jw.SerializationError):
        make.run_eagerly()


def test_run_eagerly_raises_the_error_result_would(
    registry: jw.TaskRegistry[jw.Task[Any, Any]],
) -> None:
    @jw.task(name="boom", registry=registry)
    def boom() -> None:
        raise ValueError("no")

    with pytest.raises(jw.JobFailedError) as failed:
        boom.run_eagerly()
    assert failed.value.error_type == "ValueError"
    assert isinstance(failed.value.__cause__, ValueError)


def test_stored_values_that_do_not_fit_the_annotations_give_clear_errors(
    mq: jw.MemoryQueue, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="widen", max_retries=3, registry=registry)
    def widen(span: Span) -> Span:
        return span

    # Written by another program: the argument is no Span. Failed at once, not retried.
    job = mq.create_job(jw.new_job("fn:widen", {"args": [{"days": "x"}], "kwargs": {}}))
    [outcome] = run_pending(jw.TaskWorker(mq, [widen]), fail_fast=False)
    assert outcome.status == "failed"
    assert "task widen: stored arguments do not fit its parameters" in str(outcome.error)
    assert outcome.job.metadata.retry_count == 0
    # A stored result that is no Span: result() says so, typed.
    done = mq.create_job(jw.new_job("other", {}))
    running = mq.poll_next_pending_job(types=["other"])
    assert running is not None and running.metadata.id == done.metadata.id
    mq._complete_job(running, {"start": "not a time", "days": 1})
    with pytest.raises(jw.SerializationError, match="stored result does not fit"):
        widen.handle(done.metadata.id, queue=mq).result(timeout=0)
    assert job.metadata.id != done.metadata.id


def test_using_gives_the_next_jobs_options(
    queue: jw.MemoryQueue, clock: Any, registry: jw.TaskRegistry[jw.Task[Any, Any]]
) -> None:
    @jw.task(name="add", priority=1, registry=registry)
    def add(a: int, b: int) -> int:
        return a + b

    later = add.using(delay=60, priority=9, id="job-1", user_id="ada").enqueue_on(queue, 1, 2)
    job = queue.get_job("job-1")
    assert job is not None and later.id == "job-1"
    assert job.metadata.run_after == clock.now() + dt.timedelta(seconds=60)
    assert (job.metadata.priority, job.metadata.user_id) == (9, "ada")
    with pytest.raises(jw.DuplicateJobError):
        add.using(id="job-1").enqueue_on(queue, 1, 2)
    with pytest.raises(TypeError, match="task add"):
        add.using(priority=2).enqueue_on(queue, 1)  # type: ignore[call-arg]
    worker = jw.TaskWorker(queue, [add])
    assert run_pending(worker) == []  # not due yet
    clock.advance(60)
    assert [o.status for o in run_pending(worker)] == ["complete"]
    assert later.result(timeout=0) == 3
    when = clock.now() + dt.timedelta(hours=1)
    job = queue.get_job(add.using(run_after=when).enqueue_on(queue, 1, 1).id)
    assert job is not None and job.metadata.run_after == when and job.metadata.priority == 1
    for bad in ({"delay": -1}, {"delay": float("inf")}, {"delay": 1, "run_after": when}):
        with pytest.raises(ValueError):
            add.using(**bad)
    assert len(queue.list_jobs()) == 2
