"""The type variables of tasks and handles, defined once so each has one name."""

from __future__ import annotations

from typing import ParamSpec, TypeVar

__all__ = ["TaskParams", "TaskReturn"]

#: A task's parameters, without the context it may take.
TaskParams = ParamSpec("TaskParams")
#: A task's return type: what its handle's ``result()`` returns.
TaskReturn = TypeVar("TaskReturn")
