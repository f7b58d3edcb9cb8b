"""Values anyone may have written (a JSON record, a TOML recipe, a command line), checked against
what a dataclass's fields declare, by pydantic: the type (int, float, str, bool, X | None,
dict[str, X], list[X]) in strict mode (no "3" for 3, no true for 1), and the bounds annotated
beside the field, e.g. `epochs: Annotated[int, Field(ge=1)] = 3`. mtcli words the result as one
line naming the field ("is not a whole number", "must be at least 1"). Torch-free."""

import functools
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from mtcli.core.errors import UserError


def typed_values(cls, values, source: str | Path, *, ignore=(), unknown_ok: bool = False) -> dict:
    """`values` checked against `cls`'s fields' types: a dict of the fields' types (keys in `ignore`
    dropped; other unknown keys refused unless `unknown_ok`). Bounds are the class's to check
    (`bounds_problem`), where it can name the option as its user knows it."""
    if not isinstance(values, dict):
        raise UserError(f"{source}: expected an object of {cls.__name__} fields, found {type(values).__name__}")
    values = {k: v for k, v in values.items() if k not in ignore}
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown and not unknown_ok:
        raise UserError(f"{source}: {unknown[0]}: unknown field (fields: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)   # the types alone (bounds stripped)
    values = {k: v for k, v in values.items() if k in known}
    for key, value in values.items():
        if not has_type(value, hints[key]):
            raise UserError(f"{source}: {key}: {value!r} is not {type_name(hints[key])}")
    return values


@functools.cache
def _adapter(kind) -> TypeAdapter:
    return TypeAdapter(kind)


def has_type(value, kind) -> bool:
    """Whether a JSON/TOML value is of the annotation's type (pydantic, strict: an int is a
    float, a bool is no number)."""
    try:
        _adapter(kind).validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(k) for k in typing.get_args(kind))
    if origin is dict:
        return f"a table of {_plural(typing.get_args(kind)[1])}"
    if origin in (list, tuple):
        return f"a list of {_plural(typing.get_args(kind)[0])}"
    if origin is typing.Literal:
        return f"one of {', '.join(map(str, typing.get_args(kind)))}"
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(kind, str(kind))


def _plural(kind) -> str:
    return {int: "whole numbers", float: "numbers", str: "strings", bool: "true/false values"}.get(kind, type_name(kind))


# ---------------------------------------------------------------------------- bounds


def bounds_of(kind) -> tuple[type, FieldInfo] | None:
    """(the number type, its bounds) that an annotation declares, looking inside `X | None` and
    a mapping's values: `Annotated[int, Field(ge=1)]` -> (int, FieldInfo(ge=1)); None: no bounds."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        found = [b for k in typing.get_args(kind) if (b := bounds_of(k)) is not None]
        return found[0] if found else None
    if typing.get_origin(kind) is dict:
        return bounds_of(typing.get_args(kind)[1])
    if typing.get_origin(kind) is Annotated:
        base, *extras = typing.get_args(kind)
        info = next((e for e in extras if isinstance(e, FieldInfo)), None)
        return (base, info) if info is not None else None
    return None


@functools.cache
def _hints_with_bounds(cls) -> dict:
    return typing.get_type_hints(cls, include_extras=True)


def out_of_bounds(instance) -> tuple[str, str | None, object, str] | None:
    """The first number of a dataclass instance outside the bounds its field declares: (the field,
    the key where the field is a mapping or None, the value, the rule); None: all within."""
    hints = _hints_with_bounds(type(instance))
    for f in fields(instance):
        value = getattr(instance, f.name)
        for key, number in value.items() if isinstance(value, dict) else [(None, value)]:
            problem = bounds_problem(number, hints[f.name])
            if problem:
                return f.name, key, number, problem
    return None


def bounds_problem(value, kind) -> str | None:
    """Why a number of the right type lies outside the bounds its annotation declares ("must be
    at least 1"), or None; pydantic checks, the rule says the whole range (and the field's
    description, if any, follows in brackets)."""
    bounds = bounds_of(kind)
    if bounds is None or value is None:
        return None
    base, info = bounds
    try:
        _adapter(Annotated[float, info, FieldInfo(allow_inf_nan=False)]).validate_python(value, strict=True)
    except ValidationError:
        return rule(base, info)
    return None


def rule(base: type, info: FieldInfo) -> str:
    """The values a bounded number takes, in words: "must be at least 1", "must be in [0, 1)"."""
    at = {type(m): m for m in info.metadata}
    low = at[Ge].ge if Ge in at else at[Gt].gt if Gt in at else None
    high = at[Le].le if Le in at else at[Lt].lt if Lt in at else None
    whole = base is int
    if whole and Lt in at:   # a whole number below n is at most n - 1
        high, at[Le] = high - 1, Le(high - 1)
        del at[Lt]
    if low is not None and high is not None:
        if Ge in at and Le in at:
            text = f"must be between {_shown(low)} and {_shown(high)}"
        else:
            text = f"must be in {'[' if Ge in at else '('}{_shown(low)}, {_shown(high)}{']' if Le in at else ')'}"
    elif low is not None:
        if Gt in at:
            text = "must be a positive number" if low == 0 else f"must be a finite number > {_shown(low)}"
        else:
            text = f"must be at least {_shown(low)}" if whole else f"must be a finite number >= {_shown(low)}"
    elif high is not None:
        text = f"must be a finite number {'<=' if Le in at else '<'} {_shown(high)}"
    else:
        text = "must be a finite number"
    return f"{text} ({info.description})" if info.description else text


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"
