"""Recipe ablation under one fixed budget: dev metrics per recipe as a markdown table.

    python bench/ablate.py                              # every recipe, default budget
    python bench/ablate.py --budget "--limit 600 --epochs 2 --lr 5e-5" --only sum pcgrad
    python bench/ablate.py --md ablation.md

Each recipe is `mtcli train <budget> <recipe flags>`; the table reports the best epoch's dev
scores (on the budget's dev rows), the optimizer steps, the training examples seen and the
wall time. Compare rows only within one table: they share the budget, seed and machine.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

RECIPES = {
    "sum": "--sampler proportional --combine sum",
    "weighted": "--sampler proportional --combine weighted --task-weights sst=0.5,para=1,sts=1",
    "pcgrad": "--sampler proportional --combine pcgrad",
    "annealed-pcgrad": "--sampler annealed --combine pcgrad",
    "triple-batch-pcgrad": "--sampler triple-batch --combine pcgrad",
    "round-robin-pcgrad": "--sampler round-robin --combine pcgrad",
    "cls-pooling": "--sampler proportional --combine pcgrad --pooling cls",
    "siamese-cosine": "--sampler proportional --combine pcgrad --para-mode siamese --sts-mode cosine",
    "simcse": "--sampler proportional --combine pcgrad --simcse 0.1",
    "mnrl-cosine": "--sampler proportional --combine pcgrad --mnrl 0.5 --cosine-embedding-loss",
    "pretrain-heads": "--sampler proportional --combine pcgrad --pretrain-epochs 1",
}
DEFAULT_BUDGET = "--limit 600 --epochs 2 --lr 5e-5 --batch-size 32 --seed 0"


def run_recipe(name: str, flags: str, budget: str, out: Path) -> dict:
    command = [sys.executable, "-m", "mtcli", "train", *shlex.split(budget), *shlex.split(flags),
               "--out", str(out), "--name", name]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"recipe": name, "flags": flags, "error": done.stderr.strip().splitlines()[-1]}
    evaluation = json.loads((out / name / "eval.json").read_text())
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    config = json.loads((out / name / "config.json").read_text())
    per_step = 3 if config["combine"] == "pcgrad" or config["sampler"] == "triple-batch" else 1  # batches per step
    examples = len(steps) * config["batch_size"] * per_step
    tasks = evaluation["tasks"]
    return {"recipe": name, "flags": flags, "steps": len(steps), "examples": examples, "wall_s": wall,
            "sst": tasks["sst"]["accuracy"], "para": tasks["para"]["accuracy"], "sts": tasks["sts"]["pearson"],
            "overall": evaluation["overall"], "epoch": evaluation.get("epoch")}


def markdown(rows: list[dict], budget: str) -> str:
    lines = [f"Budget: `mtcli train {budget}` + the recipe's flags; best epoch's dev scores on the budget's dev rows.", "",
             "| recipe | flags | steps | examples | SST acc | para acc | STS r | overall | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['recipe']} | `{r['flags']}` | failed: {r['error']} |||||||")
            continue
        lines.append(f"| {r['recipe']} | `{r['flags']}` | {r['steps']} | {r['examples']} | {r['sst']:.3f} | "
                     f"{r['para']:.3f} | {r['sts']:.3f} | {r['overall']:.3f} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default=DEFAULT_BUDGET)
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES))
    parser.add_argument("--out", type=Path, default=Path("runs/ablate"))
    parser.add_argument("--md", type=Path, help="also write the table here")
    args = parser.parse_args()
    rows = []
    for name, flags in RECIPES.items():
        if args.only and name not in args.only:
            continue
        rows.append(run_recipe(name, flags, args.budget, args.out))
        print(markdown(rows[-1:], args.budget).splitlines()[-1], flush=True)
    table = markdown(rows, args.budget)
    print("\n" + table)
    if args.md:
        args.md.write_text(table)


if __name__ == "__main__":
    main()
