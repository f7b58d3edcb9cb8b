"""Tasks that share a file and an encoding: one forward pass per batch for both, against the same
tasks declared on separate copies of the file (each encodes every pair itself).

    python bench/shared_forward.py                     # SICK-R + SICK-E, the packaged MiniLM
    python bench/shared_forward.py --steps 30 --encoding cosine

Both runs draw batches of --batch-size rows, on the same rows (SICK_train.txt of
../shared/data/external), with the real backbone and the default weighting; the timed steps
follow --warmup untimed ones. Reported: ms per optimizer step, rows encoded per step, and the
time an epoch of SICK's 4,500 pairs takes (shared: each pair once with both losses; separate:
each pair once per task), side by side in one run, with the sgemm roof of the same run.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from roof import sgemm_gflops  # noqa: E402

SICK = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"

TASKS = """
[[task]]
name = "sick-r"
kind = "regression"
text = ["sentence_A", "sentence_B"]
label = "relatedness_score"
range = [1, 5]
metric = "spearman"
encoding = "{encoding}"
id = "pair_ID"
train = "{train_r}"
dev = "SICK_trial.txt"

[[task]]
name = "sick-e"
kind = "multiclass"
text = ["sentence_A", "sentence_B"]
label = "entailment_judgment"
labels = ["NEUTRAL", "ENTAILMENT", "CONTRADICTION"]
encoding = "{entail}"
id = "pair_ID"
train = "{train_e}"
dev = "SICK_trial.txt"
"""


def _time(task_file: Path, args) -> dict:
    import torch
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    torch.set_num_threads(args.threads)
    config = TrainConfig(tasks=str(task_file), out=str(task_file.parent / "runs"), name=task_file.stem,
                         batch_size=args.batch_size, combine=args.combine, seed=0)
    trainer = Trainer(config, Console(quiet=True))
    plan = trainer.sampler.epoch_plan(1)
    for step in range(args.warmup):
        trainer.step(plan[step], step)
    start = time.perf_counter()
    rows = 0
    for step in range(args.warmup, args.warmup + args.steps):
        rows += sum(len(slot.indices) for slot in plan[step])
        trainer.step(plan[step], step)
    seconds = (time.perf_counter() - start) / args.steps
    return {"units": list(trainer.units), "ms_per_step": 1000 * seconds, "rows_per_step": rows / args.steps,
            "steps_per_epoch": trainer.steps_per_epoch, "epoch_s": seconds * trainer.steps_per_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--combine", default="pcgrad")
    parser.add_argument("--encoding", default="cross", help="cross (joint pair) for both tasks, or cosine/siamese")
    args = parser.parse_args()
    if not (SICK / "SICK_train.txt").is_file():
        sys.exit(f"{SICK}: the public SICK files are not here")
    entail = "siamese" if args.encoding == "cosine" else args.encoding
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name in ("SICK_train.txt", "SICK_trial.txt"):
            shutil.copy(SICK / name, folder / name)
        shutil.copy(SICK / "SICK_train.txt", folder / "SICK_train_copy.txt")  # a second file: no sharing
        shared, separate = folder / "shared.toml", folder / "separate.toml"
        shared.write_text(TASKS.format(encoding=args.encoding, entail=entail, train_r="SICK_train.txt",
                                       train_e="SICK_train.txt"))
        separate.write_text(TASKS.format(encoding=args.encoding, entail=entail, train_r="SICK_train.txt",
                                         train_e="SICK_train_copy.txt"))
        roof = sgemm_gflops()
        results = {"shared": _time(shared, args), "separate": _time(separate, args)}
    print(f"sgemm roof {roof:.0f} GFLOP/s; batch {args.batch_size}, {args.threads} threads, combine {args.combine}, "
          f"encoding {args.encoding}/{entail}, {args.steps} timed steps after {args.warmup}")
    print("| declared | units | ms/step | rows encoded/step | steps/epoch | s/epoch |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {' '.join(r['units'])} | {r['ms_per_step']:.0f} | {r['rows_per_step']:.0f} | "
              f"{r['steps_per_epoch']} | {r['epoch_s']:.0f} |")
    ratio = results["separate"]["epoch_s"] / results["shared"]["epoch_s"]
    print(f"epoch time, separate / shared: {ratio:.2f}x")


if __name__ == "__main__":
    main()
