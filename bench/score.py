"""Scoring throughput on CPU: torch eager fp32 vs onnxruntime fp32 vs onnxruntime int8,
on the same rows of sts-dev and quora-dev, batch 1, 16 and 64; p50/p99 latency at batch 1.

    python bench/score.py --checkpoint runs/<name>/best --export export/
    python bench/score.py --checkpoint runs/<name>/best --export export/ --rows 500 --batches 1 64

Every backend tokenizes the same rows in the same token-length-sorted batches, so the
numbers compare the model runtimes (tokenization included, as in `mtcli score`). Each
repeat runs every backend once, in turn, and the table gives the median throughput per
backend: a noisy moment on the machine hits all of them alike. Threads: torch's and
onnxruntime's intra-op pools are both set to the machine's cores.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mtcli.model.checkpoint import load_checkpoint  # noqa: E402
from mtcli.core.data import read_split  # noqa: E402
from mtcli.core.tasks import load_task_file  # noqa: E402
from mtcli.core.encoding import encode, length_order  # noqa: E402
from mtcli.inference.scorer import Scorer  # noqa: E402


def batches(tokenizer, encoding, texts, size):
    order = length_order(tokenizer, encoding, texts)
    return [[texts[i] for i in order[s:s + size]] for s in range(0, len(order), size)]


def run(predict, groups) -> tuple[float, list[float]]:
    latencies = []
    start = time.perf_counter()
    for group in groups:
        t = time.perf_counter()
        predict(group)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, latencies


def user_path(args, tasks) -> list[dict]:
    """What a user runs: `Scorer.score` on all the rows (windows, length sorting, a sentence at a
    time for separately encoded pairs), fp32 against int8, taking turns; median of --repeats."""
    print("\n| data | task | Scorer fp32 rows/s | Scorer int8 rows/s | int8 / fp32 |\n|---|---|---|---|---|")
    results = []
    for data, task in (("sts-dev", "sts"), ("quora-dev", "para")):
        texts = [ex.texts for ex in read_split(tasks[task], "dev").examples[: args.rows]]
        scorers = {"fp32": Scorer(args.export, providers=["cpu"]), "int8": Scorer(args.export, providers=["cpu"], int8=True)}
        seconds = {name: [] for name in scorers}
        for scorer in scorers.values():
            scorer.score(task, texts[:64])  # warm-up: sessions created
        for _ in range(args.repeats):
            for name, scorer in scorers.items():
                start = time.perf_counter()
                scorer.score(task, texts)
                seconds[name].append(time.perf_counter() - start)
        rate = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
        results.append({"data": data, "task": task, **rate})
        print(f"| {data} | {task} | {rate['fp32']:.0f} | {rate['int8']:.0f} | {rate['int8'] / rate['fp32']:.2f}x |",
              flush=True)
    return results


def _whole_batch(scorer: Scorer, task: str):
    """The task's whole graph on one batch (what the torch column runs), through the Scorer."""
    return lambda group: scorer.score_window(task, group, batch_size=len(group))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--export", type=Path, default=Path("export"))
    parser.add_argument("--rows", type=int, default=1000, help="rows per dataset (the first N of the dev split)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=3, help="passes over the rows per backend (median reported)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-torch", action="store_true", help="leave torch out of the kernel table (the ORT columns "
                                                                 "then run in a process where torch never ran)")
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    model, tokenizer, _ = load_checkpoint(args.checkpoint)
    env = {"date": str(date.today()), "machine": platform.node(), "processor": platform.processor() or platform.machine(),
           "threads": threads, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "repeats": args.repeats}
    print(json.dumps(env))
    print("| data | task | batch | torch eager pairs/s | ORT fp32 pairs/s (x torch) | ORT int8 pairs/s (x torch) |")
    print("|---|---|---|---|---|---|")
    rows, latency = [], {}
    for data, task in (("sts-dev", "sts"), ("quora-dev", "para")):
        texts = [ex.texts for ex in read_split(load_task_file()[task], "dev").examples[: args.rows]]
        encoding = model.encoding(task)

        @torch.inference_mode()  # torch's fastest eager inference
        def torch_predict(group, task=task, encoding=encoding):
            batch = {k: torch.from_numpy(v) for k, v in encode(tokenizer, encoding, group).items()}
            return model.predict(task, model(task, batch)).numpy()

        backends = {**({} if args.no_torch else {"torch": torch_predict}),
                    "ort_fp32": _whole_batch(Scorer(args.export, providers=["cpu"], dedup=False), task),
                    "ort_int8": _whole_batch(Scorer(args.export, providers=["cpu"], dedup=False, int8=True), task)}
        for size in args.batches:
            groups = batches(tokenizer, encoding, texts, size)
            row = {"data": data, "task": task, "batch": size, "rows": len(texts)}
            seconds, latencies = {name: [] for name in backends}, {name: [] for name in backends}
            for predict in backends.values():
                predict(groups[0])  # warm-up
            for _ in range(args.repeats):
                for name, predict in backends.items():
                    total, lat = run(predict, groups)
                    seconds[name].append(total)
                    latencies[name] += lat
            for name in backends:
                row[f"{name}_per_s"] = len(texts) / statistics.median(seconds[name])
                if size == 1:
                    lat = latencies[name]
                    latency[(data, name)] = (statistics.median(lat) * 1e3, float(np.percentile(lat, 99)) * 1e3)
            rows.append(row)
            t = row.get("torch_per_s", float("nan"))
            print(f"| {data} | {task} | {size} | {t:.0f} | {row['ort_fp32_per_s']:.0f} ({row['ort_fp32_per_s'] / t:.2f}x) | "
                  f"{row['ort_int8_per_s']:.0f} ({row['ort_int8_per_s'] / t:.2f}x) |", flush=True)
    end_to_end = user_path(args, load_task_file())
    if latency:
        print("\n| data | backend | p50 ms (batch 1) | p99 ms (batch 1) |\n|---|---|---|---|")
        for (data, name), (p50, p99) in latency.items():
            print(f"| {data} | {name} | {p50:.1f} | {p99:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows, "end_to_end": end_to_end,
                                         "latency_ms": {f"{d}/{n}": v for (d, n), v in latency.items()}}, indent=2))


if __name__ == "__main__":
    main()
