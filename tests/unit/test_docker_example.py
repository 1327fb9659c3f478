"""The Docker example (examples/docker) builds a worker image that compose scales.

Without Docker, the files are checked by reading them: every Dockerfile
instruction is one Docker knows, every file it copies exists in the build
context, and its command is a ``jobworker worker`` line the command's own
parser accepts, naming a worker class that exists; the compose file parses
(a small reader of the YAML it uses, since PyYAML is no dependency), builds
that image from that Dockerfile, and stops a worker container only after the
command's own deadline. With a Docker daemon, the image is built too.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest

from jobworker import JobWorker
from jobworker.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "docker"

# Every instruction of the Dockerfile reference.
INSTRUCTIONS = frozenset(
    [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
)


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, as (keyword, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (EXAMPLE / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword, arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def test_dockerfile_instructions_are_valid() -> None:
    instructions = dockerfile()
    assert instructions[0][0] == "FROM"
    for keyword, arguments in instructions:
        assert keyword in INSTRUCTIONS, keyword
        assert keyword == keyword.upper(), keyword
        assert arguments, keyword


def test_dockerfile_copies_files_that_exist() -> None:
    copies = [args.split() for keyword, args in dockerfile() if keyword == "COPY"]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            # The build context is the root of the repository.
            assert (ROOT / source).exists(), source


def test_dockerfile_command_runs_a_worker_class_that_exists() -> None:
    instructions = dict(dockerfile())
    command = json.loads(instructions["CMD"])  # the exec form: no shell between
    assert command[0] == "jobworker"
    args = build_parser().parse_args(command[1:])
    assert args.command == "worker"
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    # The classes are imported from the working directory, where COPY put them.
    workdir = instructions["WORKDIR"]
    copied = {
        pathlib.PurePosixPath(args_[-1]): args_[0]
        for args_ in (a.split() for k, a in dockerfile() if k == "COPY")
    }
    for spec in args.classes:
        module, _, name = spec.partition(":")
        target = pathlib.PurePosixPath(workdir) / f"{module}.py"
        assert target in copied, target
        source = ROOT / copied[target]
        loader = importlib.util.spec_from_file_location(f"_docker_example_{module}", source)
        assert loader is not None and loader.loader is not None
        namespace = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(namespace)
        assert issubclass(getattr(namespace, name), JobWorker)


def compose() -> dict[str, Any]:
    return parse_yaml((EXAMPLE / "compose.yaml").read_text())


def test_compose_builds_the_image_and_scales_the_worker_service() -> None:
    services = compose()["services"]
    assert {"db", "migrate", "worker"} <= set(services)
    worker = services["worker"]
    build = worker["build"]
    assert (EXAMPLE / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == EXAMPLE / "Dockerfile"
    # A scaled service must not pin a container name or a host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    url = worker["environment"]["JOBWORKER_QUEUE"]
    assert url.startswith("postgresql://")
    # No password in the URL, where an operator's commands would show it:
    # libpq reads it from PGPASSWORD.
    user_info = url.removeprefix("postgresql://").partition("@")[0]
    assert ":" not in user_info
    assert worker["environment"]["PGPASSWORD"]
    assert services["migrate"]["environment"] == worker["environment"]


def test_compose_stops_workers_after_their_own_deadline() -> None:
    services = compose()["services"]
    command = json.loads(dict(dockerfile())["CMD"])
    stop_timeout = build_parser().parse_args(command[1:]).stop_timeout
    grace = services["worker"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace)
    assert float(grace[:-1]) > stop_timeout
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    migrate = build_parser().parse_args(services["migrate"]["command"][1:])
    assert migrate.command == "migrate"


def test_the_yaml_reader_reads_what_compose_uses() -> None:
    text = 'a: &x\n  b: 1\n  c: ["d", "e"]\nf:\n  <<: *x\n  g:\n    - h\n    - i\n'
    assert parse_yaml(text) == {
        "a": {"b": "1", "c": ["d", "e"]},
        "f": {"b": "1", "c": ["d", "e"], "g": ["h", "i"]},
    }


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0,
    reason="no Docker daemon answers here (docker info fails), even under CI: "
    "the image cannot be built, and the files are checked by reading them instead",
)
def test_the_image_builds() -> None:  # pragma: no cover - needs a Docker daemon
    done = subprocess.run(
        [
            "docker",
            "build",
            "-f",
            str(EXAMPLE / "Dockerfile"),
            "-t",
            "jobworker-example-worker:test",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def parse_yaml(text: str) -> dict[str, Any]:
    """Read the YAML subset compose.yaml uses into dicts, lists and strings.

    Block mappings and lists by indentation, flow lists of JSON strings,
    ``&anchor`` on a mapping and ``<<: *anchor`` merges; comments and blank
    lines are skipped. Anything else fails the test.
    """
    lines = [
        (len(line) - len(line.lstrip(" ")), line.strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    anchors: dict[str, Any] = {}

    def block(index: int, indent: int) -> tuple[Any, int]:
        if lines[index][1].startswith("- "):
            items = []
            while (
                index < len(lines)
                and lines[index][0] == indent
                and lines[index][1].startswith("- ")
            ):
                items.append(scalar(lines[index][1][2:]))
                index += 1
            return items, index
        mapping: dict[str, Any] = {}
        while index < len(lines) and lines[index][0] == indent:
            key, sep, rest = lines[index][1].partition(":")
            assert sep, f"not a mapping entry: {lines[index][1]!r}"
            rest = rest.strip()
            index += 1
            anchor = None
            if rest.startswith("&"):
                anchor, rest = rest[1:], ""
            if key == "<<":
                assert rest.startswith("*"), rest
                mapping.update(anchors[rest[1:]])
                continue
            if rest:
                value: Any = scalar(rest)
            elif index < len(lines) and lines[index][0] > indent:
                value, index = block(index, lines[index][0])
            else:
                value = None  # "pgdata:" declares a volume with no options
            if anchor:
                anchors[anchor] = value
            assert key not in mapping, f"duplicate key {key!r}"
            mapping[key] = value
        return mapping, index

    def scalar(text: str) -> Any:
        text = text.split(" #", 1)[0].strip()
        if text.startswith("["):
            return json.loads(text)
        assert not text.startswith(("{", "*", "&", "|", ">")), text
        return text.strip('"')

    result, end = block(0, 0)
    assert end == len(lines), f"unread line: {lines[end][1]!r}"
    assert isinstance(result, dict)
    return result


def test_documented_commands_parse() -> None:
    pages = [EXAMPLE / "README.md", ROOT / "docs" / "howto" / "docker.rst"]
    lines = [
        match.group(1)
        for page in pages
        for match in re.finditer(
            r"\$ docker compose run --rm worker jobworker (.*)$", page.read_text(), re.M
        )
    ]
    assert len(lines) >= 3
    for line in lines:
        args = build_parser().parse_args(shlex.split(line))
        assert callable(args.handler), line
    scale = [
        line
        for page in pages
        for line in page.read_text().splitlines()
        if "docker compose up" in line and "--scale worker=" in line
    ]
    assert scale, "the pages show how to scale the worker service"
