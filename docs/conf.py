"""Sphinx configuration for the jobworker documentation.

Built by ``tox -e docs``: HTML with warnings as errors, then the doctest
builder, which runs every example in the pages and in the docstrings that the
API reference pulls in. Nothing here needs the network.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import jobworker

_INVENTORIES = runpy.run_path(str(Path(__file__).parent / "_inventories" / "make_inventories.py"))

project = "jobworker"
author = "the jobworker developers"
copyright = "2026, the jobworker developers"
release = jobworker.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]

# Every cross-reference must resolve: one that does not fails the build
# instead of rendering as plain code.
nitpicky = True
nitpick_ignore: list[tuple[str, str]] = [
    # OpenTelemetry's API (the otel extra) publishes no inventory to link to.
    ("py:class", "trace.TracerProvider"),
]

# -- intersphinx -----------------------------------------------------------------

# Links into other projects' documentation, read from the inventories kept in
# _inventories/ (written by _inventories/make_inventories.py, which lists the
# names these pages use), never downloaded: the build works offline and gives
# the same result everywhere. A new external name is added there.
intersphinx_mapping = {
    name: (project.base_url, f"_inventories/{name}.inv")
    for name, project in _INVENTORIES["PROJECTS"].items()
}

html_theme = "furo"
html_title = f"jobworker {release}"

# -- autodoc ---------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {
    "members": True,
}

# -- doctest -----------------------------------------------------------------------

# The examples fail jobs on purpose, and some log: with a handler on the root
# logger, those records are not printed to the build's output. (The names the
# docstring examples use are set up in reference/api.rst.)
doctest_global_setup = """
import logging

logging.getLogger().addHandler(logging.NullHandler())
"""

# A safety net, not part of any example: every example stops its own workers,
# but if one fails half-way, stop what it left running so the build ends
# instead of waiting for non-daemon threads forever.
doctest_global_cleanup = """
import gc as _gc

import jobworker as _jobworker

for _obj in _gc.get_objects():
    if isinstance(_obj, _jobworker.JobWorker):
        _obj.stop(timeout=5.0)
"""
