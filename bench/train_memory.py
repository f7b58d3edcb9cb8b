"""Peak memory and time of a training step at its worst case, with and without
--activation-checkpointing, side by side in one run.

    python bench/train_memory.py --config runs/sweeps/quality-search/trials/0004-s0/recipe.toml
    python bench/train_memory.py --config my-recipe.toml --steps 4 --unit para

The worst step a recipe can take: every slot of the step on one task (the proportional and
annealed samplers can draw that), each slot that task's longest rows (a batch grouped by length
can be all long rows); and, beside it, a step of one such slot (what a step of one batch per
task holds of that task). The task is the one whose longest rows hold the most tokens, unless
--unit names one. Each arm is a fresh process (its peak resident memory, getrusage's maxrss: what
the kernel's OOM killer weighs), which builds the recipe's Trainer with real weights and data, then
times `--steps` optimizer steps on those slots (the first is warm-up). The sgemm roof is
measured in the same run.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roof import sgemm_gflops  # noqa: E402

ARMS = {"plain": False, "activation checkpointing": True}


def child(config_path: str, checkpointing: bool, steps: int, unit: str | None, slots: int | None) -> None:
    """One arm: the Trainer of the recipe, `steps` worst-case steps; prints a JSON line."""
    import numpy as np
    from rich.console import Console

    from mtcli.train.loop import Trainer
    from mtcli.train.recipe import with_recipe
    from mtcli.train.samplers import Slot

    config = with_recipe(config_path, {"activation_checkpointing": checkpointing, "out": "/nonexistent",
                                       "name": "bench"}, {"activation_checkpointing", "out", "name"})
    trainer = Trainer(config, Console(quiet=True))
    trainer.phases.enter(config.pretrain_epochs + 1)   # the fine-tuning phase: the encoder trains
    lengths, slots = trainer.sampler.lengths, slots or trainer.sampler.slots_per_step
    rows = slots * config.batch_size

    def longest(name: str) -> np.ndarray:
        return np.argsort(-lengths[name], kind="stable")[:rows]

    unit = unit or max(trainer.units, key=lambda name: int(lengths[name][longest(name)].sum()))
    picked = longest(unit)
    step_slots = [Slot(unit, picked[i::slots]) for i in range(slots)]
    seconds = []
    for step in range(steps):
        start = time.perf_counter()
        trainer.step(step_slots, step)
        seconds.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_gb": peak_kb / 1e6, "unit": unit, "rows": len(picked), "longest": int(lengths[unit][picked].max()),
                      "mean_length": float(lengths[unit][picked].mean()),
                      "step_s": statistics.median(seconds[1:] or seconds)}))


def measure(config: str, checkpointing: bool, steps: int, unit: str | None, slots: int | None) -> dict | None:
    """The arm's figures, or None if the kernel killed it (out of memory)."""
    command = [sys.executable, __file__, "--config", config, "--steps", str(steps), "--child",
               json.dumps(checkpointing)] + (["--unit", unit] if unit else []) + (["--slots", str(slots)] if slots else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == -9:
        return None
    if done.returncode:
        sys.exit(f"arm failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a recipe file (mtcli train --config)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per arm, the first one warm-up")
    parser.add_argument("--unit", help="the task (or shared-file unit) the worst step draws (default: the longest)")
    parser.add_argument("--slots", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.config, json.loads(args.child), args.steps, args.unit, args.slots)
        return
    print(f"sgemm roof {sgemm_gflops():.0f} GFLOP/s at {os.cpu_count()} cores; recipe {args.config}")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    for slots in (1, None):
        results = {}
        for name, checkpointing in ARMS.items():
            results[name] = r = measure(args.config, checkpointing, args.steps, args.unit, slots)
            if r is None:
                print(f"{'all slots' if slots is None else '1 slot':9s} {name:26s} killed: out of memory "
                      f"({total:.0f} GB machine)", flush=True)
                continue
            print(f"{'all slots' if slots is None else '1 slot':9s} {name:26s} peak {r['peak_gb']:5.1f} GB   "
                  f"{r['step_s']:6.1f} s/step   ({r['rows']} rows of {r['unit']}, up to {r['longest']} tokens, "
                  f"mean {r['mean_length']:.0f})", flush=True)
        plain, recomputed = results["plain"], results["activation checkpointing"]
        if plain and recomputed:
            print(f"          activation checkpointing: {recomputed['peak_gb'] / plain['peak_gb']:.2f}x the peak "
                  f"memory, {recomputed['step_s'] / plain['step_s']:.2f}x the step time")


if __name__ == "__main__":
    main()
