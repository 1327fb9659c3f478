"""The bounds of a job's attempt history, and its stored form."""

from __future__ import annotations

import datetime as dt

import pytest

import jobworker as jw
from jobworker import attempts as a
from jobworker import model as m

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # broad: any exception, as the worker sees it
        return caught


def test_an_error_keeps_class_path_message_and_traceback_apart() -> None:
    error = jw.AttemptError.from_exception(raised(ValueError("one\n\ntwo")))
    assert error.class_path == "builtins.ValueError"
    assert error.message == "one\n\ntwo"
    assert error.traceback.endswith("ValueError: one\n\ntwo\n")
    assert error.describe() == "ValueError: one\n\ntwo"


def test_a_long_message_and_traceback_are_cut_to_their_documented_bounds() -> None:
    error = jw.AttemptError.from_exception(raised(RuntimeError("x" * 50_000 + "END")))
    assert len(error.message) == a.MAX_MESSAGE_LENGTH
    assert error.message.endswith("...")
    # The traceback keeps its end: the frames and the line nearest the error.
    assert len(error.traceback) == a.MAX_TRACEBACK_LENGTH
    assert error.traceback.startswith("...") and error.traceback.endswith("END\n")


def test_an_exception_whose_str_raises_is_still_recorded() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = jw.AttemptError.from_exception(raised(Broken()))
    assert error.class_path.endswith("Broken")
    assert "str() raised RuntimeError" in error.message


def running(
    history: tuple[jw.Attempt, ...] = (), retry_count: int = 0
) -> m.RunningJob[dict[str, int], None]:
    job = m.new_job("t", {}, max_retries=1000, created=EPOCH)
    meta = m.JobMetadata(
        id=job.metadata.id, type="t", user_id=m.UserId(""), created=EPOCH,
        retry_count=retry_count, max_retries=1000,
    )  # fmt: skip
    pending = m.PendingJob(meta, {}, history)
    return m.start(pending, claim=m.new_claim("w"), now=EPOCH)


def test_a_job_keeps_its_first_and_latest_attempts() -> None:
    job = running()
    for n in range(1, 31):
        retried = m.fail_or_retry(job, f"E: {n}", now=EPOCH, delay=0)
        assert isinstance(retried, m.PendingJob)
        job = m.start(retried, claim=m.new_claim("w"), now=EPOCH)
    numbers = [attempt.number for attempt in job.attempts]
    assert len(numbers) == a.MAX_ATTEMPTS_KEPT == 20
    assert numbers == [1, *range(12, 31)]


def test_a_history_round_trips_through_its_stored_form() -> None:
    error = jw.AttemptError("mod.Err", "line\n\nline \u00e9", "Traceback ...\n")
    history = (
        jw.Attempt(1, "w1", EPOCH, EPOCH + dt.timedelta(seconds=1), error),
        jw.Attempt(2, "w2", EPOCH, EPOCH + dt.timedelta(microseconds=7)),
    )
    text = a.attempts_to_json(history)
    assert text is not None
    assert a.attempts_from_json(text) == history
    assert a.attempts_to_json(()) is None and a.attempts_from_json(None) == ()


@pytest.mark.parametrize(
    "text",
    ['{"a": 1}', "[1]", '[{"number": 1}]', "not json",
     '[{"number": 1, "worker": "w", "started_at": "2026-01-01T00:00:00", '
     '"ended_at": "2026-01-01T00:00:00", "error": null}]'],
)  # fmt: skip
def test_a_malformed_stored_history_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        a.attempts_from_json(text)


def test_apply_update_keeps_the_whole_error_a_worker_submits() -> None:
    job = running()
    error = jw.AttemptError.from_exception(raised(KeyError("k")))
    submitted = m.fail(job, error, now=EPOCH)
    stored = m.apply_update(job, submitted, "running", now=EPOCH, claim=job.claim)
    assert isinstance(stored, m.FailedJob)
    assert stored.attempts == submitted.attempts and stored.attempts[-1].error == error
