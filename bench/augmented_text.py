"""An augmented transfer set for distillation (BENCHMARKS.md, Distillation): variants of the
built-in tasks' own training rows that only the teacher labels, so the student sees the
teacher's predictions on in-domain text it has no gold label for (Tang et al. 2019,
"Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"; TinyBERT's
augmentation, Jiao et al. 2020).

    python bench/augmented_text.py --out runs/augmented
    mtcli train --teacher export-teacher-mpnet --tasks runs/augmented/tasks.toml --seed 0 \
        --save-every 50 --out runs/distill-augmented --name student-s0

Per training row, with a fixed seed (the same files every time):
- sst: a contiguous span of the sentence (n-gram sampling: 40% to all-but-one of its words;
  SST's own treebank labels such phrases) and a copy with each word dropped with p = 0.15;
- para and sts: the pair with each word of one side (drawn at random) dropped with p = 0.15.

A variant that equals its row, another variant, or a sentence of the task's dev or test split
is left out (mtcli refuses an unlabeled file holding evaluated text), and the counts are
printed. Writes one JSON-lines file per task (the built-in columns) and tasks.toml: the
built-in task file with `unlabeled = [...]`.
"""

import argparse
import math
import random
from pathlib import Path

from task_files import builtin_task_file, write_jsonl
from unlabeled_text import REPO, held_out

from mtcli.core.data import read_split
from mtcli.core.tasks import BUILTIN_TASK_FILE, load_task_file

DROP = 0.15


def dropped(words: list[str], rng: random.Random) -> list[str]:
    kept = [w for w in words if rng.random() >= DROP]
    return kept or [rng.choice(words)]


def span(words: list[str], rng: random.Random) -> list[str]:
    length = rng.randint(math.ceil(0.4 * len(words)), len(words) - 1)
    start = rng.randint(0, len(words) - length)
    return words[start:start + length]


def variants(texts: tuple[str, ...], rng: random.Random) -> list[tuple[str, ...]]:
    """The augmented copies of one row's texts."""
    if len(texts) == 1:
        words = texts[0].split()
        out = [(" ".join(dropped(words, rng)),)]
        if len(words) >= 4:
            out.insert(0, (" ".join(span(words, rng)),))
        return out
    side = rng.randrange(len(texts))
    return [tuple(" ".join(dropped(t.split(), rng)) if i == side else t for i, t in enumerate(texts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "augmented")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    tasks = load_task_file(BUILTIN_TASK_FILE, REPO / "data")
    files = {}
    for name, task in tasks.items():
        seen = held_out(task)
        rows = read_split(task, "train").examples
        made, kept, evaluated = 0, {}, 0
        originals = {tuple(ex.texts) for ex in rows}
        for ex in rows:
            for texts in variants(tuple(ex.texts), rng):
                made += 1
                if any(t.strip() in seen for t in texts):
                    evaluated += 1
                elif texts not in originals and texts not in kept:
                    kept[texts] = f"aug-{ex.id}-{len(kept)}"
        path = write_jsonl(args.out / f"{name}-augmented.jsonl", [task.id, *task.text],
                           [(id_, *texts) for texts, id_ in kept.items()])
        print(f"{name}: {len(kept)} variants of {len(rows)} training rows kept ({made} made; {evaluated} hold a "
              f"sentence of its dev or test split, {made - len(kept) - evaluated} repeat a row or a variant) -> {path}")
        files[name] = [str(path.resolve())]
    builtin_task_file(args.out / "tasks.toml", unlabeled=files)


if __name__ == "__main__":
    main()
