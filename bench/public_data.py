"""SICK 2014 and MSRP as distributed, through every command with one task file, and the same
tasks from JSON-lines and Parquet copies giving the same metrics.

    python bench/public_data.py --checkpoint runs/sick-msrp/best     # after:
    mtcli train --tasks examples/sick-msrp.toml --data-dir ../shared/data/external --epochs 3 --name sick-msrp

For each format (the raw files; JSON lines and Parquet copies written here with Python's json
and pyarrow, quotes kept as the files hold them) it runs `mtcli eval` on the checkpoint and
prints each task's dev metrics side by side; then `mtcli eval --split test` with the dev
files declared as labeled test files (the public test splits are not in this workspace),
`mtcli export` and `mtcli score` on the raw MSRP file.
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
TASK_FILE = Path(__file__).resolve().parents[1] / "examples" / "sick-msrp.toml"
FILES = ("SICK_train.txt", "SICK_trial.txt", "msr-para-train.tsv", "msr-para-val.tsv")


def _rows(path: Path) -> list[dict]:
    """The file's rows as the publisher wrote them: tab-separated, quotes as text, a BOM skipped."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _copies(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in FILES:
        rows = _rows(EXTERNAL / name)
        stem = Path(name).stem
        (folder / f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{stem}.parquet")


def _task_file(folder: Path, suffix: str | None, test: bool = False) -> Path:
    text = TASK_FILE.read_text()
    for name in FILES:
        if suffix:
            text = text.replace(f'"{name}"', f'"{Path(name).stem}.{suffix}"')
    if test:  # the dev files, declared as labeled test files
        text = text.replace('dev = "SICK_trial.txt"', 'dev = "SICK_trial.txt"\ntest = "SICK_trial.txt"')
        text = text.replace('dev = "msr-para-val.tsv"', 'dev = "msr-para-val.tsv"\ntest = "msr-para-val.tsv"')
    path = folder / f"tasks-{suffix or 'raw'}{'-test' if test else ''}.toml"
    path.write_text(text)
    return path


def mtcli(*args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "mtcli", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"mtcli {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in FILES:
            (folder / name).write_bytes((EXTERNAL / name).read_bytes())
        _copies(folder)
        results = {}
        for suffix in (None, "jsonl", "parquet"):
            out = folder / f"eval-{suffix or 'raw'}"
            mtcli("eval", "--checkpoint", args.checkpoint, "--tasks", _task_file(folder, suffix), "--out", out)
            results[suffix or "raw"] = json.loads((out / "eval.json").read_text())
        print("| format | " + " | ".join(results["raw"]["headline"]) + " | overall |")
        print("|---|" + "---|" * (len(results["raw"]["headline"]) + 1))
        for name, r in results.items():
            print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in r["headline"].values()) + f" | {r['overall']:.4f} |")
        same = all(r["tasks"] == results["raw"]["tasks"] for r in results.values())
        print(f"every metric identical across formats: {same}")
        mtcli("eval", "--split", "test", "--checkpoint", args.checkpoint, "--tasks", _task_file(folder, None, True),
              "--out", folder / "test")
        test = json.loads((folder / "test" / "eval-test.json").read_text())
        print("labeled test (the dev files declared as test): " +
              ", ".join(f"{t} {v:.4f}" for t, v in test["headline"].items()) + f", overall {test['overall']:.4f}")
        mtcli("export", "--checkpoint", args.checkpoint, "--tasks", _task_file(folder, None), "--out", folder / "export")
        scored = mtcli("score", "msrp", folder / "msr-para-val.tsv", "--model", folder / "export",
                       "--columns", "id=#1 ID", "-o", folder / "msrp-scores.tsv")
        lines = (folder / "msrp-scores.tsv").read_text().splitlines()
        print(f"score msrp on the raw file: {len(lines) - 1} rows; {scored.stderr.strip().splitlines()[-1]}")
        print("  " + "\n  ".join(lines[:3]))


if __name__ == "__main__":
    main()
