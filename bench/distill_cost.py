"""What distillation costs, side by side in one run (BENCHMARKS.md, Distillation):

  labelling   the teacher export's pass over the built-in training rows (what `train --teacher`
              does once per teacher and rows): rows/s per task and the seconds in all
  step        the student's default-recipe steps with a teacher's targets against plain steps
              (the same plan and rows; the targets are arrays in memory, their values do not
              change the work, so this arm gives the step uniform teacher predictions instead
              of labelling the rows first); each arm --repeats fresh processes, in turn
  scoring     the teacher's and the student's exports on the same STS dev pairs (rows/s,
              fp32 and int8 where the export has int8 graphs)

    python bench/distill_cost.py --teacher export-teacher-mpnet --student export-student-s0
    python bench/distill_cost.py --teacher export-teacher-mpnet --student export-student-s0 --label-rows 2000

The sgemm roof of the same run is printed with the figures (bench/roof.py).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from roof import sgemm_gflops  # noqa: E402


def labelling(teacher: Path, rows_per_task: int | None) -> list[dict]:
    from mtcli.core.data import read_splits
    from mtcli.core.tasks import load_task_file
    from mtcli.inference.scorer import Scorer

    scorer = Scorer(teacher, providers=("cpu",))
    results = []
    for name, split in read_splits(load_task_file(), "train").items():
        rows = [ex.texts for ex in split.examples][:rows_per_task]
        start = time.perf_counter()
        scorer.score(name, rows)
        seconds = time.perf_counter() - start
        results.append({"task": name, "rows": len(rows), "all_rows": len(split), "seconds": round(seconds, 1),
                        "rows_per_s": round(len(rows) / seconds, 1)})
    return results


def step_child(teacher: str, steps: int) -> None:
    """One arm in this process: the default recipe's first `steps` steps, timed (the first is warm-up)."""
    import numpy as np
    from rich.console import Console

    import mtcli.train.loop as loop
    import mtcli.train.teacher as teacher_module
    from mtcli.train import TrainConfig
    from mtcli.run.teacher_labels import Labels

    def uniform_labels(units, tasks, teachers, **_):
        labels = {}
        for unit in units.values():
            for name in unit.tasks:
                task = tasks[name]
                shape = (len(unit), len(task.labels)) if task.kind == "multiclass" else (len(unit),)
                fill = 1 / len(task.labels) if task.kind == "multiclass" else 0.5 if task.kind == "binary" else \
                    sum(task.range) / 2
                labels[name] = Labels("bench", "bench", teacher, np.full(shape, fill, dtype=np.float32))
        return labels

    teacher_module.label_units = uniform_labels
    config = TrainConfig(out="/nonexistent", name="bench", seed=0, teacher=[teacher] if teacher else [])
    trainer = loop.Trainer(config, Console(quiet=True))
    trainer.phases.enter(1)
    seconds, examples = [], []
    for step, slots in enumerate(trainer.sampler.epoch_plan(1)[:steps]):
        start = time.perf_counter()
        result = trainer.step(slots, step)
        seconds.append(time.perf_counter() - start)
        examples.append(result.examples)
    print(json.dumps({"seconds": statistics.median(seconds[1:]), "examples": statistics.median(examples[1:])}))


def step_arm(teacher: str | None, steps: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child-teacher", teacher or "", "--steps", str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scoring(export: Path, pairs: list[tuple[str, str]], int8: bool, repeats: int) -> float | None:
    from mtcli.inference.scorer import Scorer

    try:
        scorer = Scorer(export, providers=("cpu",), int8=int8)
        scorer.score("sts", pairs[:64])
    except Exception:   # no int8 graphs in this export
        return None
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        scorer.score("sts", pairs)
        rates.append(len(pairs) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, help="the teacher's export")
    parser.add_argument("--student", type=Path, help="the student's export")
    parser.add_argument("--label-rows", type=int, help="label the first N training rows of each task (default: all)")
    parser.add_argument("--steps", type=int, default=6, help="steps per training arm, the first one warm-up")
    parser.add_argument("--score-rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--child-teacher", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_teacher is not None:
        step_child(args.child_teacher, args.steps)
        return
    from mtcli.core.data import read_split
    from mtcli.core.tasks import load_task_file

    roof = sgemm_gflops()
    figures = {"date": str(date.today()), "machine": platform.node(), "threads": os.cpu_count(),
               "sgemm_roof_gflops": round(roof, 1)}
    figures["labelling"] = labelling(args.teacher, args.label_rows)
    arms = {"plain": [], "distilled": []}
    for _ in range(args.repeats):   # in turn, each a fresh process: a noisy moment hits both alike
        arms["plain"].append(step_arm(None, args.steps))
        arms["distilled"].append(step_arm(str(args.teacher.resolve()), args.steps))
    plain, taught = (statistics.median(r["seconds"] for r in arms[k]) for k in ("plain", "distilled"))
    figures["step"] = {"plain_s": round(plain, 3), "distilled_s": round(taught, 3), "ratio": round(taught / plain, 3),
                       "examples": arms["plain"][0]["examples"]}
    pairs = [ex.texts for ex in read_split(load_task_file()["sts"], "dev").examples][:args.score_rows]
    figures["scoring"] = {name: {"fp32": scoring(path, pairs, False, args.repeats),
                                 "int8": scoring(path, pairs, True, args.repeats)}
                          for name, path in (("teacher", args.teacher), ("student", args.student))}
    print(f"sgemm roof {roof:.1f} GFLOP/s ({figures['threads']} threads), {figures['date']}, {figures['machine']}")
    total = sum(r["all_rows"] / r["rows_per_s"] for r in figures["labelling"])
    print("| labelling | rows | rows/s | seconds |\n|---|---|---|---|")
    for r in figures["labelling"]:
        print(f"| {r['task']} | {r['rows']:,} of {r['all_rows']:,} | {r['rows_per_s']:.0f} | {r['seconds']:.0f} |")
    print(f"every training row: about {total / 60:.0f} min")
    s = figures["step"]
    print(f"| step ({s['examples']:.0f} examples) | plain | distilled | ratio |\n|---|---|---|---|\n"
          f"| s/step | {s['plain_s']:.2f} | {s['distilled_s']:.2f} | {s['ratio']:.2f} |")
    print("| scoring, STS dev pairs/s | fp32 | int8 |\n|---|---|---|")
    for name, rates in figures["scoring"].items():
        print(f"| {name} | " + " | ".join("-" if rates[k] is None else f"{rates[k]:.0f}" for k in ("fp32", "int8")) + " |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
