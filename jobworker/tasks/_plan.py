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
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Return *args* and *kwargs* with each converted parameter unstructured."""
        bound = self.signature.bind(*args, **kwargs)
        self._convert(bound, converter.unstructure)
        return list(bound.args), bound.kwargs

    def load_args(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Return stored *args* and *kwargs* with each converted parameter structured."""
        bound = self.signature.bind(*args, **kwargs)
        self._convert(bound, converter.structure)
        return list(bound.args), bound.kwargs

    def _convert(self, bound: inspect.BoundArguments, convert: Callable[[Any, Any], Any]) -> None:
        arguments = bound.arguments
        for name, hint in self.params.items():
            if name not in arguments:
                continue
            kind = self.signature.parameters[name].kind
            value = arguments[name]
            if kind is inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = tuple(convert(item, hint) for item in value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                arguments[name] = {key: convert(item, hint) for key, item in value.items()}
            elif value is not None or not _optional(hint):
                arguments[name] = convert(value, hint)


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)
