"""The docs resolve every cross-reference, offline.

``docs/conf.py`` turns nitpicky mode on and reads the intersphinx inventories
committed in ``docs/_inventories`` (``tox -e docs`` builds with warnings as
errors, so an unresolved reference fails it). These tests keep the committed
inventories valid and in step with the script that writes them.
"""

from __future__ import annotations

import pathlib
import runpy
import zlib
from typing import Any

import pytest
from sphinx.util import inventory

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
SCRIPT = DOCS / "_inventories" / "make_inventories.py"


@pytest.fixture(scope="module")
def script() -> dict[str, Any]:
    return runpy.run_path(str(SCRIPT))


def test_committed_inventories_are_up_to_date(
    script: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert script["main"](["--check"]) == 0, capsys.readouterr().err


def test_check_reports_a_stale_inventory(
    script: dict[str, Any], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check reads the directory it is given: point it at a copy with one
    # name too few, and it must say which file is stale.
    for path in (DOCS / "_inventories").glob("*.inv"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    head, text = script["read"](tmp_path / "python.inv")
    (tmp_path / "python.inv").write_bytes(
        head + zlib.compress("".join(text.splitlines(keepends=True)[1:]).encode())
    )
    main = script["main"]
    monkeypatch.setitem(main.__globals__, "HERE", tmp_path)
    assert main(["--check"]) == 1


def test_inventories_load_with_sphinx(script: dict[str, Any]) -> None:
    for name, project in script["PROJECTS"].items():
        with (DOCS / "_inventories" / f"{name}.inv").open("rb") as stream:
            loaded = inventory.InventoryFile.load(stream, project.base_url, lambda b, u: b + u)
        found = {(role, entry) for role, entries in loaded.items() for entry in entries}
        assert found == {(e.role, e.name) for e in project.entries}, name
        # "$" stood for the name: every address ends with its anchor.
        for role, entries in loaded.items():
            for entry_name, item in entries.items():
                # An _InventoryItem from Sphinx 8.2; a (project, version, uri, name) tuple before.
                uri = item.uri if hasattr(item, "uri") else item[2]
                assert uri.startswith(project.base_url), (role, entry_name)
                assert uri.endswith(("#" + entry_name, "#module-" + entry_name))


def test_conf_is_nitpicky_and_offline() -> None:
    conf = runpy.run_path(str(DOCS / "conf.py"))
    assert conf["nitpicky"] is True
    assert "sphinx.ext.intersphinx" in conf["extensions"]
    assert set(conf["intersphinx_mapping"]) >= {"python", "django", "flask", "psycopg"}
    for _url, location in conf["intersphinx_mapping"].values():
        # A local file, never a download: the build runs without a network.
        assert "://" not in location
        assert (DOCS / location).is_file()
