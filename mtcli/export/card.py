"""The model card both exports carry (README.md): HF's front matter, then what a person checks
before trusting a model: its metrics, recipe, data, where and how long it trained, how to
reproduce it. Read from the checkpoint and the run folder that holds it."""

import json
from pathlib import Path

from mtcli.core.fileio import read_json_dict
from mtcli.run.folder import EVAL, RECIPE
from mtcli.core.version import __version__


def _results(path: Path, checkpoint: Path, split: str, model) -> list[dict]:
    """model-index results of an eval file, if it evaluated this checkpoint."""
    scores = read_json_dict(path)
    if scores is None or scores.get("checkpoint") != checkpoint.name:
        return []   # the run's figures are its best checkpoint's, not this one's
    results = []
    for name, metrics in (scores.get("tasks") or {}).items():
        if isinstance(metrics, dict) and name in model.tasks:
            results.append({"task": {"type": model.tasks[name].kind, "name": name},
                            "dataset": {"name": name, "type": name, "split": split},
                            "metrics": [{"type": k, "value": v} for k, v in metrics.items()
                                        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "loss"]})
    return results


def model_card(checkpoint: Path, model, meta: dict, usage: list[str]) -> str:
    """README.md for an export of `checkpoint`. Every front-matter value is written by json.dumps
    (JSON is YAML); `usage`: the lines that say how to use this kind of export."""
    from mtcli.run.folder import enclosing_run_dir
    from mtcli.run.provenance import read_record

    checkpoint = Path(checkpoint)
    run = enclosing_run_dir(checkpoint)
    name = run.name if run is not None else checkpoint.name
    dev = _results(run / EVAL, checkpoint, "dev", model) if run is not None else []
    test = _results(run / "eval-test.json", checkpoint, "test", model) if run is not None else []
    record = read_record(run) if run is not None else None
    recipe = run / RECIPE if run is not None else None
    config = model.encoder.config
    front = {"library_name": "sentence-transformers", "pipeline_tag": "sentence-similarity",
             "tags": ["mtcli", "multitask", config.model_type, "sentence-transformers", "feature-extraction"],
             "datasets": list(model.tasks), "model-index": [{"name": name, "results": dev + test}]}
    lines = ["---", *(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in front.items()), "---", "",
             f"# {name}", "",
             f"A {config.model_type} encoder ({model.encoder.num_parameters():,} parameters, {config.num_hidden_layers} "
             f"layers x {config.hidden_size}) fine-tuned by mtcli {__version__} on {len(model.tasks)} tasks "
             f"({', '.join(model.tasks)}), {model.head_config.pooling} pooling.", "", *usage, ""]
    for title, results in (("Dev metrics", dev), ("Test metrics", test)):
        if results:
            lines += [f"## {title}", "", "| task | metric | value |", "|---|---|---|"]
            lines += [f"| {r['task']['name']} | {m['type']} | {m['value']:.4f} |" for r in results for m in r["metrics"]]
            lines.append("")
    trained = meta.get("trained") if isinstance(meta.get("trained"), dict) else None
    if trained or meta.get("step") is not None:
        lines += ["## Training", ""]
        if meta.get("step") is not None:
            lines.append(f"Checkpoint after step {meta.get('step')} (epoch {meta.get('epoch')}).")
        if trained:
            since = f", steps after {trained.get('from_step')}" if trained.get("from_step") else ""
            lines.append(f"Trained on {trained.get('machine')} ({trained.get('processor')}; device {trained.get('device')}, "
                         f"{trained.get('threads')} threads, {trained.get('processes')} process(es)) for "
                         f"{trained.get('seconds')} s{since}.")
        lines.append("")
    if recipe is not None and recipe.is_file():
        lines += ["## Recipe", "", "```toml", recipe.read_text(encoding="utf-8").rstrip(), "```", "",
                  "Reproduce: `mtcli train --config recipe.toml` (the recipe above), then `mtcli export --checkpoint "
                  "runs/<name>/best --format hf --out <folder>` (or without `--format hf`, ONNX graphs).", ""]
    if record:
        lines += ["## Data", "", "| task | split | file | sha256 |", "|---|---|---|---|"]
        for task, splits in (record.get("files") or {}).items():
            for split, entry in splits.items():
                lines.append(f"| {task} | {split} | {Path(entry['path']).name} | `{entry['sha256']}` |")
        for task, entries in (record.get("unlabeled") or {}).items():   # distillation: text a teacher labelled
            for entry in entries:
                lines.append(f"| {task} | unlabeled (a teacher's labels) | {Path(entry['path']).name} | "
                             f"`{entry['sha256']}` |")
        lines.append("")
    return "\n".join(lines)
