"""The model: metadata validation, the transition functions and apply_update."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobworker import model as m
from jobworker.errors import (
    InvalidJobError,
    InvalidTransitionError,
    LeaseLostError,
    StaleJobError,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(seconds=10)
T2 = T0 + dt.timedelta(seconds=20)
T3 = T0 + dt.timedelta(seconds=30)
NAIVE = dt.datetime(2026, 1, 1)
CLAIM = m.Claim(token="token-1", worker="worker-1")
OTHER_CLAIM = m.Claim(token="token-2", worker="worker-1")

#: DESIGN.md section 3, minus pending -> running, which only a poll may do.
UPDATE_ALLOWED = frozenset(
    {
        ("pending", "cancelled"),
        ("running", "running"),
        ("running", "complete"),
        ("running", "pending"),
        ("running", "failed"),
        ("running", "cancelled"),
        ("failed", "pending"),  # requeue: an operator retries a failed job
    }
)


def metadata_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "job-1",
        "type": "generation",
        "user_id": "user@example.com",
        "created": T0,
        "retry_count": 0,
        "max_retries": 3,
    }
    fields.update(overrides)
    return fields


def make_pending(**overrides: Any) -> m.PendingJob[Any]:
    return m.PendingJob(metadata=m.JobMetadata(**metadata_fields(**overrides)), params={"n": 1})


def make_running(claim: m.Claim = CLAIM, **overrides: Any) -> m.RunningJob[Any, Any]:
    return m.start(make_pending(**overrides), claim=claim, now=T1)


def job_in(status: str, **overrides: Any) -> m.AnyJob:
    """A job in *status*, reached through the transition functions, claimed with CLAIM."""
    pending = make_pending(**overrides)
    if status == "pending":
        return pending
    running = m.start(pending, claim=CLAIM, now=T1)
    if status == "running":
        return running
    if status == "complete":
        return m.complete(running, {"ok": True}, now=T2)
    if status == "failed":
        return m.fail(running, "Boom: it broke", now=T2)
    assert status == "cancelled"
    return m.cancel(running, now=T2)


# -- JobMetadata ----------------------------------------------------------------------------


def test_valid_metadata_keeps_its_fields() -> None:
    meta = m.JobMetadata(**metadata_fields(priority=-5, run_after=T1))
    assert meta.id == "job-1"
    assert meta.created == T0
    assert (meta.retry_count, meta.max_retries, meta.priority) == (0, 3, -5)
    assert meta.run_after == T1


def test_metadata_defaults() -> None:
    meta = m.JobMetadata(id=m.job_id("a"), type="t", user_id=m.user_id(""), created=T0)
    assert (meta.retry_count, meta.max_retries, meta.priority, meta.run_after) == (0, 3, 0, None)


def test_retry_count_may_equal_max_retries() -> None:
    meta = m.JobMetadata(**metadata_fields(retry_count=3, max_retries=3))
    assert meta.retry_count == meta.max_retries


def test_metadata_accepts_a_non_utc_aware_datetime() -> None:
    tz = dt.timezone(dt.timedelta(hours=5))
    meta = m.JobMetadata(**metadata_fields(created=T0.astimezone(tz)))
    assert meta.created == T0


BAD_METADATA = [
    pytest.param({"id": ""}, id="empty-id"),
    pytest.param({"id": 17}, id="int-id"),
    pytest.param({"type": 1}, id="int-type"),
    pytest.param({"type": ""}, id="empty-type"),
    pytest.param({"type": None}, id="none-type"),
    pytest.param({"user_id": None}, id="none-user"),
    pytest.param({"created": NAIVE}, id="naive-created"),
    pytest.param({"created": "2026-01-01T00:00:00+00:00"}, id="str-created"),
    pytest.param({"retry_count": -1}, id="negative-retry-count"),
    pytest.param({"max_retries": -1, "retry_count": 0}, id="negative-max-retries"),
    pytest.param({"retry_count": 4, "max_retries": 3}, id="retry-count-over-max"),
    pytest.param({"retry_count": True}, id="bool-retry-count"),
    pytest.param({"max_retries": True}, id="bool-max-retries"),
    pytest.param({"retry_count": 1.0}, id="float-retry-count"),
    pytest.param({"max_retries": "3"}, id="str-max-retries"),
    pytest.param({"priority": True}, id="bool-priority"),
    pytest.param({"priority": 1.5}, id="float-priority"),
    pytest.param({"run_after": NAIVE}, id="naive-run-after"),
    pytest.param({"run_after": 12.0}, id="float-run-after"),
]


@pytest.mark.parametrize("overrides", BAD_METADATA)
def test_metadata_constructor_refuses(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidJobError):
        m.JobMetadata(**metadata_fields(**overrides))


@pytest.mark.parametrize("overrides", BAD_METADATA)
def test_validate_job_catches_metadata_built_without_validators(
    overrides: dict[str, Any],
) -> None:
    with attrs.validators.disabled():
        meta = m.JobMetadata(**metadata_fields(**overrides))
    job = m.PendingJob(metadata=meta, params={})
    with pytest.raises(InvalidJobError):
        m.validate_job(job)


def test_evolve_revalidates_metadata() -> None:
    meta = m.JobMetadata(**metadata_fields())
    with pytest.raises(InvalidJobError):
        attrs.evolve(meta, retry_count=-1)
    with pytest.raises(InvalidJobError):
        attrs.evolve(meta, max_retries=0, retry_count=1)


def test_invalid_job_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        m.JobMetadata(**metadata_fields(id=""))


def test_job_id_and_user_id_helpers() -> None:
    assert m.job_id("job-123") == "job-123"
    assert m.user_id("") == ""
    with pytest.raises(InvalidJobError):
        m.job_id("")
    with pytest.raises(InvalidJobError):
        m.job_id(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError):
        m.user_id(None)  # type: ignore[arg-type]


# -- validate_job ---------------------------------------------------------------------


@pytest.mark.parametrize("status", m.STATUSES)
def test_validate_job_returns_a_valid_job(status: str) -> None:
    job = job_in(status)
    assert m.validate_job(job) is job


@pytest.mark.parametrize("value", [None, {"status": "pending"}, "job-1", object()])
def test_validate_job_refuses_a_non_job(value: object) -> None:
    with pytest.raises(InvalidJobError):
        m.validate_job(value)


def test_validate_job_refuses_metadata_of_the_wrong_type() -> None:
    job = m.PendingJob(metadata=metadata_fields(), params={})  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match="JobMetadata"):
        m.validate_job(job)


# -- statuses and type guards --------------------------------------------------------------


def test_statuses() -> None:
    assert m.STATUSES == ("pending", "running", "complete", "failed", "cancelled")
    assert frozenset({"complete", "failed", "cancelled"}) == m.TERMINAL_STATUSES


GUARDS = {
    "pending": m.is_pending_job,
    "running": m.is_running_job,
    "complete": m.is_complete_job,
    "failed": m.is_failed_job,
    "cancelled": m.is_cancelled_job,
}


@pytest.mark.parametrize("status", m.STATUSES)
def test_exactly_one_type_guard_matches(status: str) -> None:
    job = job_in(status)
    assert job.status == status
    assert {name for name, guard in GUARDS.items() if guard(job)} == {status}


@pytest.mark.parametrize("status", m.STATUSES)
def test_is_terminal(status: str) -> None:
    assert m.is_terminal(job_in(status)) == (status in {"complete", "failed", "cancelled"})


def test_status_is_not_an_init_argument() -> None:
    with pytest.raises(TypeError):
        m.PendingJob(metadata=make_pending().metadata, params={}, status="running")  # type: ignore[call-arg]


# -- transitions ------------------------------------------------------------------------


def test_start() -> None:
    pending = make_pending()
    running = m.start(pending, claim=CLAIM, now=T1)
    assert isinstance(running, m.RunningJob)
    assert running.status == "running"
    assert running.metadata == pending.metadata
    assert running.params == pending.params
    assert running.started_at == T1
    assert running.claim == CLAIM
    assert running.progress is None
    assert pending.status == "pending"


def test_complete_keeps_started_at() -> None:
    running = make_running()
    done = m.complete(running, {"resource_name": "x"}, now=T2)
    assert isinstance(done, m.CompleteJob)
    assert done.result == {"resource_name": "x"}
    assert (done.started_at, done.completed_at) == (T1, T2)
    assert (done.metadata, done.params) == (running.metadata, running.params)


def test_fail_keeps_started_at_and_error() -> None:
    running = make_running()
    failed = m.fail(running, "ValueError: bad", now=T2)
    assert isinstance(failed, m.FailedJob)
    assert failed.error == "ValueError: bad"
    assert (failed.started_at, failed.completed_at) == (T1, T2)
    assert failed.metadata == running.metadata


@pytest.mark.parametrize(("retry_count", "max_retries"), [(0, 1), (0, 3), (2, 3), (9, 10)])
def test_fail_or_retry_retries_below_the_limit(retry_count: int, max_retries: int) -> None:
    running = make_running(retry_count=retry_count, max_retries=max_retries)
    retried = m.fail_or_retry(running, "E: x", now=T2, delay=0)
    assert isinstance(retried, m.PendingJob)
    assert retried.metadata.retry_count == retry_count + 1
    assert retried.metadata.max_retries == max_retries
    assert retried.metadata.run_after is None
    assert retried.params == running.params
    assert attrs.evolve(retried.metadata, retry_count=retry_count) == running.metadata


@pytest.mark.parametrize(("retry_count", "max_retries"), [(0, 0), (1, 1), (3, 3)])
def test_fail_or_retry_fails_at_the_limit(retry_count: int, max_retries: int) -> None:
    running = make_running(retry_count=retry_count, max_retries=max_retries)
    failed = m.fail_or_retry(running, "E: x", now=T2, delay=5)
    assert isinstance(failed, m.FailedJob)
    assert failed.error == "E: x"
    assert failed.started_at == T1
    assert failed.completed_at == T2
    assert failed.metadata.retry_count == retry_count


def test_fail_or_retry_with_a_delay_sets_run_after() -> None:
    running = make_running()
    retried = m.fail_or_retry(running, "E: x", now=T2, delay=2.5)
    assert retried.metadata.run_after == T2 + dt.timedelta(seconds=2.5)


def test_fail_or_retry_without_a_delay_clears_an_old_run_after() -> None:
    running = make_running(run_after=T0)
    retried = m.fail_or_retry(running, "E: x", now=T2, delay=0)
    assert retried.metadata.run_after is None


@given(max_retries=st.integers(min_value=0, max_value=30))
def test_a_job_runs_at_most_one_plus_max_retries_times(max_retries: int) -> None:
    job: m.AnyJob = make_pending(max_retries=max_retries)
    attempts = 0
    while isinstance(job, m.PendingJob):
        attempts += 1
        running = m.start(job, claim=m.new_claim("w"), now=T1)
        job = m.fail_or_retry(running, "E: x", now=T2, delay=1)
    assert isinstance(job, m.FailedJob)
    assert attempts == 1 + max_retries
    assert job.metadata.retry_count == max_retries


def test_release_keeps_retry_count() -> None:
    running = make_running(retry_count=2, max_retries=3, run_after=T0)
    released = m.release(running)
    assert isinstance(released, m.PendingJob)
    assert released.metadata == running.metadata
    assert released.metadata.retry_count == 2
    assert released.params == running.params


def test_cancel_pending_has_no_started_at() -> None:
    cancelled = m.cancel(make_pending(), now=T2)
    assert isinstance(cancelled, m.CancelledJob)
    assert cancelled.started_at is None
    assert cancelled.completed_at == T2


def test_cancel_running_keeps_started_at() -> None:
    cancelled = m.cancel(make_running(), now=T2)
    assert cancelled.started_at == T1
    assert cancelled.completed_at == T2


@pytest.mark.parametrize("status", ["complete", "failed", "cancelled"])
def test_cancel_of_a_terminal_job_raises(status: str) -> None:
    with pytest.raises(InvalidTransitionError) as info:
        m.cancel(job_in(status), now=T3)  # type: ignore[arg-type]
    assert (info.value.old_status, info.value.new_status) == (status, "cancelled")


def test_new_claim_tokens_are_unique() -> None:
    claims = [m.new_claim("w") for _ in range(50)]
    assert len({claim.token for claim in claims}) == 50
    assert {claim.worker for claim in claims} == {"w"}


# -- apply_update ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    list(itertools.product(m.STATUSES, m.STATUSES)),
    ids=lambda status: status,
)
def test_apply_update_allows_exactly_the_designed_moves(old: str, new: str) -> None:
    stored = job_in(old)
    submitted = job_in(new)
    if (old, new) in UPDATE_ALLOWED:
        result = m.apply_update(stored, submitted, old, now=T3, claim=CLAIM)
        assert result.status == new
        assert result.metadata.id == stored.metadata.id
    else:
        with pytest.raises(InvalidTransitionError) as info:
            m.apply_update(stored, submitted, old, now=T3, claim=CLAIM)
        assert (info.value.old_status, info.value.new_status) == (old, new)
    assert stored == job_in(old)


def test_pending_to_running_points_to_the_poll() -> None:
    with pytest.raises(InvalidTransitionError, match="poll_next_pending_job"):
        m.apply_update(job_in("pending"), job_in("running"), "pending", now=T3, claim=CLAIM)


def test_stale_old_status_raises_and_changes_nothing() -> None:
    stored = job_in("running")
    with pytest.raises(StaleJobError) as info:
        m.apply_update(stored, job_in("complete"), "pending", now=T3, claim=CLAIM)
    assert not isinstance(info.value, LeaseLostError)
    assert (info.value.job_id, info.value.expected, info.value.actual) == (
        "job-1",
        "pending",
        "running",
    )
    assert stored == job_in("running")


def test_staleness_is_checked_before_the_transition() -> None:
    # The caller's view is out of date: that, not the move it asked for, is the error.
    with pytest.raises(StaleJobError):
        m.apply_update(job_in("complete"), job_in("complete"), "running", now=T3, claim=CLAIM)


@pytest.mark.parametrize("new", ["running", "complete", "failed", "pending", "cancelled"])
def test_wrong_claim_raises_lease_lost(new: str) -> None:
    stored = job_in("running")
    submitted = job_in(new)
    if isinstance(submitted, m.RunningJob):
        submitted = attrs.evolve(submitted, claim=OTHER_CLAIM)
    with pytest.raises(LeaseLostError) as info:
        m.apply_update(stored, submitted, "running", now=T3, claim=OTHER_CLAIM)
    assert info.value.job_id == "job-1"


def test_claim_is_compared_by_token_not_worker() -> None:
    stolen = m.Claim(token="token-x", worker=CLAIM.worker)
    with pytest.raises(LeaseLostError):
        m.apply_update(job_in("running"), job_in("complete"), "running", now=T3, claim=stolen)


@pytest.mark.parametrize("new", ["complete", "failed", "pending"])
def test_write_to_a_running_job_without_a_claim_is_refused(new: str) -> None:
    with pytest.raises(InvalidJobError, match="claim"):
        m.apply_update(job_in("running"), job_in(new), "running", now=T3)


def test_running_to_running_takes_only_progress() -> None:
    stored = job_in("running")
    assert isinstance(stored, m.RunningJob)
    tampered = attrs.evolve(
        stored,
        progress={"pct": 50},
        params={"evil": True},
        started_at=T0,
        metadata=attrs.evolve(stored.metadata, max_retries=99, retry_count=7, type="other"),
    )
    result = m.apply_update(stored, tampered, "running", now=T3)
    assert result == attrs.evolve(stored, progress={"pct": 50})


def test_running_to_complete_derives_from_the_stored_job() -> None:
    stored = job_in("running")
    assert isinstance(stored, m.RunningJob)
    submitted = m.CompleteJob(
        metadata=attrs.evolve(stored.metadata, max_retries=0),
        params={"evil": True},
        started_at=T0,
        completed_at=T0,
        result={"answer": 42},
    )
    result = m.apply_update(stored, submitted, "running", now=T3, claim=CLAIM)
    assert result == m.complete(stored, {"answer": 42}, now=T3)


def test_running_to_failed_takes_the_error() -> None:
    stored = job_in("running")
    assert isinstance(stored, m.RunningJob)
    submitted = m.fail(attrs.evolve(stored, started_at=T0), "Oops: bad", now=T0)
    result = m.apply_update(stored, submitted, "running", now=T3, claim=CLAIM)
    assert result == m.fail(stored, "Oops: bad", now=T3)


def test_running_to_pending_counts_a_retry_from_the_stored_job() -> None:
    stored = job_in("running", retry_count=1)
    assert isinstance(stored, m.RunningJob)
    # The submitted job already counted the retry; the stored count is what matters.
    submitted = m.fail_or_retry(stored, "E: x", now=T2, delay=60)
    assert isinstance(submitted, m.PendingJob)
    result = m.apply_update(stored, submitted, "running", now=T3, claim=CLAIM)
    assert isinstance(result, m.PendingJob)
    assert result.metadata.retry_count == 2
    assert result.metadata.run_after == T2 + dt.timedelta(seconds=60)
    assert result.params == stored.params


def _retry_past_the_limit(job: m.RunningJob[Any, Any]) -> m.PendingJob[Any]:
    """A pending job that asks for one more retry than *job* has left."""
    count = job.metadata.retry_count + 1
    meta = attrs.evolve(job.metadata, retry_count=count, max_retries=count)
    return m.PendingJob(metadata=meta, params=job.params)


def test_running_to_pending_refused_when_no_retry_is_left() -> None:
    stored = job_in("running", retry_count=3, max_retries=3)
    assert isinstance(stored, m.RunningJob)
    with pytest.raises(InvalidTransitionError, match="no retry left"):
        m.apply_update(stored, _retry_past_the_limit(stored), "running", now=T3, claim=CLAIM)


@pytest.mark.parametrize(("retry_count", "max_retries"), [(0, 3), (2, 3), (3, 3), (0, 0)])
def test_running_to_pending_with_an_unchanged_count_is_a_release(
    retry_count: int, max_retries: int
) -> None:
    # release() hands an attempt back unrun (the worker was interrupted): not a failure,
    # so it neither counts a retry nor needs one left.
    stored = job_in("running", retry_count=retry_count, max_retries=max_retries)
    assert isinstance(stored, m.RunningJob)
    result = m.apply_update(stored, m.release(stored), "running", now=T3, claim=CLAIM)
    assert result == m.release(stored)
    assert result.metadata.retry_count == retry_count


def test_pending_to_pending_is_refused() -> None:
    with pytest.raises(InvalidTransitionError):
        m.apply_update(job_in("pending"), job_in("pending"), "pending", now=T3)


def test_cancel_of_a_running_job_needs_no_claim() -> None:
    result = m.apply_update(job_in("running"), job_in("cancelled"), "running", now=T3)
    assert isinstance(result, m.CancelledJob)
    assert result.started_at == T1
    assert result.completed_at == T3


def test_cancel_of_a_pending_job() -> None:
    result = m.apply_update(job_in("pending"), job_in("cancelled"), "pending", now=T3)
    assert result == m.cancel(job_in("pending"), now=T3)  # type: ignore[arg-type]
    assert result.started_at is None


# -- describe_error and new_job -------------------------------------------------------------


def test_describe_error_names_the_type() -> None:
    assert m.describe_error(ValueError("boom")) == "ValueError: boom"
    assert m.describe_error(KeyError("k")) == "KeyError: 'k'"


def test_describe_error_caps_its_length() -> None:
    prefix = "ValueError: "
    fits = prefix + "x" * (m.MAX_ERROR_LENGTH - len(prefix))
    assert m.describe_error(ValueError(fits[len(prefix) :])) == fits
    long = m.describe_error(ValueError("y" * (m.MAX_ERROR_LENGTH * 5)))
    assert len(long) == m.MAX_ERROR_LENGTH
    assert long.startswith("ValueError: yyy")
    assert long.endswith("...")


def test_new_job_defaults() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    job = m.new_job("generation", {"title": "T"})
    after = dt.datetime.now(dt.timezone.utc)
    assert isinstance(job, m.PendingJob)
    assert job.params == {"title": "T"}
    meta = job.metadata
    assert meta.type == "generation"
    assert meta.id
    assert meta.user_id == ""
    assert before <= meta.created <= after
    assert meta.created.utcoffset() == dt.timedelta(0)
    assert (meta.retry_count, meta.max_retries, meta.priority, meta.run_after) == (0, 3, 0, None)


def test_new_job_ids_are_unique() -> None:
    assert len({m.new_job("t", None).metadata.id for _ in range(100)}) == 100


def test_new_job_takes_its_options() -> None:
    job = m.new_job(
        "t",
        [1],
        id="job-7",
        user_id="u",
        max_retries=0,
        priority=4,
        run_after=T2,
        created=T1,
    )
    meta = job.metadata
    assert (meta.id, meta.user_id, meta.max_retries, meta.priority) == ("job-7", "u", 0, 4)
    assert (meta.created, meta.run_after) == (T1, T2)


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"created": NAIVE}, {"id": ""}, {"run_after": NAIVE}],
)
def test_new_job_validates(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidJobError):
        m.new_job("t", {}, **options)


def test_new_job_refuses_an_empty_type() -> None:
    with pytest.raises(InvalidJobError):
        m.new_job("", {})


def test_claim_tokens_are_a_random_prefix_and_a_counter_from_one_made_anew_at_reset() -> None:
    import re

    from jobworker.model import _TokenSource

    source = _TokenSource()
    prefix = source.prefix
    assert re.fullmatch(r"[0-9a-f]{16}", prefix)  # 8 random bytes
    assert [source.next() for _ in range(3)] == [f"{prefix}-1", f"{prefix}-2", f"{prefix}-3"]
    source.reset()
    assert source.prefix != prefix
    assert re.fullmatch(r"[0-9a-f]{16}", source.prefix)
    assert source.next() == f"{source.prefix}-1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_its_own_token_prefix() -> None:
    import warnings

    from jobworker.model import _TokenSource

    source = _TokenSource()
    parent = source.next()
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: report its first token, then leave at once
        os.write(write, source.next().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    prefix, count = child.rsplit("-", 1)
    assert count == "1"  # a new counter, from one
    assert prefix != parent.rsplit("-", 1)[0]  # and a new prefix
    assert source.next() == f"{parent.rsplit('-', 1)[0]}-2"  # the parent goes on


def test_requeue_refusal_names_the_status_the_job_is_in() -> None:
    job = m.cancel(m.new_job("t", {}), now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(m.InvalidTransitionError) as info:
        m.requeue(job)  # type: ignore[arg-type]
    assert (info.value.old_status, info.value.new_status) == ("cancelled", "pending")
