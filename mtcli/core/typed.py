"""Reading a dataclass back from JSON or TOML that anyone may have written: every field of the
declared type (int, float, str, bool, X | None, dict[str, X], list[X]), no unknown keys, one
UserError naming the source and the field otherwise. Torch-free."""

import types
import typing
from dataclasses import fields
from pathlib import Path

from mtcli.core.errors import UserError


def typed_values(cls, values, source: str | Path, *, ignore=(), unknown_ok: bool = False) -> dict:
    """`values` checked against `cls`'s fields: a dict of the fields' types (keys in `ignore`
    dropped; other unknown keys refused unless `unknown_ok`)."""
    if not isinstance(values, dict):
        raise UserError(f"{source}: expected an object of {cls.__name__} fields, found {type(values).__name__}")
    values = {k: v for k, v in values.items() if k not in ignore}
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown and not unknown_ok:
        raise UserError(f"{source}: {unknown[0]}: unknown field (fields: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    values = {k: v for k, v in values.items() if k in known}
    for key, value in values.items():
        if not has_type(value, hints[key]):
            raise UserError(f"{source}: {key}: {value!r} is not {type_name(hints[key])}")
    return values


def has_type(value, kind) -> bool:
    """Whether a JSON/TOML value fits an annotation."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(has_type(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin is dict:
        key_type, value_type = typing.get_args(kind)
        return isinstance(value, dict) and all(has_type(k, key_type) and has_type(v, value_type)
                                               for k, v in value.items())
    if origin in (list, tuple):
        item = typing.get_args(kind)[0]
        return isinstance(value, (list, tuple)) and all(has_type(v, item) for v in value)
    return False


def type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(k) for k in typing.get_args(kind))
    if origin is dict:
        return f"a table of {_plural(typing.get_args(kind)[1])}"
    if origin in (list, tuple):
        return f"a list of {_plural(typing.get_args(kind)[0])}"
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(kind, str(kind))


def _plural(kind) -> str:
    return {int: "whole numbers", float: "numbers", str: "strings", bool: "true/false values"}.get(kind, type_name(kind))
