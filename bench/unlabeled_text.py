"""Unlabeled text for distillation (BENCHMARKS.md, Distillation): the built-in tasks with text a
teacher labels, from data in this workspace that no built-in task evaluates.

    python bench/unlabeled_text.py --out runs/unlabeled
    OUT=runs/distill-unlabeled bash bench/distill.sh --tasks runs/unlabeled/tasks.toml

- sst: CFIMDB's training reviews (data/ids-cfimdb-train.csv, movie reviews as SST's sentences are;
  its binary labels are not read);
- para and sts: the sentence pairs of SICK's and MSRP's training files (../shared/data/external),
  as JSON lines with the built-in pair columns (id, sentence1, sentence2).

A pair that shares a sentence with the task's dev or test split is left out here (mtcli refuses an
unlabeled file that holds one: STS-B took pairs from MSRP), and the count is printed. Writes the
JSON-lines files and tasks.toml: the built-in task file, its data named by full path, with
`unlabeled = [...]` added.
"""

import argparse
import csv
from pathlib import Path

from mtcli.core.data import read_split
from mtcli.core.tasks import BUILTIN_TASK_FILE, load_task_file
from task_files import builtin_task_file, write_jsonl

REPO = Path(__file__).resolve().parent.parent
EXTERNAL = REPO.parent / "shared" / "data" / "external"


def sick_pairs() -> list[tuple[str, str, str]]:
    with open(EXTERNAL / "SICK_train.txt", encoding="utf-8", newline="") as f:
        return [(f"sick-{r['pair_ID']}", r["sentence_A"], r["sentence_B"])
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def msrp_pairs() -> list[tuple[str, str, str]]:
    with open(EXTERNAL / "msr-para-train.tsv", encoding="utf-8-sig", newline="") as f:
        return [(f"msrp-{i}", r["#1 String"], r["#2 String"])
                for i, r in enumerate(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))]


def held_out(task) -> set[str]:
    return {text for split in ("dev", "test") if task.file(split) is not None
            for ex in read_split(task, split).examples for text in ex.texts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "unlabeled")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = load_task_file(BUILTIN_TASK_FILE, REPO / "data")
    pairs = sick_pairs() + msrp_pairs()
    files = {"sst": [str(REPO / "data" / "ids-cfimdb-train.csv")]}
    for name in ("para", "sts"):
        seen = held_out(tasks[name])
        kept = [p for p in pairs if p[1].strip() not in seen and p[2].strip() not in seen]
        path = write_jsonl(args.out / f"{name}-pairs.jsonl", [tasks[name].id, *tasks[name].text], kept)
        print(f"{name}: {len(kept)} of {len(pairs)} SICK + MSRP pairs ({len(pairs) - len(kept)} share a sentence "
              f"with its dev or test split) -> {path}")
        files[name] = [str(path.resolve())]
    builtin_task_file(args.out / "tasks.toml", unlabeled=files)


if __name__ == "__main__":
    main()
