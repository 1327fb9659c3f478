"""The package's metadata: extras that install what they promise, tox and CI environments."""

from __future__ import annotations

import configparser
import pathlib

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _extra(name: str) -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.extras_require"][name].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13"])
@pytest.mark.parametrize("extra", ["django", "test"])
def test_the_django_extra_brings_the_backport_on_every_python(extra: str, python: str) -> None:
    # pip may pick Django 5.2 on any Python: the backport must come with it.
    environment = {**default_environment(), "python_version": python}
    names = {
        req.name
        for req in _extra(extra)
        if req.marker is None or req.marker.evaluate(environment)  # type: ignore[arg-type]
    }
    assert {"django", "django-tasks"} <= names


def test_tox_and_ci_test_django_52_on_python_312() -> None:
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    env = tox["testenv:django52-py312"]
    assert env["basepython"] == "python3.12"
    assert "django>=5.2,<5.3" in env["deps"] and "django-tasks" not in env["deps"]
    assert "django" in env["extras"].split()
    assert "django52-py312" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_says_how_to_get_tox() -> None:
    assert any(req.name == "tox" for req in _extra("dev"))
    assert "pip install -e '.[dev]'" in (ROOT / "README.md").read_text()
