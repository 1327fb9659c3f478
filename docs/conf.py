"""Sphinx configuration for the jobworker documentation.

Built by ``tox -e docs``: HTML with warnings as errors, then the doctest
builder, which runs every example in the pages and in the docstrings that the
API reference pulls in. Nothing here needs the network.
"""

from __future__ import annotations

import jobworker

project = "jobworker"
author = "the jobworker developers"
copyright = "2026, the jobworker developers"
release = jobworker.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
nitpicky = False

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
