"""The documented limits on what a job may hold, the same on every backend.

Each is enforced where the value is received (``create_job``, ``list_jobs``),
with a typed error, before anything is written. This module imports nothing
from jobworker.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_NESTING", "MAX_OFFSET", "MAX_TEXT_LENGTH"]

#: Most levels of lists and dicts (attrs classes count as dicts) in one
#: params, progress or result value. Anything stored within it can be read
#: back by any caller, however deep its own stack.
MAX_NESTING: Final = 100

#: Most characters in a job's id, type and user id. Every backend's index
#: takes this many (PostgreSQL's b-tree refuses rows over about 2.7 kB).
MAX_TEXT_LENGTH: Final = 255

#: Largest ``limit`` and ``offset`` of ``list_jobs``: a signed 64-bit integer,
#: what SQLite and PostgreSQL take.
MAX_OFFSET: Final = 2**63 - 1
