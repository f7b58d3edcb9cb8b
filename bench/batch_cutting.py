"""Scorer.score_window on the bundled STS rows in windows of 1,024, 128, 64 and 32 rows, with
the window cut into onnxruntime runs two ways, side by side in one process (twice, alternating):
fixed chunks of 64 rows (the scorer before 2026-12-02) and the dynamic program of
`mtcli.core.encoding.length_batches` (padded tokens + a per-run overhead). Rows/s per window size.

    python bench/batch_cutting.py --export /tmp/w/export
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mtcli.inference.scorer as scorer_module  # noqa: E402
from mtcli.inference.scorer import Scorer  # noqa: E402
from serve import dev_rows  # noqa: E402


def fixed_chunks(lengths, max_rows, overhead=0):
    return [slice(i, min(i + max_rows, len(lengths))) for i in range(0, len(lengths), max_rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", default="export")
    args = parser.parse_args()
    rows = [tuple(r) for r in dev_rows("sts")]
    scorer = Scorer(args.export, providers=("cpu",))
    scorer.score_window("sts", rows, 64)   # warm
    cutters = {"fixed 64": fixed_chunks, "dynamic program": scorer_module.length_batches}

    def rate(window: int) -> float:
        start, n = time.perf_counter(), 0
        for i in range(0, len(rows), window):
            scorer.score_window("sts", rows[i:i + window], 64)
            n += len(rows[i:i + window])
        return n / (time.perf_counter() - start)

    for repeat in range(2):
        for name, cutter in cutters.items():
            scorer_module.length_batches = cutter
            print(repeat, name, {window: round(rate(window)) for window in (1024, 128, 64, 32)}, flush=True)


if __name__ == "__main__":
    main()
