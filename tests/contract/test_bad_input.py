"""Bad input on every backend: a typed error at the call, nothing stored, or an exact round trip."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import attrs
import pytest

import jobworker as jw

from .conftest import EPOCH, MakeQueue
from .test_contract import assert_refused, make_job, snapshot, stored


def nested(depth: int) -> Any:
    """Return a list *depth* levels deep, a string at the bottom."""
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def near_the_recursion_limit(call: Any, margin: int = 40) -> Any:
    """Return ``call()`` made with only *margin* frames left before the recursion limit."""

    def down(levels: int) -> Any:
        return call() if levels <= 0 else down(levels - 1)

    return down(sys.getrecursionlimit() - stack_depth() - margin)


# -- 2.1: nothing is stored when create_job raises --------------------------------------------


@attrs.frozen
class Article:
    title: str
    when: dt.datetime
    words: int = 0


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(Article(title="t", when=EPOCH, words="many"), id="str-for-int"),  # type: ignore[arg-type]
        pytest.param(Article(title="t", when=EPOCH, words=[1]), id="list-for-int"),  # type: ignore[arg-type]
        pytest.param(Article(title="t", when="today"), id="str-for-datetime"),  # type: ignore[arg-type]
    ],
)
def test_params_that_would_not_come_back_are_refused_and_not_stored(
    make_queue: MakeQueue, params: Article
) -> None:
    registry = jw.JobTypeRegistry()
    registry.register("article", params=Article)
    queue = make_queue(registry=registry)
    assert_refused(queue, make_job(job_type="article", params=params), jw.SerializationError)
    assert queue.get_stats()["pending"] == 0
    # The queue goes on working: a good job is stored and read back.
    good = Article(title="t", when=EPOCH, words=3)
    queue.create_job(make_job("job-2", job_type="article", params=good))
    assert [job.params for job in queue.list_jobs()] == [good]
    running = queue.poll_next_pending_job(timeout=0)
    assert running is not None and running.params == good


# -- 2.2: dict keys that would collide once stored -----------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({1: "a", "1": "b"}, id="int-and-str"),
        pytest.param({True: 1, "true": 2}, id="true-and-str"),
        pytest.param({False: 1, "false": 2}, id="false-and-str"),
        pytest.param({None: 1, "null": 2}, id="none-and-str"),
        pytest.param({1.5: 1, "1.5": 2}, id="float-and-str"),
        pytest.param({"outer": [{"x": {2: "a", "2": "b"}}]}, id="nested"),
    ],
)
def test_dict_keys_that_collide_when_stored_are_refused(queue: jw.JobQueue, params: Any) -> None:
    error = assert_refused(queue, make_job(params=params), jw.SerializationError)
    assert "both stored as" in str(error)


def test_dict_keys_that_do_not_collide_are_stored_as_their_json_text(queue: jw.JobQueue) -> None:
    params = {1: "a", False: "b", None: "c", 2.5: "d", "e": "e"}
    returned = queue.create_job(make_job(params=params))
    expected = {"1": "a", "false": "b", "null": "c", "2.5": "d", "e": "e"}
    assert returned.params == expected
    assert stored(queue).params == expected


# -- 2.3: one nesting limit, and reads at any stack depth -------------------------------------


def test_params_nested_up_to_the_limit_are_stored_and_read_back_at_any_stack_depth(
    queue: jw.JobQueue,
) -> None:
    assert jw.MAX_NESTING == 100
    params = nested(jw.MAX_NESTING)
    near_the_recursion_limit(lambda: queue.create_job(make_job(params=params)))
    assert near_the_recursion_limit(lambda: stored(queue).params) == params
    assert near_the_recursion_limit(queue.list_jobs)[0].params == params
    running = near_the_recursion_limit(lambda: queue.poll_next_pending_job(timeout=0))
    assert running is not None and running.params == params
    assert running.metadata.id == "job-1"


@pytest.mark.parametrize("depth", [101, 1_000, 100_000])
def test_params_nested_past_the_limit_are_refused(queue: jw.JobQueue, depth: int) -> None:
    error = assert_refused(queue, make_job(params=nested(depth)), jw.SerializationError)
    assert "more than 100 levels" in str(error)
    # In a dict, too, and at any stack depth of the caller.
    deep_dict: Any = {}
    inner = deep_dict
    for _ in range(depth):
        inner["k"] = {}
        inner = inner["k"]
    with pytest.raises(jw.SerializationError):
        near_the_recursion_limit(lambda: queue.create_job(make_job(params=deep_dict)))
    assert queue.get_stats()["pending"] == 0


def test_a_value_that_refers_to_itself_is_refused(queue: jw.JobQueue) -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert_refused(queue, make_job(params={"loop": loop}), jw.SerializationError)


# -- 2.4: list_jobs limit and offset ------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, -1, 2**63, 2**64, 1.0, "1", None])
@pytest.mark.parametrize("name", ["limit", "offset"])
def test_list_jobs_refuses_limits_out_of_range(queue: jw.JobQueue, name: str, value: Any) -> None:
    queue.create_job(make_job())
    with pytest.raises(ValueError, match=f"{name} must be an int from 0 to {2**63 - 1}"):
        queue.list_jobs(**{name: value})


def test_list_jobs_takes_the_largest_limit_and_offset(queue: jw.JobQueue) -> None:
    assert jw.MAX_OFFSET == 2**63 - 1
    queue.create_job(make_job())
    assert [job.metadata.id for job in queue.list_jobs(limit=jw.MAX_OFFSET)] == ["job-1"]
    assert queue.list_jobs(offset=jw.MAX_OFFSET) == []
    assert queue.list_jobs(limit=0) == []


# -- 2.6: one length limit for id, type and user id ---------------------------------------------


@pytest.mark.parametrize("field", ["id", "type", "user_id"])
@pytest.mark.parametrize("length", [256, 10_000])  # MAX_TEXT_LENGTH + 1, and far over
def test_ids_types_and_users_over_the_length_limit_are_refused(
    queue: jw.JobQueue, field: str, length: int
) -> None:
    values = {"id": "job-1", "type": "generation", "user_id": "user"}
    values[field] = "é" * length
    job = make_job(values["id"], values["type"], user_id=values["user_id"])
    error = assert_refused(queue, job, jw.InvalidJobError)
    assert f"metadata.{field} is {length} characters long" in str(error)


def test_ids_types_and_users_at_the_length_limit_are_stored(queue: jw.JobQueue) -> None:
    assert jw.MAX_TEXT_LENGTH == 255
    # Four bytes a character in UTF-8: the longest value every index must take.
    longest = "\U0001f600" * jw.MAX_TEXT_LENGTH
    queue.create_job(make_job(longest, longest, user_id=longest))
    job = stored(queue, longest)
    assert (job.metadata.id, job.metadata.type, job.metadata.user_id) == (longest,) * 3
    assert [job.metadata.id for job in queue.list_jobs(type=longest, user_id=longest)] == [longest]
    running = queue.poll_next_pending_job(types=[longest], timeout=0)
    assert running is not None and running.metadata.id == longest


# -- 2.7: error messages never raise -----------------------------------------------------------


class HostileText(str):
    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("a __repr__ that raises")


class HostileObject:
    def __repr__(self) -> str:
        raise RuntimeError("a __repr__ that raises")


def test_messages_about_a_value_whose_repr_raises_never_raise(queue: jw.JobQueue) -> None:
    queue.create_job(make_job())
    before = snapshot(queue)
    with pytest.raises(jw.DuplicateJobError, match="repr failed"):
        queue.create_job(make_job(HostileText("job-1")))
    with pytest.raises(jw.InvalidJobError, match="repr failed"):
        queue.create_job(make_job(HostileText("x" * 300)))
    with pytest.raises(jw.InvalidJobError, match="repr failed"):
        make_job(HostileObject())  # type: ignore[arg-type]
    with pytest.raises(jw.InvalidJobError, match="NUL"):
        queue.create_job(make_job(job_type=HostileText("a\x00b")))
    with pytest.raises(jw.JobNotFoundError, match="repr failed"):
        queue.wait_for_job(HostileText("missing"), timeout=0)
    with pytest.raises(ValueError, match="repr failed"):
        queue.list_jobs(limit=HostileObject())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repr failed"):
        queue.list_jobs(status=HostileText("nope"))
    assert snapshot(queue) == before
