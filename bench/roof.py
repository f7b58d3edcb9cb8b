"""The machine's compute roof, measured in the same run as a benchmark: single-precision GEMM
throughput (GFLOP/s) at the threads the benchmark uses. Training and scoring on this CPU are
compute-bound, so their efficiency is stated against this number.

    from roof import sgemm_gflops
    print(f"sgemm roof {sgemm_gflops():.0f} GFLOP/s")

Uses numpy's BLAS (no torch needed: the scoring benchmarks run without it)."""

import time

import numpy as np


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best of `repeats` (size x size) @ (size x size) fp32 products, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


if __name__ == "__main__":
    print(f"sgemm roof {sgemm_gflops():.0f} GFLOP/s")
