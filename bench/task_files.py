"""The built-in task file rewritten for a benchmark: its data named by full path (so the file
works from any folder), only some of its tasks, unlabeled text added to some.

    python bench/task_files.py --only sst --out runs/bam/sst.toml     # one task: a BAM teacher's

bench/unlabeled_text.py and bench/augmented_text.py write theirs with `unlabeled`.
"""

import argparse
import json
import re
from pathlib import Path

from mtcli.core.tasks import BUILTIN_TASK_FILE

REPO = Path(__file__).resolve().parent.parent


def builtin_task_file(path: Path, *, only: list[str] | None = None, unlabeled: dict[str, list[str]] | None = None) -> Path:
    """`path`: the built-in task file, data in this checkout's data/ by full path; the tasks in
    `only` (default all); each task in `unlabeled` with `unlabeled = [...]` added."""
    text = BUILTIN_TASK_FILE.read_text(encoding="utf-8")
    for split in ("train", "dev", "test"):   # the built-in file names, in the bundled data/ folder
        text = re.sub(rf'^{split} = "([^"]+)"', lambda m: f'{split} = {json.dumps(str(REPO / "data" / m[1]))}', text,
                      flags=re.M)
    head, *blocks = text.split("[[task]]")
    kept = []
    for block in blocks:
        name = next(line.split("=", 1)[1].strip().strip('"') for line in block.splitlines() if line.startswith("name"))
        if only is not None and name not in only:
            continue
        if name in (unlabeled or {}):
            block = block.rstrip("\n") + f"\nunlabeled = {json.dumps(unlabeled[name])}\n\n"
        kept.append(block)
    missing = set(only or ()) - {next(l.split("=", 1)[1].strip().strip('"') for l in b.splitlines()
                                      if l.startswith("name")) for b in kept}
    if missing:
        raise SystemExit(f"no built-in task named {', '.join(sorted(missing))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "".join("[[task]]" + b for b in kept), encoding="utf-8")
    print(f"task file: {path} (built-in tasks {', '.join(only) if only else 'all'}, data from {REPO / 'data'})")
    return path


def write_jsonl(path: Path, columns: list[str], rows) -> Path:
    """Rows (tuples of values, in `columns`' order) as JSON lines: what a task file's
    `unlabeled = [...]` reads by column name."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the task file to write")
    parser.add_argument("--only", nargs="+", help="the built-in tasks to keep (default: all)")
    args = parser.parse_args()
    builtin_task_file(args.out, only=args.only)


if __name__ == "__main__":
    main()
