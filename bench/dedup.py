"""Scoring pairs a sentence at a time: each distinct sentence of a window encoded once.

    python bench/dedup.py --export export --queries 100 --candidates 100

Two inputs, each scored through `Scorer.score` with dedup on (embed.onnx once per
distinct sentence + the task's head graph) and off (the whole pair graph per row), side
by side in one process, for the separately encoded tasks of the export:
  - query x candidates: Q sentences each paired with the same C candidates (Q*C pairs,
    Q+C distinct sentences): the case dedup is for;
  - sts-train: 6,040 pairs with almost no repeated sentence: dedup must not slow it down.
Prints a markdown table (rows/s, the ratio, max |difference|) and the environment.
"""

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from mtcli.core.data import read_split  # noqa: E402
from mtcli.core.tasks import load_task_file  # noqa: E402
from mtcli.inference.scorer import Scorer  # noqa: E402


def timed(scorer: Scorer, task: str, rows, repeats: int) -> tuple[float, np.ndarray]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = scorer.score(task, rows)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=Path("export"))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    on = Scorer(args.export, providers=["cpu"])
    off = Scorer(args.export, providers=["cpu"], dedup=False)
    tasks = [t for t, entry in on.manifest["tasks"].items() if entry["encoding"] == "separate"]
    train = read_split(load_task_file()["sts"], "train").examples
    sentences = list(dict.fromkeys(s for ex in train for s in ex.texts))
    queries, candidates = sentences[: args.queries], sentences[args.queries: args.queries + args.candidates]
    inputs = {f"query x candidates ({len(queries)} x {len(candidates)})": [(q, c) for q in queries for c in candidates],
              "sts-train": [ex.texts for ex in train]}
    print(json.dumps({"date": str(date.today()), "machine": platform.node(), "threads": os.cpu_count(),
                      "export": str(args.export), "repeats": args.repeats}))
    print("| input | pairs | distinct sentences | task | whole pair graph rows/s | a sentence at a time rows/s | "
          "speedup | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in inputs.items():
        distinct = len({s for row in rows for s in row})
        for task in tasks:
            timed(on, task, rows[:64], 1), timed(off, task, rows[:64], 1)  # warm-up
            t_off, whole = timed(off, task, rows, args.repeats)
            t_on, by_sentence = timed(on, task, rows, args.repeats)
            print(f"| {name} | {len(rows):,} | {distinct:,} | {task} | {len(rows) / t_off:,.0f} | "
                  f"{len(rows) / t_on:,.0f} | {t_off / t_on:.2f}x | {np.abs(whole - by_sentence).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
