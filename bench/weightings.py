"""Every weighting through the fused kernel: surgery time against the two-pass memory bound
measured in the same run, and against TorchJD's aggregator of the same name.

    python bench/weightings.py                          # n = 22M and 110M, T = 3 and 8, every weighting
    python bench/weightings.py --n 22M --tasks 3 --only pcgrad upgrad --repeats 5
    python bench/weightings.py --device cuda            # GPU (native CUDA kernels when built)
    python bench/weightings.py --step                   # share of a real MiniLM training step in surgery
    python bench/weightings.py --memory --n 22M --tasks 3 --only pcgrad   # peak extra memory, ours vs TorchJD

Bound: a weighting reads the (T, n) buffer twice (Gram pass, combine pass) and writes n
values, so its time can be no less than (2 T n + n) * 4 bytes over the copy bandwidth,
measured here as a plain tensor copy of T n values (read + write bytes per second). The
surgery time is gram + host weights + combine, as a training step runs them; "host" is
the weights alone (T x T float64 arithmetic), from the same Gram matrices.

This VM's memory bandwidth drifts by up to 2x over minutes, so ratios are measured side
by side: each round times the copy and then the surgery (or ours and then TorchJD's),
and a ratio is the median of the per-round ratios.
"""

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", message="You are solving a parameterized problem that is not DPP")  # TorchJD's cvxpy
from mtcli.weightings import WEIGHTINGS, kernel, make  # noqa: E402

# TorchJD's aggregator of each name, with the parameters ours defaults to (None: TorchJD has none).
TORCHJD = {
    "sum": lambda T, jd: jd.Sum(),
    "pcgrad": lambda T, jd: jd.PCGrad(),
    "mgda": lambda T, jd: jd.MGDA(),
    "cagrad": lambda T, jd: jd.CAGrad(c=0.4),
    "nash-mtl": lambda T, jd: jd.NashMTL(n_tasks=T),
    "imtl-g": lambda T, jd: jd.IMTLG(),
    "aligned-mtl": lambda T, jd: jd.AlignedMTL(),
    "upgrad": lambda T, jd: jd.UPGrad(),
    "dualproj": lambda T, jd: jd.DualProj(),
    "gradvac": lambda T, jd: jd.GradVac(beta=0.01),
    "fairgrad": lambda T, jd: jd.FairGrad(alpha=1.0),
}


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


def paired(first, second, repeats: int, sync) -> tuple[float, float, float]:
    """Alternate two functions `repeats` times (after one warm-up of each): median seconds of
    each, and the median of the per-round ratio first/second."""
    first(), second()
    sync()
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b), statistics.median([x / y for x, y in zip(a, b)])


def copy_bandwidth(src: torch.Tensor, repeats: int, sync) -> float:
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), repeats, sync)
    return 2 * src.numel() * src.element_size() / seconds  # bytes read + written per second


def torchjd_aggregator(name: str, tasks: int):
    if name not in TORCHJD:
        return None
    try:  # an aggregator whose optional solver (cvxpy, ...) is not installed is left out, not fatal
        import torchjd.aggregation as jd

        return TORCHJD[name](tasks, jd)
    except (ImportError, AttributeError):
        return None


def conflicting_buffer(n: int, tasks: int, device: str) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(0)
    grads = torch.randn(tasks, n, device=device, generator=gen)
    grads[1:] -= 0.5 * grads[0]  # most pairs conflict, as in real multitask training
    return grads


def gradient_pass(name: str, grads: torch.Tensor, out: torch.Tensor):
    """One step's surgery for weighting `name` over the (T, n) `grads` into `out`: the Gram pass,
    the host's T x T work, then the combine pass (gram family) or the method's fused rows passes
    (rows family). None for the losses family (it never reads the gradients) and for a method
    whose draws per task do not divide T. Methods that read the task losses get ones."""
    cls = WEIGHTINGS[name]
    if cls.family == "losses" or len(grads) % cls.draws:
        return None
    count = len(grads) // cls.draws
    weighting = make(name, num_tasks=count, task_weights=[1.0] * count)
    tasks, losses = list(range(count)), (np.ones(count) if weighting.reads_losses else None)
    if weighting.family == "rows":
        def surgery():
            weighting.combine_rows(grads, out, tasks, kernel.gram(grads), losses)
        surgery.host = lambda gram: None   # its host work is inside combine_rows' passes
    else:
        def surgery():
            kernel.combine(grads, weighting.row_weights(weighting(kernel.gram(grads), tasks, losses)), out)
        surgery.host = lambda gram: weighting(gram, tasks, losses)
    surgery.weighting = weighting
    return surgery


def bench_size(n: int, tasks: int, device: str, repeats: int, names: list[str], torchjd: bool) -> list[dict]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    grads = conflicting_buffer(n, tasks, device)
    out, copy = torch.empty(n, device=device), torch.empty_like(grads)
    bound_per_copy = (2 * tasks + 1) / (2 * tasks)  # bound bytes over the copy's bytes
    gram_s, _, _ = paired(lambda: kernel.gram(grads), lambda: copy.copy_(grads), repeats, sync)
    gram = kernel.gram(grads)
    combine_s = timed(lambda: kernel.combine(grads, np.ones(tasks), out), repeats, sync)
    rows = []
    for name in names:
        surgery = gradient_pass(name, grads, out)
        if surgery is None:
            continue
        weighting = surgery.weighting
        surgery_s, copy_s, x_copy = paired(surgery, lambda: copy.copy_(grads), repeats, sync)
        row = {"name": name, "n": n, "tasks": tasks, "device": device,
               "copy_GBps": 2 * grads.numel() * grads.element_size() / copy_s / 1e9, "bound_s": copy_s * bound_per_copy,
               "gram_s": gram_s, "combine_s": combine_s, "surgery_s": surgery_s, "x_bound": x_copy / bound_per_copy,
               "host_s": timed(lambda: surgery.host(gram), repeats, lambda: None), "family": weighting.family}
        reference = torchjd_aggregator(name, tasks) if torchjd else None
        if reference is not None:
            _, row["torchjd_s"], slower = paired(surgery, lambda: reference(grads), max(3, repeats // 2), sync)
            row["speedup_vs_torchjd"] = 1 / slower
        rows.append(row)
    return rows


def bench_step(device: str, repeats: int, batch_size: int, names: list[str]) -> list[dict]:
    """Real MiniLM triple-batch steps per weighting; the surgery (gram, weights, combine) timed inside."""
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for name in names:
        config = TrainConfig(sampler="triple-batch", combine=name, batch_size=batch_size, device=device,
                             out="/tmp/mtcli-bench-runs", limit=2000, dropout=0.0,
                             task_weights={"sst": 1, "para": 1, "sts": 1} if name == "weighted" else {})
        trainer = Trainer(config, Console(quiet=True))
        plan = trainer.sampler.epoch_plan(1)
        surgery, gram, combine = [], kernel.gram, trainer.phase.grads.combine

        def timed_gram(grads):
            surgery.append(-time.perf_counter())
            return gram(grads)

        def timed_combine(weights):
            combine(weights)
            sync()
            surgery[-1] += time.perf_counter()

        kernel.gram, trainer.phase.grads.combine = timed_gram, timed_combine
        try:
            times = []
            for i in range(repeats + 1):
                sync()
                start = time.perf_counter()
                trainer.step(plan[i % len(plan)], i)
                sync()
                times.append(time.perf_counter() - start)
        finally:
            kernel.gram = gram
        step_s, surgery_s = statistics.median(times[1:]), statistics.median(surgery[1:])
        rows.append({"name": name, "device": device, "batch_size": batch_size, "step_s": step_s,
                     "surgery_s": surgery_s, "surgery_share": surgery_s / step_s,
                     "shared_params": trainer.phase.grads.size})
    return rows


def _status_bytes(field: str) -> int:
    """VmRSS / VmHWM of this process, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _memory_child(method: str, name: str, n: int, tasks: int) -> None:
    """Run one surgery on a fresh (T, n) buffer and print the peak RSS it added, in bytes: the
    high-water mark is reset after the setup (clear_refs 5), so the buffer's creation does not count."""
    grads = conflicting_buffer(n, tasks, "cpu")
    weighting = make(name, num_tasks=tasks, task_weights=[1.0] * tasks)
    reference = torchjd_aggregator(name, tasks)

    out = torch.zeros(n)  # a training step's combined-gradient buffer: allocated (and touched) once per run

    def run(g):
        if method == "torchjd":
            return reference(g)
        return kernel.combine(g, weighting(kernel.gram(g)), out[: g.shape[1]])

    run(grads[:, :4096].contiguous())  # library start-up (BLAS buffers, thread pools) is not the surgery's
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
    before = _status_bytes("VmRSS")
    run(grads)
    print(_status_bytes("VmHWM") - before)


def bench_memory(n: int, tasks: int, name: str) -> dict:
    import subprocess

    row = {"name": name, "n": n, "tasks": tasks, "buffer_bytes": tasks * n * 4}
    for method in ("native", "torchjd"):
        done = subprocess.run([sys.executable, __file__, "--memory-child", method, name, str(n), str(tasks)],
                              capture_output=True, text=True, check=True)
        row[f"{method}_extra_bytes"] = int(done.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", nargs="+", default=["22M", "110M"])
    parser.add_argument("--tasks", nargs="+", type=int, default=[3, 8])
    parser.add_argument("--only", nargs="+", default=list(WEIGHTINGS), choices=list(WEIGHTINGS), metavar="NAME")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-torchjd", action="store_true", help="leave TorchJD's aggregators out")
    parser.add_argument("--step", action="store_true", help="measure the surgery share of a real training step")
    parser.add_argument("--step-batch", type=int, default=32)
    parser.add_argument("--memory", action="store_true", help="peak extra memory, ours vs TorchJD (fresh processes)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()

    env = {"date": str(date.today()), "machine": platform.node(), "cpu": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "backend": kernel.backend(args.device)}
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(env))
    rows = []
    if args.memory:
        print("| weighting | n | T | buffer MiB | mtcli extra MiB | TorchJD extra MiB |")
        print("|---|---|---|---|---|---|")
        for size in args.n:
            for tasks in args.tasks:
                for name in args.only:
                    row = bench_memory(parse_size(size), tasks, name)
                    rows.append(row)
                    print(f"| {name} | {size} | {tasks} | {row['buffer_bytes'] / 2**20:.0f} | "
                          f"{row['native_extra_bytes'] / 2**20:.1f} | {row['torchjd_extra_bytes'] / 2**20:.1f} |", flush=True)
    elif args.step:
        print("| weighting | step s | surgery ms | share of the step |")
        print("|---|---|---|---|")
        for row in bench_step(args.device, args.repeats, args.step_batch, args.only):
            rows.append(row)
            print(f"| {row['name']} | {row['step_s']:.2f} | {row['surgery_s'] * 1e3:.1f} | {row['surgery_share']:.1%} |",
                  flush=True)
    else:
        print("| weighting | n | T | copy GB/s | bound ms | gram ms | combine ms | host ms | surgery ms | x bound | TorchJD ms | vs TorchJD |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for size in args.n:
            for tasks in args.tasks:
                gc.collect()  # the previous size's buffers go before the next, larger ones
                for row in bench_size(parse_size(size), tasks, args.device, args.repeats, args.only, not args.no_torchjd):
                    rows.append(row)
                    jd = (f"{row['torchjd_s'] * 1e3:.0f} | {row['speedup_vs_torchjd']:.1f}x" if "torchjd_s" in row
                          else "- | -")
                    print(f"| {row['name']} | {size} | {tasks} | {row['copy_GBps']:.1f} | {row['bound_s'] * 1e3:.1f} | "
                          f"{row['gram_s'] * 1e3:.1f} | {row['combine_s'] * 1e3:.1f} | {row['host_s'] * 1e3:.2f} | "
                          f"{row['surgery_s'] * 1e3:.1f} | {row['x_bound']:.2f} | {jd} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
