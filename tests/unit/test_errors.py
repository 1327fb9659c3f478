"""The exception tree: one root, builtin mixins where callers catch them, data on attributes."""

from __future__ import annotations

import ast
import inspect
import math

import pytest

import jobworker as jw
from jobworker import errors

ALL_ERRORS = [getattr(errors, name) for name in errors.__all__ if name.endswith("Error")]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_derives_from_the_root(cls: type[BaseException]) -> None:
    assert issubclass(cls, errors.JobworkerError)
    assert issubclass(cls, Exception)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_is_reexported_at_the_top_level(cls: type[BaseException]) -> None:
    assert getattr(jw, cls.__name__) is cls
    assert cls.__name__ in jw.__all__


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.JobNotFoundError, LookupError),
        (errors.InvalidJobError, ValueError),
        (errors.SerializationError, ValueError),
        (errors.PayloadTooLargeError, ValueError),
        (errors.UnknownJobTypeError, ValueError),
        (errors.DuplicateJobError, ValueError),
        (errors.InvalidTransitionError, ValueError),
        (errors.QueueClosedError, RuntimeError),
        (errors.QueueNotInitializedError, RuntimeError),
        (errors.WorkerStateError, RuntimeError),
        (errors.WaitTimeoutError, TimeoutError),
    ],
    ids=lambda value: value.__name__,
)
def test_builtin_mixins(cls: type[BaseException], builtin: type[BaseException]) -> None:
    assert issubclass(cls, builtin)


@pytest.mark.parametrize(
    "cls",
    [errors.SerializationError, errors.PayloadTooLargeError, errors.UnknownJobTypeError],
    ids=lambda cls: cls.__name__,
)
def test_value_problems_are_invalid_job_errors(cls: type[BaseException]) -> None:
    assert issubclass(cls, errors.InvalidJobError)


def test_lease_lost_is_a_stale_job_error() -> None:
    assert issubclass(errors.LeaseLostError, errors.StaleJobError)


def test_job_not_found_is_caught_as_lookup_error() -> None:
    with pytest.raises(LookupError) as info:
        raise errors.JobNotFoundError("job-9")
    assert info.value.job_id == "job-9"
    assert "job-9" in str(info.value)


def test_wait_timeout_is_caught_as_timeout_error() -> None:
    with pytest.raises(TimeoutError) as info:
        raise errors.WaitTimeoutError("job-1", 2.5)
    assert info.value.job_id == "job-1"
    assert "job-1" in str(info.value)
    assert "2.5" in str(info.value)


def test_duplicate_job_error_carries_the_id() -> None:
    exc = errors.DuplicateJobError("job-1")
    assert exc.job_id == "job-1"
    assert "job-1" in str(exc)


def test_invalid_transition_error_carries_both_statuses() -> None:
    exc = errors.InvalidTransitionError("complete", "running")
    assert (exc.old_status, exc.new_status) == ("complete", "running")
    assert "'complete'" in str(exc)
    assert "'running'" in str(exc)


def test_invalid_transition_error_appends_the_reason() -> None:
    plain = errors.InvalidTransitionError("pending", "running")
    with_reason = errors.InvalidTransitionError("pending", "running", "use the poll")
    assert str(with_reason).startswith(str(plain))
    assert str(with_reason).endswith("use the poll")


def test_stale_job_error_carries_expected_and_actual() -> None:
    exc = errors.StaleJobError("job-1", "running", "cancelled", "someone cancelled it")
    assert (exc.job_id, exc.expected, exc.actual) == ("job-1", "running", "cancelled")
    assert "someone cancelled it" in str(exc)


def test_lease_lost_error_carries_the_same_attributes() -> None:
    exc = errors.LeaseLostError("job-1", "running", "running", "the claim is no longer current")
    assert (exc.job_id, exc.expected, exc.actual) == ("job-1", "running", "running")


def test_payload_too_large_error_carries_size_and_limit() -> None:
    exc = errors.PayloadTooLargeError("too big", size=2049, limit=2048)
    assert (exc.size, exc.limit) == (2049, 2048)
    assert str(exc) == "too big"


def test_unknown_job_type_error_carries_the_type() -> None:
    exc = errors.UnknownJobTypeError("mystery")
    assert exc.job_type == "mystery"
    assert "'mystery'" in str(exc)


def test_retry_job_error_keeps_its_delay() -> None:
    assert errors.RetryJobError(delay=2.5).delay == 2.5
    assert errors.RetryJobError("later", delay=0).delay == 0
    assert str(errors.RetryJobError("later", delay=1)) == "later"


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, -math.inf])
def test_retry_job_error_refuses_a_negative_or_nan_delay(delay: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        errors.RetryJobError(delay=delay)


def test_retry_job_error_requires_a_delay_keyword() -> None:
    with pytest.raises(TypeError):
        errors.RetryJobError("now", 1.0)  # type: ignore[misc]


def test_errors_module_imports_nothing_from_jobworker() -> None:
    tree = ast.parse(inspect.getsource(errors))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r}"
            assert not (node.module or "").startswith("jobworker")
        elif isinstance(node, ast.Import):
            assert all(not alias.name.startswith("jobworker") for alias in node.names)
