"""RetryPolicy: the guide's 2^n backoff, a cap, jitter, and eager validation."""

from __future__ import annotations

import math
import random

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobworker.retry import RetryPolicy


class FixedRandom(random.Random):
    """A Random whose ``random()`` always returns *value*."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_default_delays_follow_the_guide() -> None:
    policy = RetryPolicy()
    # The guide: 2^retryCount * 1s.
    assert [policy.delay(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert all(isinstance(policy.delay(n), float) for n in range(4))


@given(st.integers(min_value=0, max_value=60))
def test_default_delay_is_two_to_the_retry_count_until_the_cap(retry_count: int) -> None:
    policy = RetryPolicy()
    assert policy.delay(retry_count) == min(policy.max_delay, 2.0**retry_count)


def test_base_and_factor_shape_the_curve() -> None:
    policy = RetryPolicy(base=0.5, factor=3.0)
    assert [policy.delay(n) for n in range(3)] == [0.5, 1.5, 4.5]


def test_factor_one_is_a_constant_delay() -> None:
    policy = RetryPolicy(base=7.0, factor=1.0)
    assert {policy.delay(n) for n in (0, 1, 10, 1000)} == {7.0}


def test_max_delay_caps_the_delay() -> None:
    policy = RetryPolicy(max_delay=5.0)
    assert policy.delay(2) == 4.0  # below the cap
    assert policy.delay(3) == 5.0  # 8 capped
    assert policy.delay(50) == 5.0


def test_default_cap_is_reached() -> None:
    policy = RetryPolicy()
    assert policy.delay(30) == policy.max_delay


@pytest.mark.parametrize("retry_count", [1024, 10_000, 10**6, 10**9])
def test_huge_retry_counts_do_not_overflow(retry_count: int) -> None:
    assert RetryPolicy().delay(retry_count) == RetryPolicy().max_delay
    assert RetryPolicy(max_delay=12.0).delay(retry_count) == 12.0
    jittered = RetryPolicy(max_delay=12.0, jitter=0.5).delay(retry_count, random.Random(1))
    assert 6.0 <= jittered <= 12.0
    assert math.isfinite(jittered)


def test_immediate_never_waits() -> None:
    policy = RetryPolicy.immediate()
    assert [policy.delay(n) for n in range(20)] == [0.0] * 20
    assert policy.delay(10**6) == 0.0


def test_jitter_on_a_zero_delay_stays_zero() -> None:
    policy = attrs.evolve(RetryPolicy.immediate(), jitter=1.0)
    assert policy.delay(3, FixedRandom(0.5)) == 0.0


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    retry_count=st.integers(min_value=0, max_value=40),
)
def test_jitter_stays_within_bounds(seed: int, jitter: float, retry_count: int) -> None:
    full = RetryPolicy().delay(retry_count)
    delay = RetryPolicy(jitter=jitter).delay(retry_count, random.Random(seed))
    assert (1 - jitter) * full - 1e-9 <= delay <= full


@given(seed=st.integers(min_value=0, max_value=2**32), retry_count=st.integers(0, 10))
def test_jitter_is_reproducible_with_a_seeded_random(seed: int, retry_count: int) -> None:
    policy = RetryPolicy(jitter=0.5)
    first = policy.delay(retry_count, random.Random(seed))
    second = policy.delay(retry_count, random.Random(seed))
    assert first == second


def test_jitter_spreads_delays() -> None:
    policy = RetryPolicy(jitter=0.5)
    delays = {policy.delay(3, random.Random(seed)) for seed in range(20)}
    assert len(delays) > 1
    assert min(delays) < 8.0
    assert all(4.0 <= delay <= 8.0 for delay in delays)


def test_jitter_draws_from_the_given_random() -> None:
    policy = RetryPolicy(jitter=0.25)
    # rand = 0 keeps the full delay; rand -> 1 approaches (1 - jitter) * delay.
    assert policy.delay(2, FixedRandom(0.0)) == 4.0
    assert policy.delay(2, FixedRandom(0.5)) == pytest.approx(3.5)
    assert policy.delay(2, FixedRandom(0.999999)) == pytest.approx(3.0, abs=1e-5)


def test_no_jitter_ignores_the_random() -> None:
    assert RetryPolicy().delay(2, FixedRandom(0.9)) == 4.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base", -1.0),
        ("base", math.nan),
        ("factor", 0.5),
        ("factor", 0.0),
        ("factor", math.nan),
        ("max_delay", -0.1),
        ("max_delay", math.nan),
        ("jitter", -0.1),
        ("jitter", 1.1),
        ("jitter", math.nan),
    ],
)
def test_invalid_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})


@pytest.mark.parametrize(
    "options",
    [{"base": 0.0}, {"factor": 1.0}, {"max_delay": 0.0}, {"jitter": 0.0}, {"jitter": 1.0}],
)
def test_boundary_settings_are_accepted(options: dict[str, float]) -> None:
    policy = RetryPolicy(**options)
    assert policy.delay(0) >= 0


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.base = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="jitter"):
        attrs.evolve(policy, jitter=2.0)


def test_immediate_is_a_policy_of_no_wait_at_all() -> None:
    policy = RetryPolicy.immediate()
    # Both bounds at zero, not just the cap: the policy reads as what it does.
    assert (policy.base, policy.max_delay, policy.jitter) == (0.0, 0.0, 0.0)
    assert [policy.delay(n) for n in range(5)] == [0.0] * 5
