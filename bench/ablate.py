"""Recipe ablation under one fixed budget: dev metrics per recipe as a markdown table.

    python bench/ablate.py                              # every recipe, default budget
    python bench/ablate.py --budget "--train-fraction 0.1 --epochs 2" --only default sum
    python bench/ablate.py --md ablation.md
    python bench/ablate.py --only default $(python bench/ablate.py --weightings)   # every weighting

Each recipe is `mtcli train <budget> <recipe flags>` (the default recipe plus the flags);
the table reports the best epoch's dev scores, the optimizer steps, the training
examples seen and the wall time. A second table explains the weightings: per recipe, the
share of steps in which some pair of task gradients conflicted, the mean cosine of each
pair, and the mean weight each task's gradient got, over the whole run and over its first
and last tenth of steps (what a loss-based method's weights do as the losses fall). Compare
rows only within one table: they share the budget, seed and machine.

With `--json FILE` every row is written there as soon as it finishes, and a later call with
the same file skips the recipes it already holds (rows that failed run again): a table of
every method takes hours, and can be built over several sittings.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))
from mtcli.weightings import WEIGHTINGS  # noqa: E402

# Each recipe is the default recipe (`mtcli train` with no flags) plus its flags.
RECIPES = {
    "default": "",
    "sum": "--combine sum",
    "weighted": "--combine weighted --task-weights sst=0.5,para=1,sts=1",
    "annealed": "--sampler annealed",
    "triple-batch": "--sampler triple-batch",
    "round-robin": "--sampler round-robin",
    "upsample-3-1-4": "--sampler triple-batch --upsample sst=3,para=1,sts=4",
    "sum-one-batch-steps": "--combine sum --slots 1",
    "cls-pooling": "--pooling cls",
    "cross-heads": "--encoding para=cross,sts=cross",
    "heads-at-encoder-lr": "--head-lr 5e-5",
    "simcse": "--simcse 0.1",
    "mnrl-cosine-emb": "--mnrl 0.5 --cosine-embedding-loss",
    "pretrain-heads": "--pretrain-epochs 1 --epochs 3",
    "no-length-grouping": "--no-group-by-length",
    "four-tasks-cfimdb": "--tasks examples/cs224n-cfimdb.toml",   # a declared task file: sst, para, sts + cfimdb
}
# One row per multitask method, every family (the default is pcgrad; sum and weighted are above)
WEIGHTING_RECIPES = {name: f"--combine {name}" for name in WEIGHTINGS if name not in ("pcgrad", "sum", "weighted")}
RECIPES["temperature"] = "--sampler temperature:tau=2"
RECIPES.update(WEIGHTING_RECIPES)
# A seeded 20% of each training set (tasks keep their relative sizes, so the samplers
# differ as they do on the full data), two epochs, scored on the whole dev sets.
DEFAULT_BUDGET = "--train-fraction 0.2 --epochs 2 --seed 0"


def run_recipe(name: str, flags: str, budget: str, out: Path) -> dict:
    command = [sys.executable, "-m", "mtcli", "train", *shlex.split(budget), *shlex.split(flags),
               "--out", str(out), "--name", name]
    resumed = (out / name / "config.json").is_file()   # an earlier sitting was stopped during this row
    if resumed:
        command = [sys.executable, "-m", "mtcli", "train", "--resume", str(out / name)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"recipe": name, "flags": flags, "error": done.stderr.strip().splitlines()[-1]}
    evaluation = json.loads((out / name / "eval.json").read_text())
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    config = json.loads((out / name / "config.json").read_text())
    tasks = len(evaluation["tasks"])
    per_step = tasks if config["sampler"] == "triple-batch" else config.get("slots") or tasks  # task batches per step
    examples = len(steps) * config["batch_size"] * per_step
    return {"recipe": name, "flags": flags, "steps": len(steps), "examples": examples, "wall_s": wall, "resumed": resumed,
            "scores": evaluation["headline"], "overall": evaluation["overall"], "epoch": evaluation.get("epoch"),
            "gradients": gradient_summary(steps)}


def gradient_summary(steps: list[dict]) -> dict:
    """Over the steps with two tasks or more: conflicting share and mean cosine per pair (where the
    step computed task gradients: not under the losses family), and each task's mean weight over
    the run, its first tenth and its last tenth."""
    multi = [r for r in steps if len(r.get("weights", {})) > 1]
    mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
    cosines = {}
    for r in multi:
        for pair, c in r.get("grad_cosine", {}).items():
            cosines.setdefault("/".join(sorted(pair.split("/"))), []).append(c)

    def weights(records):
        per_task = {}
        for r in records:
            for task, w in r["weights"].items():
                per_task.setdefault(task, []).append(w)
        return {t: mean(v) for t, v in per_task.items()}

    tenth = max(1, len(multi) // 10)
    conflicts = [r["conflict_fraction"] > 0 for r in multi if "conflict_fraction" in r]
    return {"steps": len(multi), "conflicting": mean(conflicts),
            "cosine": {p: mean(v) for p, v in sorted(cosines.items())}, "weight": weights(multi),
            "weight_first": weights(multi[:tenth]), "weight_last": weights(multi[-tenth:])}


def markdown(rows: list[dict], budget: str) -> str:
    columns = list(dict.fromkeys(task for r in rows for task in r.get("scores", {})))  # every task of any recipe
    lines = [f"Budget: `mtcli train {budget}` + the recipe's flags; best epoch's dev scores (each task's "
             f"declared metric).", "",
             "| recipe | flags | steps | examples | " + " | ".join(columns) + " | overall | wall s |",
             "|---|---|---|---|" + "---|" * len(columns) + "---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['recipe']} | `{r['flags']}` | failed: {r['error']} |" + "|" * (len(columns) + 3))
            continue
        scores = " | ".join(f"{r['scores'][t]:.3f}" if t in r["scores"] else "-" for t in columns)
        lines.append(f"| {r['recipe']} | `{r['flags']}` | {r['steps']} | {r['examples']} | {scores} | "
                     f"{r['overall']:.3f} | {r['wall_s']:.0f}{' (resumed)' if r.get('resumed') else ''} |")
    return "\n".join(lines) + "\n"


def gradient_markdown(rows: list[dict]) -> str:
    rows = [r for r in rows if r.get("gradients", {}).get("steps")]
    if not rows:
        return ""
    pairs = list(dict.fromkeys(p for r in rows for p in r["gradients"]["cosine"]))
    tasks = list(dict.fromkeys(t for r in rows for t in r["gradients"]["weight"]))
    lines = ["Task gradients of the shared encoder over the steps with two tasks or more: steps with a "
             "conflicting pair (cosine < 0) and mean cosine per pair (- where the method computes no task "
             "gradients), each task's mean weight over the run and, first tenth -> last tenth of the steps.", "",
             "| " + " | ".join(["recipe", "steps with a conflict", *(f"cos {p}" for p in pairs),
                                *(f"w {t}" for t in tasks), *(f"w {t} first -> last" for t in tasks)]) + " |",
             "|---|---|" + "---|" * (len(pairs) + 2 * len(tasks))]
    for r in rows:
        g = r["gradients"]
        cells = [f"{g['cosine'][p]:+.3f}" if p in g["cosine"] else "-" for p in pairs]
        cells += [f"{g['weight'][t]:.3g}" if t in g["weight"] else "-" for t in tasks]
        first, last = g.get("weight_first", {}), g.get("weight_last", {})
        cells += [f"{first[t]:.3g} -> {last[t]:.3g}" if t in first and t in last else "-" for t in tasks]
        conflicting = "-" if g["conflicting"] is None else f"{g['conflicting']:.0%}"
        lines.append(f"| {r['recipe']} | {conflicting} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default=DEFAULT_BUDGET)
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES))
    parser.add_argument("--out", type=Path, default=Path("runs/ablate"))
    parser.add_argument("--md", type=Path, help="also write the table here")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--weightings", action="store_true", help="print the weighting recipes' names and exit")
    args = parser.parse_args()
    if args.weightings:
        print(" ".join(WEIGHTING_RECIPES))
        return
    rows = load_rows(args.json, args.budget) if args.json else []
    done = {r["recipe"] for r in rows if "error" not in r}
    rows = [r for r in rows if r["recipe"] in done]
    for name, flags in RECIPES.items():
        if args.only and name not in args.only or name in done:
            continue
        rows.append(run_recipe(name, flags, args.budget, args.out))
        print(markdown(rows[-1:], args.budget).splitlines()[-1], flush=True)
        if args.json:
            save_rows(args.json, args.budget, rows)
    order = list(RECIPES)   # the table shows what was asked for, in the order of RECIPES
    rows = sorted((r for r in rows if not args.only or r["recipe"] in args.only), key=lambda r: order.index(r["recipe"]))
    table = markdown(rows, args.budget) + "\n" + gradient_markdown(rows)
    print("\n" + table)
    if args.md:
        args.md.write_text(table)


def load_rows(path: Path, budget: str) -> list[dict]:
    """The rows an earlier call saved to `path`, if it ran under the same budget."""
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    if saved.get("budget") != budget:
        sys.exit(f"{path}: holds rows of budget {saved.get('budget')!r}, not {budget!r}: pass another --json")
    return saved["rows"]


def save_rows(path: Path, budget: str, rows: list[dict]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"budget": budget, "rows": rows}, indent=2))
    partial.replace(path)


if __name__ == "__main__":
    main()
