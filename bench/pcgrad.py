"""PCGrad surgery speed: native kernel vs torch vectorised vs literal pairwise loop vs TorchJD,
against the two-pass memory bound measured in the same run.

    python bench/pcgrad.py                       # n = 22M and 110M, T = 2, 3, 5, 8, fp32, CPU
    python bench/pcgrad.py --n 22M --tasks 3 --repeats 5
    python bench/pcgrad.py --device cuda         # GPU (native CUDA kernels when built)
    python bench/pcgrad.py --step                # share of a real MiniLM training step in surgery
    python bench/pcgrad.py --memory --n 22M --tasks 3   # peak extra memory per method

Bound: PCGrad reads the (T, n) buffer twice (Gram pass, combine pass) and writes n values,
so its time can be no less than (2 T n + n) * 4 bytes over the copy bandwidth, which is
measured here as a plain tensor copy of T n values (read + write bytes per second).
"""

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mtcli import pcgrad  # noqa: E402


def parse_size(text: str) -> int:
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def timed(fn, repeats: int, sync) -> float:
    """Median seconds over `repeats` runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth(src: torch.Tensor, repeats: int, sync) -> float:
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), repeats, sync)
    return 2 * src.numel() * src.element_size() / seconds  # bytes read + written per second


def torchjd_pcgrad():
    try:
        from torchjd.aggregation import PCGrad
    except ImportError:
        return None
    return PCGrad()


def bench_surgery(n: int, tasks: int, device: str, repeats: int, skip_literal_above: int) -> dict:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    grads = torch.randn(tasks, n, device=device, generator=gen)
    grads[1:] -= 0.5 * grads[0]  # most pairs conflict, as in real multitask training
    out = torch.empty(n, device=device)
    orders = pcgrad.task_orders(tasks, seed=0)
    bandwidth = copy_bandwidth(grads, repeats, sync)
    bound = (2 * tasks * n + n) * 4 / bandwidth
    row = {"n": n, "tasks": tasks, "device": device, "copy_GBps": bandwidth / 1e9, "bound_s": bound}

    native_name = pcgrad.backend(device)
    if native_name.startswith("native"):
        row["native_s"] = timed(lambda: pcgrad.project(grads, orders=orders, out=out), repeats, sync)
        g_time = timed(lambda: pcgrad.gram(grads), repeats, sync)
        row["native_gram_s"], row["native_combine_s"] = g_time, row["native_s"] - g_time
    original = pcgrad._use_native
    pcgrad._use_native = lambda g: None  # the torch vectorised fallback
    try:
        row["torch_s"] = timed(lambda: pcgrad.project(grads, orders=orders, out=out), repeats, sync)
    finally:
        pcgrad._use_native = original
    jd = torchjd_pcgrad()
    if jd is not None:
        row["torchjd_s"] = timed(lambda: jd(grads), repeats, sync)
    if tasks * n <= skip_literal_above:
        row["literal_s"] = timed(lambda: pcgrad.project_literal(grads, orders=orders), max(1, repeats // 2), sync)
    for key in ("native_s", "torch_s", "torchjd_s", "literal_s"):
        if key in row:
            row[key.replace("_s", "_x_bound")] = row[key] / bound
    return row


def bench_step(device: str, repeats: int, batch_size: int) -> dict:
    """One real MiniLM triple-batch step with PCGrad vs the same step with sum; surgery timed inside."""
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    result = {"device": device, "batch_size": batch_size}
    for combine in ("sum", "pcgrad"):
        config = TrainConfig(sampler="triple-batch", combine=combine, batch_size=batch_size, device=device,
                             out="/tmp/mtcli-bench-runs", limit=2000, dropout=0.0)
        trainer = Trainer(config, Console(quiet=True))
        plan = trainer.sampler.epoch_plan(1)
        surgery = []
        if trainer.grads is not None:
            finish, reset = trainer.grads.finish, trainer.grads.reset

            def timed_finish(*a, **k):
                start = time.perf_counter()
                value = finish(*a, **k)
                surgery.append(time.perf_counter() - start)
                return value

            def timed_reset():
                start = time.perf_counter()
                reset()
                surgery[-1] += time.perf_counter() - start

            trainer.grads.finish, trainer.grads.reset = timed_finish, timed_reset
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        times = []
        for i in range(repeats + 1):
            sync()
            start = time.perf_counter()
            trainer.step(plan[i % len(plan)], i)
            sync()
            times.append(time.perf_counter() - start)
        result[f"{combine}_step_s"] = statistics.median(times[1:])
        if surgery:
            result["surgery_s"] = statistics.median(surgery[1:])
            result["shared_params"] = trainer.grads.size
    result["surgery_share"] = result["surgery_s"] / result["pcgrad_step_s"]
    result["pcgrad_vs_sum"] = result["pcgrad_step_s"] / result["sum_step_s"]
    return result


def _memory_child(method: str, n: int, tasks: int) -> None:
    """Run one surgery on a fresh (T, n) buffer and print the peak RSS it added, in bytes."""
    import resource

    grads = torch.randn(tasks, n)
    grads[1:] -= 0.5 * grads[0]
    out = torch.empty(n)
    orders = pcgrad.task_orders(tasks, seed=0)
    if method == "torch":
        pcgrad._use_native = lambda g: None
    jd = torchjd_pcgrad() if method == "torchjd" else None

    def run(g, o):
        return {"native": lambda: pcgrad.project(g, orders=orders, out=o),
                "torch": lambda: pcgrad.project(g, orders=orders, out=o),
                "torchjd": lambda: jd(g),
                "literal": lambda: pcgrad.project_literal(g, orders=orders)}[method]()

    small = grads[:, :4096].contiguous()
    run(small, torch.empty(4096))  # library start-up (BLAS buffers, thread pools) is not the surgery's
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run(grads, out)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - before)


def bench_memory(n: int, tasks: int) -> dict:
    import subprocess

    row = {"n": n, "tasks": tasks, "buffer_bytes": tasks * n * 4}
    for method in ("native", "torch", "torchjd", "literal"):
        done = subprocess.run([sys.executable, __file__, "--memory-child", method, str(n), str(tasks)],
                              capture_output=True, text=True, check=True)
        row[f"{method}_extra_bytes"] = int(done.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", nargs="+", default=["22M", "110M"])
    parser.add_argument("--tasks", nargs="+", type=int, default=[2, 3, 5, 8])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--literal-max", default="900M", help="skip the literal loop above T*n elements")
    parser.add_argument("--step", action="store_true", help="measure the surgery share of a real training step")
    parser.add_argument("--step-batch", type=int, default=32)
    parser.add_argument("--memory", action="store_true", help="peak extra memory of each method (fresh processes)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()

    env = {"date": str(date.today()), "machine": platform.node(), "cpu": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "backend": pcgrad.backend(args.device)}
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(env))
    rows = []
    if args.memory:
        print("| n | T | buffer MiB | native extra MiB | torch extra MiB | TorchJD extra MiB | literal extra MiB |")
        print("|---|---|---|---|---|---|---|")
        for size in args.n:
            for tasks in args.tasks:
                row = bench_memory(parse_size(size), tasks)
                rows.append(row)
                mib = [row[f"{m}_extra_bytes"] / 2**20 for m in ("native", "torch", "torchjd", "literal")]
                print(f"| {size} | {tasks} | {row['buffer_bytes'] / 2**20:.0f} | " + " | ".join(f"{v:.0f}" for v in mib) + " |",
                      flush=True)
    elif args.step:
        rows.append(bench_step(args.device, args.repeats, args.step_batch))
        print(json.dumps(rows[-1]))
    else:
        print("| n | T | copy GB/s | bound ms | native ms (x bound) | torch ms (x) | TorchJD ms (x) | literal ms (x) | native speed-up vs literal |")
        print("|---|---|---|---|---|---|---|---|---|")
        for size in args.n:
            for tasks in args.tasks:
                row = bench_surgery(parse_size(size), tasks, args.device, args.repeats, parse_size(args.literal_max))
                rows.append(row)
                gc.collect()  # the previous buffers go before the next, larger ones

                def cell(key):
                    return f"{row[key + '_s'] * 1e3:.1f} ({row[key + '_x_bound']:.2f})" if key + "_s" in row else "-"

                speedup = f"{row['literal_s'] / row['native_s']:.1f}x" if "literal_s" in row and "native_s" in row else "-"
                print(f"| {size} | {tasks} | {row['copy_GBps']:.1f} | {row['bound_s'] * 1e3:.1f} | {cell('native')} | "
                      f"{cell('torch')} | {cell('torchjd')} | {cell('literal')} | {speedup} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
