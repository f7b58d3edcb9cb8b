"""mtcli.core.typed: types checked strictly by pydantic, bounds annotated beside a field and worded
as one rule."""

from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest
from pydantic import Field

from mtcli.core.errors import UserError
from mtcli.core.typed import bounds_problem, has_type, out_of_bounds, type_name, typed_values


@pytest.mark.parametrize("value, kind, fits", [
    (3, int, True), (True, int, False), (3.0, int, False), ("3", int, False),
    (3, float, True), (2.5, float, True), (False, float, False), ("2.5", float, False),
    (True, bool, True), (1, bool, False), ("x", str, True), (1, str, False),
    (None, int | None, True), ({"a": 1, "b": 2.5}, dict[str, float], True), ({"a": "x"}, dict[str, float], False),
    (["a", "b"], list[str], True), (["a", 1], list[str], False), ("min", Literal["min", "max"], True),
    ("mean", Literal["min", "max"], False),
])
def test_has_type_is_strict(value, kind, fits):
    assert has_type(value, kind) is fits


@pytest.mark.parametrize("kind, name", [
    (int, "a whole number"), (float | None, "a number or null"), (dict[str, float], "a table of numbers"),
    (list[str], "a list of strings"), (Literal["min", "max"], "one of min, max"),
])
def test_type_names(kind, name):
    assert type_name(kind) == name


@pytest.mark.parametrize("kind, bad, rule", [
    (Annotated[int, Field(ge=1)], 0, "must be at least 1"),
    (Annotated[int, Field(ge=0, lt=2**32)], 2**32, "must be between 0 and 4294967295"),
    (Annotated[int, Field(ge=1, le=10)], 11, "must be between 1 and 10"),
    (Annotated[float, Field(gt=0)], 0.0, "must be a positive number"),
    (Annotated[float, Field(gt=0)], float("nan"), "must be a positive number"),
    (Annotated[float, Field(ge=0)], -1.0, "must be a finite number >= 0"),
    (Annotated[float, Field(ge=0)], float("inf"), "must be a finite number >= 0"),
    (Annotated[float, Field(gt=1)], 1.0, "must be a finite number > 1"),
    (Annotated[float, Field(ge=0, lt=1)], 1.0, "must be in [0, 1)"),
    (Annotated[float, Field(gt=0, le=1)], 0.0, "must be in (0, 1]"),
    (Annotated[float, Field(ge=-1, le=1, description="a cosine")], 2.0, "must be between -1 and 1 (a cosine)"),
    (Annotated[float, Field(ge=0)] | None, -0.5, "must be a finite number >= 0"),
    (dict[str, Annotated[int, Field(ge=1)]], 0, "must be at least 1"),
])
def test_bounds_are_one_rule(kind, bad, rule):
    assert bounds_problem(bad, kind) == rule


def test_values_within_bounds_and_unbounded_ones_pass():
    assert bounds_problem(1, Annotated[int, Field(ge=1)]) is None
    assert bounds_problem(0.5, Annotated[float, Field(ge=0, lt=1)]) is None
    assert bounds_problem(None, Annotated[float, Field(gt=0)] | None) is None
    assert bounds_problem(-7, int) is None


@dataclass
class Settings:
    epochs: Annotated[int, Field(ge=1)] = 3
    lr: Annotated[float, Field(gt=0)] | None = None
    names: list[str] = field(default_factory=list)


def test_typed_values_names_the_source_and_the_field():
    assert typed_values(Settings, {"epochs": 2, "lr": 1}, "run.json") == {"epochs": 2, "lr": 1}
    with pytest.raises(UserError, match=r"^run.json: epochs: '3' is not a whole number$"):
        typed_values(Settings, {"epochs": "3"}, "run.json")
    with pytest.raises(UserError, match=r"^run.json: names: \['a', 2\] is not a list of strings$"):
        typed_values(Settings, {"names": ["a", 2]}, "run.json")
    with pytest.raises(UserError, match=r"^run.json: batch: unknown field \(fields: epochs, lr, names\)$"):
        typed_values(Settings, {"batch": 1}, "run.json")
    assert typed_values(Settings, {"batch": 1}, "run.json", unknown_ok=True) == {}
    with pytest.raises(UserError, match=r"^run.json: expected an object of Settings fields, found list$"):
        typed_values(Settings, [], "run.json")


@dataclass
class Bounded:
    epochs: Annotated[int, Field(ge=1)] = 3
    weights: dict[str, Annotated[float, Field(ge=0)]] = field(default_factory=dict)
    name: str = "x"


def test_out_of_bounds_names_the_first_field_and_a_mappings_key():
    assert out_of_bounds(Bounded()) is None
    assert out_of_bounds(Bounded(epochs=0)) == ("epochs", None, 0, "must be at least 1")
    assert out_of_bounds(Bounded(weights={"a": 1.0, "b": -2.0})) == ("weights", "b", -2.0,
                                                                      "must be a finite number >= 0")
