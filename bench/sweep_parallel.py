"""Trials at once on a small CPU: is `mtcli sweep --parallel K` (K processes, cores/K threads
each) faster than one trial at a time with every core? Side by side in one run, alternating:

    python bench/sweep_parallel.py                     # 1 x all cores against K x cores/K, 2 rounds
    python bench/sweep_parallel.py --steps 80 --rounds 3 --parallel 2

Each arm trains the default recipe (`mtcli train --max-steps N --limit L`, the thread counts
set as `sweep --parallel` sets them) and reads the training throughput from the runs' own
metrics.jsonl (examples/s per logging window, the first window left out as warm-up); the
parallel arm's throughput is the sum of its processes' medians (they train at the same time).
Wall time per arm includes loading and the final dev evaluation. The sgemm roof is measured at
both thread counts in the same run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOF = Path(__file__).resolve().parent / "roof.py"


def roof(threads: int) -> str:
    """bench/roof.py's sgemm line at `threads` (BLAS reads its thread count at start: a subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, str(ROOF)], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def median_speed(run: Path) -> float:
    speeds = [r["examples_per_s"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if r["type"] == "step" and r.get("examples_per_s", 0) > 0]
    distinct = list(dict.fromkeys(speeds))   # one value per logging window
    return statistics.median(distinct[1:] or distinct)


def arm(out: Path, name: str, processes: int, threads: int, steps: int, limit: int) -> tuple[float, float]:
    """(examples/s summed over the processes, wall seconds) for `processes` trainings at once."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-m", "mtcli", "train", "--max-steps", str(steps), "--limit",
                                 str(limit), "--log-every", "5", "--seed", str(i), "--out", str(out),
                                 "--name", f"{name}-{i}"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
               for i in range(processes)]
    for p in running:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"mtcli train failed:\n{err.decode()[-2000:]}")
    wall = time.perf_counter() - start
    return sum(median_speed(out / f"{name}-{i}") for i in range(processes)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--limit", type=int, default=2000, help="rows per task and split (keeps the dev pass short)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    share = max(1, cores // args.parallel)
    print(f"cores {cores}; {roof(cores)} at {cores} threads, {roof(share)} at {share}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label, processes, threads in (("one trial, all cores", 1, cores),
                                              (f"{args.parallel} trials, {share} thread(s) each", args.parallel,
                                               share)):
                speed, wall = arm(Path(tmp), f"r{r}-{processes}", processes, threads, args.steps, args.limit)
                rows.append((r, label, processes, speed, wall))
                print(f"round {r}: {label}: {speed:.1f} examples/s, {wall:.0f} s wall for {processes} x "
                      f"{args.steps} steps", flush=True)
    print("| round | arm | examples/s (sum) | trials per hour |\n|---|---|---|---|")
    for r, label, processes, speed, wall in rows:
        print(f"| {r} | {label} | {speed:.1f} | {3600 * processes / wall:.1f} |")
    one = statistics.mean(s for _, _, p, s, _ in rows if p == 1)
    many = statistics.mean(s for _, _, p, s, _ in rows if p > 1)
    print(f"parallel / one at a time: {many / one:.2f}x examples/s (means over {args.rounds} rounds)")


if __name__ == "__main__":
    main()
