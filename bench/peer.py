"""mtcli's scorer against what users would pick instead: sentence-transformers, on the same
pairs, the same threads, in one process, side by side.

    pip install "sentence-transformers[onnx]"     # bench-only peer, never a run-time dependency
    python bench/peer.py --export export --rows 2000
    python bench/peer.py --export export-mpnet --backbone all-mpnet-base-v2   # an MPNet export against its peer

Each backend scores STS-style pairs: the cosine of the two sentences' mean-pooled
MiniLM-L6 embeddings. mtcli: `Scorer.score` on the export's cosine task (fp32 and int8
graphs). sentence-transformers: `model.encode` of both sides then the cosine, with its
torch backend, its ONNX backend, and its ONNX backend on the AVX2 dynamically quantized
graph it exports (`export_dynamic_quantized_onnx_model(..., "avx2")`), all on the
backbone the export was trained from (--backbone: the packaged all-MiniLM-L6-v2 by default;
the same architecture and pooling as the export's encoder; throughput does not depend on
the weights). Threads: torch's pool and every onnxruntime
session use the machine's cores. Median of --repeats passes per backend, the backends
taking turns.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from mtcli.core.data import read_split  # noqa: E402
from mtcli.core.paths import resolve_model_dir  # noqa: E402
from mtcli.core.tasks import load_task_file  # noqa: E402
from mtcli.inference.scorer import Scorer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roof import sgemm_gflops  # noqa: E402


def sentence_transformers_backends(model_dir: Path, work: Path, threads: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    torch.set_num_threads(threads)
    copy = work / "backbone"
    shutil.copytree(model_dir, copy)  # the ONNX backend writes its graphs next to the model
    backends = {"sentence-transformers torch": SentenceTransformer(str(copy), device="cpu")}
    try:
        onnx_model = SentenceTransformer(str(copy), device="cpu", backend="onnx")  # exports the graph on first load
    except Exception as e:   # its ONNX backend needs optimum (sentence-transformers[onnx])
        print(f"sentence-transformers' ONNX backends skipped: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    else:
        backends["sentence-transformers onnx"] = onnx_model
        export_dynamic_quantized_onnx_model(onnx_model, "avx2", str(copy))
        backends["sentence-transformers onnx int8 (avx2)"] = SentenceTransformer(
            str(copy), device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model_quint8_avx2.onnx"})

    def scorer(model):
        def score(pairs):
            a = model.encode([p[0] for p in pairs], batch_size=64, convert_to_numpy=True)
            b = model.encode([p[1] for p in pairs], batch_size=64, convert_to_numpy=True)
            return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return score

    return {name: scorer(model) for name, model in backends.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=Path("export"))
    parser.add_argument("--task", default="sts", help="a cosine (regression pair) task of the export")
    parser.add_argument("--rows", type=int, default=2000, help="the first N sts-train pairs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", help="the peer's model: a folder or a backbone's name (default: all-MiniLM-L6-v2)")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    pairs = [ex.texts for ex in read_split(load_task_file()["sts"], "train").examples[: args.rows]]
    backends = {}
    for name, options in (("mtcli fp32", {}), ("mtcli int8", {"int8": True}),
                          ("mtcli fp32, 1 session of all threads", {"sessions": 1}),
                          ("mtcli int8, 1 session of all threads", {"int8": True, "sessions": 1})):
        scorer = Scorer(args.export, providers=["cpu"], **options)
        backends[f"{name} ({scorer.describe()})" if "1 session" not in name else name] = \
            lambda rows, scorer=scorer: scorer.score(args.task, rows)
    roof = sgemm_gflops()
    with tempfile.TemporaryDirectory() as work:
        backends.update(sentence_transformers_backends(resolve_model_dir(args.backbone), Path(work), threads))
        import sentence_transformers
        import torch

        print(json.dumps({"date": str(date.today()), "machine": platform.node(), "threads": threads, "rows": len(pairs),
                          "sgemm_roof_gflops": round(roof, 1),
                          "backbone": args.backbone or "all-MiniLM-L6-v2",
                          "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                          "repeats": args.repeats}))
        for score in backends.values():
            score(pairs[:64])  # warm-up (and the ONNX sessions' start)
        seconds = {name: [] for name in backends}
        for _ in range(args.repeats):
            for name, score in backends.items():
                start = time.perf_counter()
                score(pairs)
                seconds[name].append(time.perf_counter() - start)
    rates = {name: len(pairs) / statistics.median(s) for name, s in seconds.items()}
    best_peer = max(r for n, r in rates.items() if not n.startswith("mtcli"))
    print("| backend | pairs/s | x best sentence-transformers backend |\n|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.0f} | {rate / best_peer:.2f}x |")


if __name__ == "__main__":
    main()
