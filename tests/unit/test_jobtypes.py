"""JobTypeRegistry: registration, strictness and look-ups."""

from __future__ import annotations

import threading

import attrs
import pytest

from jobworker.errors import InvalidJobError, UnknownJobTypeError
from jobworker.jobtypes import JobType, JobTypeRegistry


@attrs.frozen
class Params:
    title: str


@attrs.frozen
class OtherParams:
    title: str


@attrs.frozen
class Result:
    name: str


def test_register_returns_the_job_type_and_get_finds_it() -> None:
    types = JobTypeRegistry()
    job_type = types.register("generation", params=Params, result=Result)
    assert job_type == JobType(name="generation", params=Params, progress=None, result=Result)
    assert types.get("generation") == job_type
    assert "generation" in types
    assert list(types) == [job_type]


def test_registering_the_same_type_again_is_fine() -> None:
    types = JobTypeRegistry()
    first = types.register("generation", params=Params)
    second = types.register("generation", params=Params)
    assert first == second
    assert list(types) == [first]


@pytest.mark.parametrize(
    "options",
    [{"params": OtherParams}, {"params": Params, "result": Result}, {}],
)
def test_registering_a_type_differently_raises(options: dict[str, type]) -> None:
    types = JobTypeRegistry()
    original = types.register("generation", params=Params)
    with pytest.raises(ValueError, match="generation"):
        types.register("generation", **options)
    assert types.get("generation") == original


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_type_name_must_be_a_non_empty_string(name: object) -> None:
    types = JobTypeRegistry()
    with pytest.raises(ValueError):
        types.register(name)  # type: ignore[arg-type]
    assert list(types) == []


def test_a_strict_registry_refuses_unknown_types() -> None:
    types = JobTypeRegistry(strict=True)
    types.register("known")
    assert types.get("known").name == "known"
    with pytest.raises(UnknownJobTypeError) as info:
        types.get("unknown")
    assert info.value.job_type == "unknown"
    assert isinstance(info.value, InvalidJobError)


def test_a_lenient_registry_returns_a_plain_type_for_unknown_names() -> None:
    types = JobTypeRegistry()
    types.register("known", params=Params)
    plain = types.get("unknown")
    assert (plain.params, plain.progress, plain.result) == (None, None, None)
    assert "unknown" not in types
    assert [job_type.name for job_type in types] == ["known"]


def test_default_registry_is_lenient() -> None:
    assert JobTypeRegistry().strict is False


def test_contains_takes_any_object() -> None:
    types = JobTypeRegistry()
    types.register("a")
    assert 1 not in types
    assert None not in types


def test_iteration_is_a_snapshot() -> None:
    types = JobTypeRegistry()
    types.register("a")
    iterator = iter(types)
    types.register("b")
    assert [job_type.name for job_type in iterator] == ["a"]
    assert sorted(job_type.name for job_type in types) == ["a", "b"]


def test_repr_names_the_types() -> None:
    types = JobTypeRegistry(strict=True)
    types.register("b")
    types.register("a")
    assert "strict=True" in repr(types)
    assert "['a', 'b']" in repr(types)


def test_concurrent_registrations_are_all_kept() -> None:
    types = JobTypeRegistry()
    errors: list[BaseException] = []

    def register_many(prefix: int) -> None:
        try:
            for n in range(50):
                types.register(f"type-{prefix}-{n}")
                types.register("shared", params=Params)
        except BaseException as exc:  # recorded and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=register_many, args=(i,), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert errors == []
    assert len(list(types)) == 8 * 50 + 1
