"""Recipe files: a run's training options as TOML, one key per `mtcli train` flag, named as the
flag without its dashes:

    combine = "cagrad:c=0.4"
    batch-size = 16
    task-weights = { sst = 0.5, para = 1 }      # the flags' task=value lists are TOML tables
    cosine-embedding-loss = true                # or a number: the loss's weight

    mtcli train --config recipe.toml                # the recipe
    mtcli train --config recipe.toml --epochs 1     # a flag given on the command line wins
    mtcli train --config recipe.toml --encoding para=siamese   # a table flag wins key by key

A recipe holds what is trained, not where: `out` and `name` are no keys of it (--out, --name).
Paths in a recipe (tasks, model-dir, data-dir) are relative to the recipe's folder. Every
run writes its resolved recipe, every option but its name and folder, to runs/<name>/recipe.toml, so
`mtcli train --config runs/<name>/recipe.toml` trains it again. A recipe may come from anyone:
unknown keys and values of the wrong type are one-line errors naming the file, the line and
the key; the values' ranges are checked as the flags' are. Torch-free.
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import fields
from pathlib import Path

import tomli_w

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import read_toml, write_text
from mtcli.core.typed import has_type, type_name
from mtcli.run.folder import RECIPE, WHERE
from mtcli.train.config import PATH_FIELDS, PATH_LIST_FIELDS, TrainConfig, flag_of, path_in


# Fields a recipe leaves out: where a run goes is not part of what is trained (a colleague's
# recipe must not write into their folders); --out and --name say it
NOT_WRITTEN = WHERE
# Fields that are tables of task=value: a flag's table goes over the recipe's key by key
TABLES = ("encodings", "task_weights", "upsample")


def field_keys() -> dict[str, str]:
    """Every recipe key and the TrainConfig field it sets."""
    return {flag_of(f.name).removeprefix("--"): f.name for f in fields(TrainConfig) if f.init}


def read_recipe(path: str | Path) -> tuple[dict, dict[str, int]]:
    """The TrainConfig field values a recipe file sets, each of its field's type, paths resolved
    against the file's folder; and the line of each field's key (for errors about its value)."""
    path = Path(path)
    return recipe_values(path, *read_toml(path, "recipe file"))


def recipe_values(path: Path, text: str, document: dict) -> tuple[dict, dict[str, int]]:
    """`read_recipe` of a recipe already read: its `text` (for line numbers) and TOML `document`."""
    keys, hints = field_keys(), typing.get_type_hints(TrainConfig)
    values, lines = {}, {}
    for key, value in document.items():
        where = f"{path}:{key_line(text, key)}" if key_line(text, key) else str(path)
        field = keys.get(key)
        if field in NOT_WRITTEN:
            raise UserError(f"{where}: {key}: where a run goes is not part of its recipe (a recipe holds what is "
                            f"trained); drop the key and pass --{key} on the command line")
        if field is None:
            near = difflib.get_close_matches(key.replace("_", "-"), keys, n=1)
            hint = f"did you mean {excerpt(near[0])}? " if near else ""
            raise UserError(f"{where}: {key}: not a recipe key; {hint}the keys are `mtcli train`'s flags without "
                            f"the dashes (mtcli train --help)")
        if field == "cosine_embedding" and isinstance(value, bool):
            value = 1.0 if value else 0.0          # the flag's on/off; a number is the loss's weight
        if not has_type(value, hints[field]):
            raise UserError(f"{where}: {key}: {excerpt(value)} is not {type_name(hints[field])}")
        if field in PATH_FIELDS:
            value = path_in(path.parent, field, value)
        if field in PATH_LIST_FIELDS:
            value = [path_in(path.parent, field, item) for item in value]
        values[field], lines[field] = value, key_line(text, key)
    return values, lines


def key_line(text: str, key: str) -> int | None:
    """The line (1-based) where a top-level key of a recipe is set, if it is found there."""
    pattern = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
    return next((number for number, line in enumerate(text.splitlines(), 1) if pattern.match(line)), None)


def recipe_of(config: TrainConfig) -> dict:
    """A configuration as a recipe: every option set (None is the option's absence) but the name."""
    values = config.to_dict()
    recipe = {}
    for key, field in field_keys().items():
        value = values[field]
        if value is None or field in NOT_WRITTEN:
            continue
        if field == "cosine_embedding" and value in (0.0, 1.0):
            value = bool(value)
        recipe[key] = value
    return recipe


def write_recipe(run_dir: Path, config: TrainConfig) -> Path:
    header = (f"# The recipe of this run: `mtcli train --config {Path(run_dir) / RECIPE}` trains it again\n"
              f"# (a new run: give it a --name). Keys are `mtcli train`'s flags without the dashes.\n\n")
    return write_text(Path(run_dir) / RECIPE, header + tomli_w.dumps(recipe_of(config)))


def with_recipe(path: str | Path, options: dict, given: set[str]) -> TrainConfig:
    """The configuration of `options` (TrainConfig fields from the command line) with the recipe's
    values for every field whose flag was not given (`given`: the fields the command line set).
    A value out of range names the recipe's line where the recipe set it."""
    values, lines = read_recipe(path)
    merged = {**options, **{field: value for field, value in values.items() if field not in given}}
    for field in TABLES:   # --encoding para=siamese over { para = "cross", sts = "cross" }: sts stays cross
        if field in given and isinstance(values.get(field), dict) and isinstance(options.get(field), dict):
            merged[field] = {**values[field], **options[field]}
    try:
        return TrainConfig(**merged)
    except UserError as e:
        named = [field for field in values if field not in given and flag_of(field) in str(e)]
        if len(named) == 1:
            line = lines[named[0]]
            raise UserError(f"{path}{f':{line}' if line else ''}: {e}") from None
        raise
