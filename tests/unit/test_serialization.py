"""Serialization: JSON round trips, refusals, the byte cap, attrs classes, whole jobs."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobworker import model as m
from jobworker.errors import (
    InvalidJobError,
    PayloadTooLargeError,
    SerializationError,
    UnknownJobTypeError,
)
from jobworker.jobtypes import JobTypeRegistry
from jobworker.serialization import (
    DEFAULT_MAX_PAYLOAD,
    check_shape,
    job_from_dict,
    job_to_dict,
    load_value,
    roundtrip_value,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(seconds=1)
T2 = T0 + dt.timedelta(seconds=2)


@attrs.frozen
class Section:
    title: str
    when: dt.datetime


@attrs.frozen
class Article:
    name: str
    section: Section
    tags: list[str] = attrs.field(factory=list)
    words: int = 0


@attrs.frozen
class Progress:
    done: int
    total: int


@attrs.frozen
class Summary:
    resource_name: str
    finished: dt.datetime


def roundtrip(value: Any, cls: Any = None, limit: int | None = None) -> tuple[Any, str]:
    return roundtrip_value(value, cls, what="params", limit=limit)


# -- plain JSON values -----------------------------------------------------------------------


def test_plain_values_come_back_equal_but_copied() -> None:
    value = {"title": "Test Article", "n": [1, 2.5, None, True, {"x": "y"}]}
    copy, text = roundtrip(value)
    assert copy == value
    assert copy is not value
    assert copy["n"] is not value["n"]
    assert json.loads(text) == value


def test_tuples_come_back_as_lists() -> None:
    copy, _ = roundtrip({"pair": (1, 2), "nested": [(3, (4,))]})
    assert copy == {"pair": [1, 2], "nested": [[3, [4]]]}
    assert type(copy["pair"]) is list


def test_int_keys_come_back_as_strings_like_any_json_store() -> None:
    copy, _ = roundtrip({1: "a"})
    assert copy == {"1": "a"}


def test_big_ints_survive() -> None:
    copy, _ = roundtrip(2**100)
    assert copy == 2**100


def _circular() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({1, 2}, id="set"),
        pytest.param({"s": frozenset({1})}, id="nested-frozenset"),
        pytest.param(math.nan, id="nan"),
        pytest.param({"x": [math.inf]}, id="nested-inf"),
        pytest.param(-math.inf, id="minus-inf"),
        pytest.param(object(), id="object"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param({"when": T0}, id="datetime-without-a-class"),
        pytest.param({(1, 2): "tuple key"}, id="tuple-key"),
        pytest.param(_circular(), id="circular"),
    ],
)
def test_unstorable_values_are_refused(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        roundtrip(value)
    assert isinstance(info.value, InvalidJobError)
    assert "params" in str(info.value)


def test_shared_containers_are_checked_in_linear_time() -> None:
    # Each level holds the one below twice: 2**40 paths, 40 distinct lists.
    value: list[Any] = [{"leaf": 1}]
    for _ in range(40):
        value = [value, value]
    check_shape(value, "params")
    wide: dict[str, Any] = {"k": {}}
    for _ in range(40):
        wide = {str(n): wide for n in range(3)}  # three shared keys a level: below the dedup
    check_shape(wide, "params")


def test_an_unregistered_attrs_instance_is_refused() -> None:
    with pytest.raises(SerializationError, match="register"):
        roundtrip(Progress(done=1, total=2))


def test_an_attrs_instance_nested_in_plain_json_is_refused() -> None:
    with pytest.raises(SerializationError):
        roundtrip({"p": Progress(done=1, total=2)})


@pytest.mark.parametrize("limit", [None, 1000, 8])
def test_a_lone_surrogate_is_refused_as_unstorable(limit: int | None) -> None:
    # "\ud800" cannot be encoded as UTF-8, so no durable store can hold it;
    # whatever the limit, the refusal must be the typed SerializationError.
    with pytest.raises(SerializationError):
        roundtrip({"s": "\ud800"}, limit=limit)


# -- the byte cap -----------------------------------------------------------------------


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    value = "é" * 50  # JSON text: 52 characters, 102 bytes
    _, text = roundtrip(value)
    assert len(text) == 52
    assert len(text.encode("utf-8")) == 102
    copy, _ = roundtrip(value, limit=102)
    assert copy == value
    with pytest.raises(PayloadTooLargeError) as info:
        roundtrip(value, limit=101)
    assert (info.value.size, info.value.limit) == (102, 101)
    # Over the limit in bytes although under it in characters.
    with pytest.raises(PayloadTooLargeError) as info:
        roundtrip(value, limit=60)
    assert (info.value.size, info.value.limit) == (102, 60)


def test_the_limit_counts_four_byte_characters() -> None:
    value = ["😀" * 10]  # ["...."]: 14 characters, 4 + 40 bytes
    with pytest.raises(PayloadTooLargeError) as info:
        roundtrip(value, limit=43)
    assert info.value.size == 44
    assert roundtrip(value, limit=44)[0] == value


def test_a_small_ascii_value_under_the_limit_passes() -> None:
    assert roundtrip("abc", limit=5)[0] == "abc"  # '"abc"' is exactly 5 bytes
    with pytest.raises(PayloadTooLargeError):
        roundtrip("abcd", limit=5)


def test_no_limit_means_no_cap() -> None:
    big = "x" * (DEFAULT_MAX_PAYLOAD + 10)
    assert roundtrip(big, limit=None)[0] == big
    with pytest.raises(PayloadTooLargeError):
        roundtrip(big, limit=DEFAULT_MAX_PAYLOAD)


def test_payload_too_large_is_an_invalid_job_error() -> None:
    with pytest.raises(InvalidJobError):
        roundtrip("é" * 10, limit=5)


# -- registered attrs classes ---------------------------------------------------------------


def make_article() -> Article:
    tz = dt.timezone(dt.timedelta(hours=2))
    return Article(
        name="Test Article",
        section=Section(title="News", when=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=tz)),
        tags=["a", "b"],
        words=120,
    )


def test_a_registered_attrs_class_round_trips() -> None:
    article = make_article()
    copy, text = roundtrip(article, Article)
    assert isinstance(copy, Article)
    assert isinstance(copy.section, Section)
    assert copy == article
    assert copy is not article
    assert copy.section.when.utcoffset() == dt.timedelta(hours=2)
    data = json.loads(text)
    assert data["section"]["when"] == article.section.when.isoformat()
    assert data["tags"] == ["a", "b"]


def test_a_value_of_the_wrong_class_is_refused() -> None:
    with pytest.raises(SerializationError, match="Article"):
        roundtrip({"name": "x"}, Article)
    with pytest.raises(SerializationError):
        roundtrip(Progress(done=1, total=2), Article)


def test_the_limit_applies_to_attrs_classes() -> None:
    _, text = roundtrip(make_article(), Article)
    size = len(text.encode())
    with pytest.raises(PayloadTooLargeError) as info:
        roundtrip(make_article(), Article, limit=size - 1)
    assert info.value.size == size


def test_load_value_refuses_data_that_does_not_fit_the_class() -> None:
    with pytest.raises(SerializationError):
        load_value('{"done": "many"}', Progress)
    with pytest.raises(SerializationError):
        load_value('{"done": 1}', Progress)
    assert load_value('{"done": 1, "total": 2}', Progress) == Progress(done=1, total=2)
    assert load_value("[1, 2]", None) == [1, 2]


# -- whole jobs ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

CLAIM = m.Claim(token="token-1", worker="worker-1")


def jobs_in_every_state(
    params: Any, progress: Any, result: Any, **meta: Any
) -> dict[str, m.AnyJob]:
    pending = m.new_job("generation", params, id="job-1", user_id="u", created=T0, **meta)
    running = attrs.evolve(m.start(pending, claim=CLAIM, now=T1), progress=progress)
    return {
        "pending": pending,
        "running": running,
        "complete": m.complete(running, result, now=T2),
        "failed": m.fail(running, "ValueError: boom", now=T2),
        "cancelled-running": m.cancel(running, now=T2),
        "cancelled-pending": m.cancel(pending, now=T2),
    }


@given(params=json_values, progress=json_values, result=json_values)
def test_every_state_round_trips_through_json(params: Any, progress: Any, result: Any) -> None:
    for job in jobs_in_every_state(params, progress, result).values():
        data = job_to_dict(job)
        assert data["status"] == job.status
        assert job_from_dict(json.loads(json.dumps(data, allow_nan=False))) == job


@pytest.mark.parametrize(
    "name",
    ["pending", "running", "complete", "failed", "cancelled-running", "cancelled-pending"],
)
def test_metadata_and_times_round_trip(name: str) -> None:
    tz = dt.timezone(dt.timedelta(hours=-7))
    job = jobs_in_every_state(
        {"a": 1}, {"pct": 5}, {"r": 2}, max_retries=7, priority=-3, run_after=T2.astimezone(tz)
    )[name]
    back = job_from_dict(job_to_dict(job))
    assert back == job
    assert type(back) is type(job)
    assert back.metadata.run_after == T2
    if isinstance(back, m.RunningJob):
        assert back.claim == CLAIM
    if isinstance(back, m.CancelledJob):
        assert back.started_at == (T1 if name == "cancelled-running" else None)


def test_job_to_dict_stores_tuples_as_lists() -> None:
    job = m.new_job("t", {"pair": (1, 2)}, id="job-1", created=T0)
    assert job_from_dict(job_to_dict(job)).params == {"pair": [1, 2]}


def test_job_to_dict_refuses_unstorable_params() -> None:
    with pytest.raises(SerializationError):
        job_to_dict(m.new_job("t", {"s": {1}}, id="job-1", created=T0))


def registry() -> JobTypeRegistry:
    types = JobTypeRegistry(strict=True)
    types.register("generation", params=Article, progress=Progress, result=Summary)
    return types


@pytest.mark.parametrize(
    "name",
    ["pending", "running", "complete", "failed", "cancelled-running", "cancelled-pending"],
)
def test_every_state_round_trips_with_registered_classes(name: str) -> None:
    job = jobs_in_every_state(
        make_article(), Progress(done=1, total=3), Summary(resource_name="r", finished=T2)
    )[name]
    types = registry()
    data = json.loads(json.dumps(job_to_dict(job, types)))
    back = job_from_dict(data, types)
    assert back == job
    assert isinstance(back.params, Article)


def test_a_running_job_without_progress_round_trips_with_a_registered_progress_class() -> None:
    # Progress is None until the first report, also for a type with a progress class.
    pending = m.new_job("generation", make_article(), id="job-1", created=T0)
    running = m.start(pending, claim=CLAIM, now=T1)
    assert running.progress is None
    types = registry()
    assert job_from_dict(job_to_dict(running, types), types) == running


def test_a_strict_registry_refuses_unknown_types_both_ways() -> None:
    job = m.new_job("mystery", {}, id="job-1", created=T0)
    data = job_to_dict(job)
    types = JobTypeRegistry(strict=True)
    with pytest.raises(UnknownJobTypeError):
        job_to_dict(job, types)
    with pytest.raises(UnknownJobTypeError):
        job_from_dict(data, types)


def test_stored_params_that_do_not_fit_the_registered_class_are_refused() -> None:
    data = job_to_dict(m.new_job("generation", {"name": 1}, id="job-1", created=T0))
    with pytest.raises(InvalidJobError):
        job_from_dict(data, registry())


def valid_dict(status: str = "running") -> dict[str, Any]:
    name = status if status != "cancelled" else "cancelled-running"
    return job_to_dict(jobs_in_every_state({"a": 1}, None, {"r": 1})[name])


def _without(status: str, *path: str) -> dict[str, Any]:
    data = valid_dict(status)
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


def _with(status: str, value: Any, *path: str) -> dict[str, Any]:
    data = valid_dict(status)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


GARBAGE = [
    pytest.param(None, id="none"),
    pytest.param([], id="list"),
    pytest.param("job", id="str"),
    pytest.param(42, id="int"),
    pytest.param({}, id="empty"),
    pytest.param(_with("running", "done", "status"), id="unknown-status"),
    pytest.param(_without("running", "status"), id="no-status"),
    pytest.param(_without("running", "metadata"), id="no-metadata"),
    pytest.param(_with("running", "x", "metadata"), id="str-metadata"),
    pytest.param(_without("pending", "metadata", "id"), id="no-id"),
    pytest.param(_with("pending", "", "metadata", "id"), id="empty-id"),
    pytest.param(_with("pending", "yesterday", "metadata", "created"), id="bad-created"),
    pytest.param(_with("pending", "2026-01-01T00:00:00", "metadata", "created"), id="naive"),
    pytest.param(_with("pending", None, "metadata", "created"), id="null-created"),
    pytest.param(_with("pending", -1, "metadata", "retry_count"), id="negative-retries"),
    pytest.param(_with("pending", "1", "metadata", "retry_count"), id="str-retry-count"),
    pytest.param(_with("pending", 9, "metadata", "retry_count"), id="over-max-retries"),
    pytest.param(_with("pending", "soon", "metadata", "run_after"), id="bad-run-after"),
    pytest.param(_without("running", "claim"), id="no-claim"),
    pytest.param(_with("running", {"token": "t"}, "claim"), id="claim-no-worker"),
    pytest.param(_with("running", "t", "claim"), id="str-claim"),
    pytest.param(_with("running", "noon", "started_at"), id="bad-started-at"),
    pytest.param(_without("running", "started_at"), id="running-no-started-at"),
    pytest.param(_without("complete", "started_at"), id="complete-no-started-at"),
    pytest.param(_without("failed", "started_at"), id="failed-no-started-at"),
    pytest.param(_without("complete", "completed_at"), id="no-completed-at"),
    pytest.param(_without("failed", "error"), id="no-error"),
    pytest.param(_without("cancelled", "completed_at"), id="cancelled-no-completed-at"),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_job_from_dict_refuses_garbage(data: Any) -> None:
    with pytest.raises(InvalidJobError):
        job_from_dict(data)
