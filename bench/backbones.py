"""What a backbone costs to train, side by side in one run: examples/s and peak memory of the
default recipe's steps, with and without --activation-checkpointing, against the sgemm roof.

    python bench/backbones.py                                    # all-MiniLM-L6-v2 and all-mpnet-base-v2
    python bench/backbones.py --backbones all-mpnet-base-v2 --steps 6

Each arm is a fresh process (its peak resident memory, getrusage's maxrss) that builds the
default recipe's Trainer on the backbone (real weights, the built-in data, seed 0) and times
the first --steps optimizer steps of epoch 1's plan (the first is warm-up, left out). The
arms take the same steps: the plan depends on the data and the seed, not on the backbone,
except through the tokenizers' lengths. Model FLOPs per step: 6 x the encoder's weights in
matrix products x the step's tokens, plus attention's 12 x layers x width x tokens x length
(x 8/6 with activation checkpointing, the forward pass run again); the rate is stated as a
share of the sgemm roof measured in the same run. The surgery's buffer (T task gradients of
the encoder, float32) and the rows family's state (one more row per task) are computed from
the model, not measured.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from roof import sgemm_gflops  # noqa: E402

ARMS = {"plain": False, "activation checkpointing": True}


def child(backbone: str, checkpointing: bool, steps: int) -> None:
    import numpy as np
    import torch
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    config = TrainConfig(model_dir=backbone, out="/nonexistent", name="bench", seed=0,
                         activation_checkpointing=checkpointing)
    trainer = Trainer(config, Console(quiet=True))
    trainer.phases.enter(1)
    encoder = trainer.model.encoder
    plan = trainer.sampler.epoch_plan(1)[:steps]
    lengths = trainer.sampler.lengths
    seconds, examples, tokens, squares = [], [], [], []
    for step, slots in enumerate(plan):
        start = time.perf_counter()
        trainer.step(slots, step)
        seconds.append(time.perf_counter() - start)
        rows = [lengths[slot.task][slot.indices] for slot in slots]
        examples.append(sum(len(r) for r in rows))
        tokens.append(int(sum(r.sum() for r in rows)))
        squares.append(int(sum((r.astype(np.int64) ** 2).sum() for r in rows)))
    matrix_weights = sum(p.numel() for n, p in encoder.named_parameters() if p.dim() == 2 and "embeddings" not in n
                         and "relative_bias" not in n)
    c = encoder.config
    flops = [(6 * matrix_weights * t + 12 * c.num_hidden_layers * c.hidden_size * s) * (8 / 6 if checkpointing else 1)
             for t, s in zip(tokens, squares)]
    shared = sum(p.numel() for p in trainer.model.shared_parameters())
    timed = slice(1, None) if len(plan) > 1 else slice(None)
    print(json.dumps({
        "parameters": encoder.num_parameters(), "shared": shared, "tasks": len(trainer.units),
        "examples_per_s": sum(examples[timed]) / sum(seconds[timed]), "step_s": statistics.median(seconds[timed]),
        "tokens_per_step": statistics.mean(tokens[timed]), "gflops": sum(flops[timed]) / sum(seconds[timed]) / 1e9,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "threads": torch.get_num_threads()}))


def measure(backbone: str, checkpointing: bool, steps: int) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps([backbone, checkpointing]), "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{backbone} ({'checkpointing' if checkpointing else 'plain'}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
    parser.add_argument("--steps", type=int, default=6, help="steps per arm, the first one warm-up")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(*json.loads(args.child), args.steps)
        return
    roof = sgemm_gflops()
    print(json.dumps({"date": str(date.today()), "cores": os.cpu_count(), "sgemm_roof_gflops": round(roof, 1),
                      "steps": args.steps}))
    print("| backbone | parameters | arm | examples/s | s/step | tokens/step | GFLOP/s | of the sgemm roof | "
          "peak memory | surgery buffer | rows-family state |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for backbone in args.backbones:
        for arm, checkpointing in ARMS.items():
            r = measure(backbone, checkpointing, args.steps)
            rows.append({"backbone": backbone, "arm": arm, **r})
            buffer_gb = r["tasks"] * r["shared"] * 4 / 1e9
            print(f"| {backbone} | {r['parameters'] / 1e6:.1f}M | {arm} | {r['examples_per_s']:.1f} | {r['step_s']:.2f} | "
                  f"{r['tokens_per_step']:.0f} | {r['gflops']:.0f} | {r['gflops'] / roof:.0%} | {r['peak_gb']:.2f} GB | "
                  f"{buffer_gb:.2f} GB | +{buffer_gb:.2f} GB |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"sgemm_roof_gflops": roof, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
