"""A sweep's space file (TOML): the base recipe, the objective, the search, the budget every trial
shares, the pruner, and the space itself, each of its keys a recipe key (a `mtcli train` flag
without its dashes):

    base = "recipe.toml"            # a recipe file, relative to this file (optional)
    objective = "overall"           # or a task's name: its headline dev metric (maximised)
    search = "tpe"                  # grid | random | tpe
    trials = 12                     # configurations to try (grid: at most every one)
    seeds = [0, 1]                  # each configuration's runs; its value is their mean
    pruner = "asha"                 # asha (successive halving) | median | none
    eval-every = 20                 # steps between the dev evaluations the pruner reads
    start = [{ lr = 5e-5 }, { lr = 1e-4, combine = "famo:lr=0.05" }]   # tried first (random, tpe)

    [budget]                        # options every trial shares, over the base recipe
    train-fraction = 0.1
    max-steps = 60

    [space]
    combine = ["sum", "pcgrad", "famo:lr=0.05"]        # a list: choices
    lr = { low = 1e-5, high = 2e-4, log = true }       # a table: a range (log-uniform)
    batch-size = { low = 16, high = 64, step = 16 }    # whole numbers: an integer range

`start` lists known recipes the search tries before it draws its own (the default, last
sweep's best): each a table of [space] keys, the keys it leaves out at the base recipe's value,
every value a point of the space (one of the choices, inside the range).

Paths (the base, and tasks, model-dir, data-dir in the budget) are relative to the space file's
folder. Everything is checked before any trial runs: unknown keys, choices that are not valid values of
their option (each is tried in a configuration), ranges on options that are not numbers, and a
grid over ranges are one-line errors naming the file and line. Torch-free.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import read_toml
from mtcli.core.typed import has_type, type_name
from mtcli.train.config import PATH_FIELDS, TrainConfig, path_in
from mtcli.train.recipe import field_keys, key_line, read_recipe

SEARCHES = ("grid", "random", "tpe")
PRUNERS = ("asha", "median", "none")
TOP_LEVEL = ("base", "objective", "search", "trials", "seeds", "pruner", "eval-every", "start", "budget", "space")
# Options a sweep sets itself, per trial: not in a budget or a space
SET_BY_THE_SWEEP = ("name", "out", "seed", "eval_every")


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: int | None = None       # whole numbers (an int option)


@dataclass
class Space:
    path: Path
    base: dict                    # TrainConfig fields: the base recipe, then the budget
    objective: str                # "overall" or a task name
    search: str
    trials: int
    seeds: list[int]
    pruner: str
    eval_every: int
    params: dict[str, list | Range] = field(default_factory=dict)   # TrainConfig field -> choices or a range
    start: list[dict] = field(default_factory=list)   # points of the space tried first: TrainConfig field -> value

    def config(self, values: dict, **run) -> TrainConfig:
        """The trial configuration: the base, the budget, the trial's values, `run` (name, out, seed)."""
        return TrainConfig(**{**self.base, **values, "eval_every": self.eval_every, **run})

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.params.values() if isinstance(v, list))

    def planned_trials(self) -> int:
        """Trials the sweep runs to the end: `trials`, and at most the whole grid for a grid search."""
        return min(self.trials, self.grid_size()) if self.search == "grid" else self.trials


def read_space(path: str | Path) -> Space:
    path = Path(path)
    text, document = read_toml(path, "space file")

    def where(key: str) -> str:
        line = key_line(text, key)
        return f"{path}:{line}" if line else str(path)

    def fail(key: str, what: str):
        raise UserError(f"{where(key)}: {key}: {what}")

    for key in document:
        if key not in TOP_LEVEL:
            fail(key, f"not a space file key (keys: {', '.join(TOP_LEVEL)}); options go in [budget] or [space]")
    base: dict = {}
    if "base" in document:
        if not isinstance(document["base"], str):
            fail("base", "must be the path of a recipe file")
        base, _ = read_recipe(path.parent / document["base"])
    keys, hints = field_keys(), typing.get_type_hints(TrainConfig)
    budget = document.get("budget", {})
    if not isinstance(budget, dict):
        fail("budget", "must be a table of options ([budget])")
    for key, value in budget.items():
        option = _option(keys, key, fail)
        if not has_type(value, hints[option]):
            fail(key, f"{excerpt(value)} is not {type_name(hints[option])}")
        base[option] = path_in(path.parent, option, value) if option in PATH_FIELDS else value
    objective = document.get("objective", "overall")
    search, pruner = document.get("search", "tpe"), document.get("pruner", "asha")
    if search not in SEARCHES:
        fail("search", f"{excerpt(search)} is not one of {', '.join(SEARCHES)}")
    if pruner not in PRUNERS:
        fail("pruner", f"{excerpt(pruner)} is not one of {', '.join(PRUNERS)}")
    trials, eval_every, seeds = document.get("trials", 10), document.get("eval-every", 0), document.get("seeds", [0])
    if not _whole(trials) or not 1 <= trials <= 10_000:
        fail("trials", "must be a whole number between 1 and 10000")
    if not _whole(eval_every) or eval_every < 0:
        fail("eval-every", "must be a whole number of steps >= 0 (0: the pruner reads the epoch ends)")
    if not isinstance(seeds, list) or not seeds or not all(_whole(s) and 0 <= s < 2**32 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        fail("seeds", "must be a list of different whole numbers >= 0, e.g. [0, 1, 2]")
    space = Space(path, base, objective, search, trials, seeds, pruner, eval_every)
    table = document.get("space", {})
    if not isinstance(table, dict) or not table:
        fail("space", "must be a table of at least one option ([space])")
    for key, value in table.items():
        option = _option(keys, key, fail)
        kind = hints[option]
        if isinstance(value, list):
            if not value or any(not has_type(v, kind) for v in value):
                fail(key, f"choices must be a non-empty list of {type_name(kind).removeprefix('a ')}s"
                     if value else "the list of choices is empty")
            twice = next((c for i, c in enumerate(value) if c in value[:i]), None)
            if twice is not None:
                fail(key, f"choice {excerpt(twice)} is listed twice; list each value once")
            for choice in value:   # each choice valid with the base: a bad one fails now, not in trial 7
                try:
                    space.config({option: choice}, name="check", out=".", seed=seeds[0])
                except UserError as e:
                    fail(key, f"choice {excerpt(choice)}: {e}")
            space.params[option] = value
        elif isinstance(value, dict):
            space.params[option] = found = _range(key, value, kind, fail)
            if search == "grid":
                fail(key, "grid search takes choices only: give a list of values")
            for end, number in (("low", found.low), ("high", found.high)):   # the option's own rule, now
                try:
                    space.config({option: number}, name="check", out=".", seed=seeds[0])
                except UserError as e:
                    fail(key, f"{end} {number:g} is not a value of {key} ({e})")
        else:
            fail(key, "give a list of choices or a range table { low = ..., high = ... }")
    # in the order of the recipe's fields, not the file's: the sweep folder's copy (tomli_w puts
    # range tables after the lists) reads and suggests in the same order as the file it came from
    space.params = {option: space.params[option] for option in hints if option in space.params}
    _check_points(space, fail)
    space.start = _start_points(document.get("start", []), space, keys, hints, fail)
    if objective != "overall":
        tasks = space.config({}, name="check", out=".", seed=seeds[0]).load_tasks()
        if objective not in tasks:
            fail("objective", f"{excerpt(objective)} is neither 'overall' nor a task of the recipe ({', '.join(tasks)})")
    return space


POINTS_CHECKED = 2000   # points of the space whose joint validity is checked before the first trial


def _check_points(space: Space, fail) -> None:
    """Every combination of the choices (and of each range's two ends) a valid recipe together:
    each value was checked alone, but `epochs = 1` with `pretrain-epochs = 1` is no recipe, and
    a search that may draw it would fail that trial. The first invalid one is an error now.
    Spaces of more than POINTS_CHECKED combinations are checked on their first ones."""
    import itertools

    options = list(space.params)
    ends = [choices if isinstance(choices, list) else [choices.low, choices.high] for choices in space.params.values()]
    for point in itertools.islice(itertools.product(*ends), POINTS_CHECKED):
        values = dict(zip(options, point))
        try:
            space.config(values, name="check", out=".", seed=space.seeds[0])
        except UserError as e:
            shown = ", ".join(f"{o.replace('_', '-')} = {excerpt(v)}" for o, v in values.items())
            fail("space", f"the point {shown} is no valid recipe ({e}); take a value out of a list or a range")


def _start_points(points, space: Space, keys: dict[str, str], hints: dict, fail) -> list[dict]:
    """`start`: each point a full set of the space's values, the ones it leaves out the base recipe's."""
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        fail("start", "must be a list of tables of [space] keys, e.g. [{ lr = 5e-5, combine = \"sum\" }]")
    if points and space.search == "grid":
        fail("start", "a grid search tries every point of the grid anyway; start is for random and tpe searches")
    base = space.config({}, name="check", out=".", seed=space.seeds[0]) if points else None
    full = []
    for number, point in enumerate(points, 1):
        given = {}
        for key, value in point.items():
            option = keys.get(key)
            if option not in space.params:
                fail("start", f"point {number}: {key} is not a key of [space] (the keys: "
                              f"{', '.join(o.replace('_', '-') for o in space.params)})")
            given[option] = value
        values = {}
        for option, choices in space.params.items():
            value = given.get(option, getattr(base, option))
            problem = _outside(value, choices, hints[option])
            if problem:
                whose = "" if option in given else " (the base recipe's value: give it in the point)"
                fail("start", f"point {number}: {option.replace('_', '-')} = {excerpt(value)}{whose} {problem}")
            # as the search would suggest it: the choice itself (its JSON names the trial's value), a float range's float
            values[option] = choices[choices.index(value)] if isinstance(choices, list) else \
                value if choices.step is not None else float(value)
        try:
            space.config(values, name="check", out=".", seed=space.seeds[0])
        except UserError as e:
            fail("start", f"point {number}: {e}")
        if values in full:
            fail("start", f"point {number} is point {full.index(values) + 1} again")
        full.append(values)
    return full


def _outside(value, choices: list | Range, kind) -> str | None:
    """Why `value` is not a point of `choices` (one of a list, inside a range), or None."""
    if isinstance(choices, list):
        if has_type(value, kind) and value in choices:
            return None
        return f"is not one of the choices ({', '.join(repr(c) for c in choices)})"
    whole = choices.step is not None
    if not has_type(value, int if whole else float) or not math.isfinite(value):   # has_type: no bools
        return f"is not {'a whole number' if whole else 'a number'}"
    if not choices.low <= value <= choices.high:
        return f"is outside the range {choices.low:g} to {choices.high:g}"
    if whole and (value - choices.low) % choices.step:
        return f"is not on the range's steps ({choices.low:g} + a multiple of {choices.step})"
    return None


def _option(keys: dict[str, str], key: str, fail) -> str:
    option = keys.get(key)
    if option is None:
        fail(key, "not a recipe key (the keys are `mtcli train`'s flags without the dashes)")
    if option in SET_BY_THE_SWEEP:
        fail(key, "set by the sweep for every trial (its seeds are `seeds`, its folder is the sweep's)")
    return option


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range(key: str, table: dict, kind, fail) -> Range:
    numeric = [k for k in typing.get_args(kind) or (kind,) if k in (int, float)]
    if not numeric:
        fail(key, f"a range needs a number option; {key} takes {type_name(kind)}: give a list of choices")
    unknown = set(table) - {"low", "high", "log", "step"}
    if unknown:
        fail(key, f"a range has low, high, and optionally log or step; not {sorted(unknown)[0]}")
    low, high, log, step = table.get("low"), table.get("high"), table.get("log", False), table.get("step")
    whole = numeric[0] is int
    for name, value in (("low", low), ("high", high)):
        if not has_type(value, int if whole else float) or not math.isfinite(value):
            fail(key, f"{name} must be {'a whole number' if whole else 'a number'}")
    if not low < high:
        fail(key, f"low ({low}) must be below high ({high})")
    if not isinstance(log, bool) or log and low <= 0:
        fail(key, "log = true needs low > 0")
    if step is not None and (not whole or not _whole(step) or step < 1):
        fail(key, "step is a whole number >= 1, for whole-number options")
    if log and step not in (None, 1):
        fail(key, "a log range has no step (Optuna draws whole numbers on a log scale with step 1): drop step or log")
    return Range(low, high, log, step if step is not None else (1 if whole else None))
