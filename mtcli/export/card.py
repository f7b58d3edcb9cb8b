"""The model card both exports carry (README.md): HF's front matter, then what a person checks
before trusting a model: its metrics, recipe, data, where and how long it trained, how to
reproduce it. Read from the checkpoint and the run folder that holds it.

The card is the file people upload, and the run folder it is read from may come from anyone,
so it quotes only what mtcli wrote, and only as text:
- every file it reads is a run file read by the run-file rules (`own_file`: no link, no
  device, FIFO or kernel file; a bounded size; UTF-8), and a file that is not what mtcli
  writes is one line naming it, never a traceback and never quoted;
- the recipe is parsed and checked as `mtcli train --config` would, then written anew from
  the parsed values (a comment or a stray line of the file is not quoted);
- the front matter is YAML whose every string is escaped to printable ASCII (`yaml_value`);
  the body's text is Markdown-escaped (`md_text`) and the recipe fenced by a fence longer
  than any run of backticks in it, so nothing quoted becomes a heading, a link, HTML or the
  end of the code block.
"""

import math
import re
import tomllib
from pathlib import Path

from mtcli.core.errors import UserError, excerpt
from mtcli.core.fileio import own_file, read_document, read_json_dict
from mtcli.core.version import __version__
from mtcli.run.folder import EVAL, RECIPE

RECIPE_LIMIT = 64 * 2**10   # bytes: the largest recipe a card quotes (mtcli writes a few KiB)
TEST_EVAL = "eval-test.json"
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|<>&~$])")


# ---------------------------------------------------------------------- quoting


def md_text(value) -> str:
    """`value` as one line of Markdown text that shows as written: whitespace of any kind (line
    and paragraph separators too) one space, control characters dropped, every punctuation
    mark Markdown or HTML could read backslash-escaped."""
    text = " ".join(str(value).split())
    text = "".join(c for c in text if c.isprintable())
    return _MARKDOWN.sub(r"\\\1", text)


def fenced(text: str, language: str) -> list[str]:
    """`text` as a fenced code block whose fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, text, fence]


def _yaml_string(text: str) -> str:
    out = []
    for c in text:
        code = ord(c)
        if 0xD800 <= code <= 0xDFFF:   # a lone surrogate (JSON can spell one) is no character: U+FFFD
            code, c = 0xFFFD, "\ufffd"
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= code < 0x7F:
            out.append(c)
        else:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def yaml_value(value) -> str:
    """`value` (None, booleans, numbers, strings, lists, dicts of them) as one line of YAML flow
    that yaml.safe_load reads back as `value`: strings double-quoted with every character
    outside printable ASCII escaped (YAML's \\uXXXX and \\UXXXXXXXX), non-finite floats as
    .nan, .inf and -.inf."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return _yaml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_string(str(k))}: {yaml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no YAML for {type(value).__name__}")


def _shown(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value)


# ---------------------------------------------------------------------- what the run folder holds


def _results(path: Path, checkpoint: Path, split: str, model) -> list[dict]:
    """model-index results of an eval file, if it evaluated this checkpoint; an eval file that is
    not what mtcli writes (its tasks not an object, a metric no float) is one UserError."""
    scores = read_json_dict(own_file(path, "evaluation"))
    if scores is None or scores.get("checkpoint") != checkpoint.name:
        return []   # the run's figures are its best checkpoint's, not this one's

    def damaged(where: str):
        raise UserError(f"{path}: {where}: not what `mtcli eval` writes, so the model card would publish it: "
                        f"evaluate again (`mtcli eval --split {split}`) or move the file away")

    tasks = scores.get("tasks")
    if tasks is None:
        return []
    if not isinstance(tasks, dict):
        damaged("tasks is not an object of each task's metrics")
    results = []
    for name, metrics in tasks.items():
        if name not in model.tasks:
            continue
        if not isinstance(metrics, dict):
            damaged(f"tasks.{excerpt(name)} is not an object of metrics")
        values = []
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "loss":
                continue
            try:
                value = float(value)
            except OverflowError:
                damaged(f"tasks.{excerpt(name)}.{excerpt(key)} is {len(str(value))} digits long, no metric")
            values.append({"type": key, "value": value})
        results.append({"task": {"type": model.tasks[name].kind, "name": name},
                        "dataset": {"name": name, "type": name, "split": split}, "metrics": values})
    return results


def _recipe(path: Path) -> str | None:
    """The run's recipe as mtcli writes it, from the values the file sets (checked as `mtcli
    train --config` checks them); None when the run has none."""
    import tomli_w

    from mtcli.train.recipe import recipe_values

    own_file(path, "recipe file")
    if not path.exists():
        return None
    text = read_document(path, "recipe file", limit=RECIPE_LIMIT)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e}); the run's recipe was edited: restore it or move it away") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a recipe file") from None
    recipe_values(path, text, document)   # every key a recipe key, every value of its option's type
    return tomli_w.dumps(document).rstrip()


# ---------------------------------------------------------------------- the card


def model_card(checkpoint: Path, model, meta: dict, usage: list[str]) -> str:
    """README.md for an export of `checkpoint`; `usage`: the lines that say how to use this kind
    of export (mtcli's own text, not escaped)."""
    from mtcli.run.folder import enclosing_run_dir
    from mtcli.run.provenance import read_record

    checkpoint = Path(checkpoint)
    run = enclosing_run_dir(checkpoint)
    name = run.name if run is not None else checkpoint.name
    dev = _results(run / EVAL, checkpoint, "dev", model) if run is not None else []
    test = _results(run / TEST_EVAL, checkpoint, "test", model) if run is not None else []
    record = read_record(run) if run is not None else None
    recipe = _recipe(run / RECIPE) if run is not None else None
    config = model.encoder.config
    front = {"library_name": "sentence-transformers", "pipeline_tag": "sentence-similarity",
             "tags": ["mtcli", "multitask", config.model_type, "sentence-transformers", "feature-extraction"],
             "datasets": list(model.tasks), "model-index": [{"name": name, "results": dev + test}]}
    tasks = ", ".join(md_text(t) for t in model.tasks)
    lines = ["---", *(f"{key}: {yaml_value(value)}" for key, value in front.items()), "---", "",
             f"# {md_text(name)}", "",
             f"A {config.model_type} encoder ({model.encoder.num_parameters():,} parameters, {config.num_hidden_layers} "
             f"layers x {config.hidden_size}) fine-tuned by mtcli {__version__} on {len(model.tasks)} tasks "
             f"({tasks}), {model.head_config.pooling} pooling.", "", *usage, ""]
    for title, results in (("Dev metrics", dev), ("Test metrics", test)):
        if results:
            lines += [f"## {title}", "", "| task | metric | value |", "|---|---|---|"]
            lines += [f"| {md_text(r['task']['name'])} | {md_text(m['type'])} | {_shown(m['value'])} |"
                      for r in results for m in r["metrics"]]
            lines.append("")
    lines += _training(meta)
    if recipe is not None:
        lines += ["## Recipe", "", *fenced(recipe, "toml"), "",
                  "Reproduce: `mtcli train --config recipe.toml` (the recipe above), then `mtcli export --checkpoint "
                  "runs/<name>/best --format hf --out <folder>` (or without `--format hf`, ONNX graphs).", ""]
    if record:
        lines += _data(record)
    return "\n".join(lines)


def _training(meta: dict) -> list[str]:
    trained = meta.get("trained") if isinstance(meta.get("trained"), dict) else None
    if not trained and meta.get("step") is None:
        return []
    lines = ["## Training", ""]
    if meta.get("step") is not None:
        lines.append(f"Checkpoint after step {md_text(meta.get('step'))} (epoch {md_text(meta.get('epoch'))}).")
    if trained:
        shown = {k: md_text(trained.get(k)) for k in ("machine", "processor", "device", "threads", "processes",
                                                      "seconds", "from_step")}
        since = f", steps after {shown['from_step']}" if trained.get("from_step") else ""
        lines.append(f"Trained on {shown['machine']} ({shown['processor']}; device {shown['device']}, "
                     f"{shown['threads']} threads, {shown['processes']} process(es)) for {shown['seconds']} s{since}.")
    return [*lines, ""]


def _data(record: dict) -> list[str]:
    def row(task: str, split: str, entry: dict) -> str:   # read_record checked the digest is 64 hex digits
        return f"| {md_text(task)} | {split} | {md_text(Path(entry['path']).name)} | `{entry['sha256']}` |"

    lines = ["## Data", "", "| task | split | file | sha256 |", "|---|---|---|---|"]
    for task, splits in (record.get("files") or {}).items():
        lines += [row(task, md_text(split), entry) for split, entry in splits.items()]
    for task, entries in (record.get("unlabeled") or {}).items():   # distillation: text a teacher labelled
        lines += [row(task, "unlabeled (a teacher's labels)", entry) for entry in entries]
    return [*lines, ""]
