"""Check user-given parameter values against the type annotations of the code that takes them.

Parameters arrive as JSON-parsed strings (`--set steps=abc` gives the str "abc"), so every place
that turns them into keyword arguments (TrainConfig fields, loss constructors, experiment
functions) calls `check_kwargs` once instead of hand-writing a check per parameter. The check
follows the annotation:

    int               an int (not a bool); an integral float such as 3.0 becomes 3
    float             an int or float (not a bool), finite; returned as float
    bool / str / dict the same type
    list[T], tuple[T, ...], tuple[T1, T2], Sequence[T]
                      a list or tuple (not a str) whose items pass T
    X | None          None, or a value passing X
    anything else     accepted as is (Any, Path, arrays, classes we cannot check from JSON)
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from typing import Any, Callable

from .errors import GapkitError

_SEQUENCES = (list, tuple, collections.abc.Sequence)


class _Mismatch(Exception):
    """Internal: the value does not fit the annotation (message built by the caller)."""


def describe(annotation: Any) -> str:
    """A short human name for an annotation: 'an integer', 'a list of numbers', 'a number or None'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else describe(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin in _SEQUENCES:
        inner = [a for a in args if a is not Ellipsis]
        return "a list" + (f" of {_plural(inner[0])}" if inner else "")
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a JSON object"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _plural(annotation: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(annotation, describe(annotation))


def _coerce(value: Any, annotation: Any) -> Any:
    """`value` made to fit `annotation`, or _Mismatch."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return None if arm is type(None) and value is None else _coerce_arm(value, arm)
            except _Mismatch:
                continue
        raise _Mismatch
    return _coerce_arm(value, annotation)


def _coerce_arm(value: Any, annotation: Any) -> Any:
    if annotation is type(None):
        if value is None:
            return None
        raise _Mismatch
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _SEQUENCES:
        return _coerce_sequence(value, origin, args)
    if origin is dict or annotation is dict:
        if isinstance(value, dict):
            return value
        raise _Mismatch
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise _Mismatch
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Mismatch
        return float(value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    return value  # Any, Path, arrays, user classes: nothing a JSON value can be checked against


def _coerce_sequence(value: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _Mismatch
    if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[float, float]
        if len(value) != len(args):
            raise _Mismatch
        items = [_coerce(v, a) for v, a in zip(value, args)]
    else:
        item = args[0] if args else Any
        items = [_coerce(v, item) for v in value]
    return tuple(items) if origin is tuple else list(items) if origin is list else type(value)(items)


def check_value(value: Any, annotation: Any, name: str) -> Any:
    """`value` checked (and coerced, see the module doc) against `annotation`; GapkitError naming
    `name`, the expected type and the value otherwise."""
    try:
        return _coerce(value, annotation)
    except _Mismatch:
        raise GapkitError(f"{name} must be {describe(annotation)}, got {value!r}") from None


def annotations_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved parameter annotations of a function or class constructor; a parameter whose
    annotation cannot be resolved (a name imported only for type checking) is left out."""
    target = fn.__init__ if inspect.isclass(fn) else inspect.unwrap(fn)
    try:
        return typing.get_type_hints(target)
    except Exception:  # one unresolvable name: resolve the others one by one
        out: dict[str, Any] = {}
        for key, ann in inspect.get_annotations(target).items():
            try:
                out[key] = eval(ann, getattr(target, "__globals__", {})) if isinstance(ann, str) else ann
            except Exception:
                continue
        return out


def check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], owner: str) -> dict[str, Any]:
    """Keyword arguments for `fn` checked against its annotations (unannotated ones pass)."""
    hints = annotations_of(fn)
    return {k: check_value(v, hints[k], f"{owner}: {k}") if k in hints else v for k, v in kwargs.items()}


def check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    """GapkitError unless `value` is None or a finite number > 0 (>= 0 with allow_zero); NaN and
    inf are rejected too."""
    if value is None:
        return
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        raise GapkitError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
