"""Which of a task's values go through the converter, decided once per task.

Most task arguments are plain JSON values (``str``, ``int``, lists and dicts
of them): they are stored as they are, with no converter call. A parameter or
return annotation naming anything else (an attrs class, a ``datetime``) goes
through the package's one converter, both ways.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Final

from ..serialization import converter

__all__ = ["ArgsPlan", "needs_converter"]

_PLAIN: Final = frozenset({str, int, float, bool, type(None), list, dict, object, Any})
_PLAIN_ORIGINS: Final = frozenset({list, dict, typing.Union, types.UnionType})


def needs_converter(annotation: Any) -> bool:
    """Return whether values annotated *annotation* need the converter to be stored."""
    if annotation is inspect.Parameter.empty or annotation in _PLAIN:
        return False
    origin = typing.get_origin(annotation)
    if origin in _PLAIN_ORIGINS:
        return any(needs_converter(arg) for arg in typing.get_args(annotation))
    return True


class ArgsPlan:
    """How one task's arguments and result are stored, from its signature.

    Built on first use (annotations may name classes defined after the task)
    and kept: ``None`` converters mean "store as is".
    """

    def __init__(self, signature: inspect.Signature, function: Callable[..., Any]) -> None:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # broad: an unresolvable annotation; store such values as plain JSON
            hints = {}
        self.signature = signature
        self.params: dict[str, Any] = {}
        for parameter in signature.parameters.values():
            hint = hints.get(parameter.name, inspect.Parameter.empty)
            if needs_converter(hint):
                self.params[parameter.name] = hint
        returns = hints.get("return", inspect.Parameter.empty)
        self.result: Any = returns if needs_converter(returns) else None
        #: Whether any argument needs the converter.
        self.converts = bool(self.params)

    def dump_args(
        self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Return *args* and *kwargs*, checked, with each converted parameter unstructured."""
        return self._convert(args, kwargs, converter.unstructure)

    def load_args(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Return stored *args* and *kwargs*, checked, with each converted parameter structured."""
        return self._convert(args, kwargs, converter.structure)

    def _convert(
        self,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        convert: Callable[[Any, Any], Any],
    ) -> tuple[list[Any], dict[str, Any]]:
        # Each value keeps its place (by position or by name), as the caller gave it.
        self.signature.bind(*args, **kwargs)  # raises TypeError for a call that does not fit
        positional = [
            parameter
            for parameter in self.signature.parameters.values()
            if parameter.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        star_args = star_kwargs = None
        for parameter in self.signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                star_args = parameter.name
            elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
                star_kwargs = parameter.name
        new_args = []
        for index, value in enumerate(args):
            name = positional[index].name if index < len(positional) else star_args
            new_args.append(self._one(name, value, convert))
        new_kwargs = {}
        for name, value in kwargs.items():
            target = name if name in self.signature.parameters else star_kwargs
            new_kwargs[name] = self._one(target, value, convert)
        return new_args, new_kwargs

    def _one(self, name: str | None, value: Any, convert: Callable[[Any, Any], Any]) -> Any:
        hint = self.params.get(name) if name is not None else None
        if hint is None or (value is None and _optional(hint)):
            return value
        return convert(value, hint)


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)
