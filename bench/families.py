"""The losses family at one backward per step, against the per-task-gradient families on the
same batches: step time and peak memory.

    python bench/families.py                  # sum, pcgrad, gradnorm, mean, uw, famo, dwa, graddrop, moco, db-mtl
    python bench/families.py --methods sum pcgrad mean --steps 20

Each method trains the built-in tasks with the packaged MiniLM in a process of its own (so
each peak is its own), the same seed and sampler plan: batches of 32, three task slots per
step, --warmup untimed steps then --steps timed ones. Reported: ms per step, the peak
resident memory of the process (VmHWM), and the (T, n) task-gradient buffer the method
allocates (none for the losses family), and the method's own state buffers (the rows family's
tracked gradients). The sgemm roof of the same run is printed with it.
"""

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from roof import sgemm_gflops  # noqa: E402

CHILD = textwrap.dedent("""
    import json, re, sys, tempfile, time
    import torch
    from rich.console import Console
    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    method, steps, warmup, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    config = TrainConfig(combine=method, out=tempfile.mkdtemp(), name="b", seed=0, batch_size=32)
    trainer = Trainer(config, Console(quiet=True))
    plan = trainer.sampler.epoch_plan(1)
    for step in range(warmup):
        trainer.step(plan[step], step)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        trainer.step(plan[step], step)
    seconds = (time.perf_counter() - start) / steps
    grads = trainer.phase.grads
    buffer = 0 if grads is None else grads.buffer.numel() * grads.buffer.element_size()
    peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024
    state = sum(v.numel() * v.element_size() for v in vars(trainer.weighting).values()
                if torch.is_tensor(v) and v.dim() == 2)
    print(json.dumps({"method": method, "family": trainer.weighting.family, "ms_per_step": 1000 * seconds,
                      "peak_mb": peak, "buffer_mb": buffer / 2**20, "state_mb": state / 2**20}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["sum", "pcgrad", "gradnorm", "mean", "uw", "famo", "dwa",
                                                          "graddrop", "moco", "db-mtl"])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    roof = sgemm_gflops()
    rows = []
    for method in args.methods:
        done = subprocess.run([sys.executable, "-c", CHILD, method, str(args.steps), str(args.warmup), str(args.threads)],
                              capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode:
            sys.exit(f"{method}: {done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nsgemm roof {roof:.0f} GFLOP/s; {args.threads} threads; batches of 32, 3 slots per step; "
          f"{args.steps} timed steps after {args.warmup}\n")
    print("| method | family | ms/step | peak RSS MB | (T, n) buffer MB | method state MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['family']} | {r['ms_per_step']:.0f} | {r['peak_mb']:.0f} | {r['buffer_mb']:.0f} "
              f"| {r['state_mb']:.0f} |")


if __name__ == "__main__":
    main()
