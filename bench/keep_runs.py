"""Keep what an experiment needs beyond its checkpoints, in a folder small enough to commit, and
put it back: the evidence runs of issue 27 outlive the machine they ran on this way (its runs/
folder does not survive from one session to the next).

    python bench/keep_runs.py keep runs/sweeps/quality-search bench/results/quality-search
    python bench/keep_runs.py keep runs/default-full bench/results/default-full
    python bench/keep_runs.py restore bench/results/quality-search runs/sweeps/quality-search

`keep` copies a sweep folder (space.toml, study.journal, sweep.json and the run folders of its
finished and pruned trials) or a folder of run folders, leaving out every checkpoint (`best/`,
`last/`: ~270 MB a run with the optimizer's state) and its PNG plots (the numbers they draw
stay). What stays is what `mtcli compare`, `mtcli report` and a sweep's `--resume` read:
config.json, recipe.toml, metrics.jsonl, eval.json and the best epoch's dev predictions. A
trial that was running is not kept (a run without its checkpoint cannot continue; the resumed
sweep trains that trial again from its start), nor is a run that has not logged its last
epoch's evaluation. Stop the sweep before keeping it: its journal is
appended to while it runs. `restore` copies a kept folder back to where it is run from; it
refuses to write over a folder that exists.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from mtcli.run.metrics_log import read_metrics

CHECKPOINTS = ("best", "last")
SWEEP_FILES = ("space.toml", "study.journal", "sweep.json")


def keep_run(run: Path, dest: Path) -> None:
    shutil.copytree(run, dest, ignore=lambda folder, names: [
        n for n in names if folder == str(run) and (n in CHECKPOINTS or n.endswith(".png"))])


def keep_sweep(folder: Path, dest: Path) -> list[str]:
    record = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    dest.mkdir(parents=True)
    for name in SWEEP_FILES:
        shutil.copy2(folder / name, dest / name)
    kept = []
    for trial in record["trials"]:
        if trial["state"] not in ("COMPLETE", "PRUNED"):
            continue
        for run in trial["runs"]:
            source = folder / "trials" / Path(run).name
            if source.is_dir():
                keep_run(source, dest / "trials" / source.name)
                kept.append(source.name)
    return kept


def finished(run: Path) -> bool:
    """A run whose log has its last epoch's evaluation."""
    if not (run / "config.json").is_file() or not (run / "metrics.jsonl").is_file():
        return False
    epochs = json.loads((run / "config.json").read_text(encoding="utf-8"))["epochs"]
    return any(r.get("type") == "epoch" and r.get("epoch") == epochs for r in read_metrics(run / "metrics.jsonl"))


def keep_runs(folder: Path, dest: Path) -> list[str]:
    kept = []
    for run in sorted(p for p in folder.iterdir() if finished(p)):
        keep_run(run, dest / run.name)
        kept.append(run.name)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["keep", "restore"])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    if args.dest.exists():
        sys.exit(f"keep_runs: {args.dest} exists; remove it or pick another destination")
    if args.action == "restore":
        shutil.copytree(args.source, args.dest)
        print(f"restored {args.source} -> {args.dest}")
        return
    is_sweep = (args.source / "study.journal").is_file()
    kept = keep_sweep(args.source, args.dest) if is_sweep else keep_runs(args.source, args.dest)
    size = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file())
    print(f"kept {len(kept)} run folder(s) of {args.source} in {args.dest} ({size / 1e6:.1f} MB): {', '.join(kept)}")


if __name__ == "__main__":
    main()
