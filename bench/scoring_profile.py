"""Where the time of one scoring run goes (#60, point 1): for one export, fp32 and int8 graphs.

    python bench/scoring_profile.py --export export-minilm --rows 1000
    python bench/scoring_profile.py --export export-mpnet --rows 300
    python bench/scoring_profile.py --export export-mpnet --rows 300 --versus export-mpnet-unfused

Two views of the same work, STS-B training pairs scored as `mtcli score sts` scores them (each
distinct sentence once through embed.onnx, then the cosine head):

1. The whole command, under cProfile: the share of its wall time in onnxruntime's run, in the
   tokenizer (lengths and encoding), in reading the input and writing the output, and the rest
   (Python between batches). With --sessions 1: cProfile sees one thread, and the sessions
   that run side by side by default run in others.
2. Inside onnxruntime (its own profiler, one trace per graph): time per operator type and per
   encoder layer, and each matrix product's achieved GFLOP/s, from the shapes the trace
   records, against roofs measured in the same run: the sgemm roof (bench/roof.py: numpy's
   BLAS), and onnxruntime's own MatMul (fp32) and MatMulInteger (u8 x s8) at the model's
   shapes (the tokens of a batch x hidden x 4 hidden, and back), the best this onnxruntime does
   here: its kernels outrun numpy's BLAS on some CPUs, so the sgemm roof alone can read > 100%.

Threads: the machine's cores, as scoring uses them. Prints markdown tables and writes them with
the raw figures to --json.
"""

import argparse
import cProfile
import csv
import json
import os
import platform
import pstats
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from roof import sgemm_gflops  # noqa: E402

MATMULS = {"MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
           "QGemm", "QLinearMatMul"}
ATTENTIONS = {"Attention", "QAttention"}   # onnxruntime's fused attention: the QKV projection inside
INT8_MATMULS = (MATMULS | ATTENTIONS) - {"MatMul", "Gemm", "FusedMatMul", "Attention"}


def sts_pairs(rows: int) -> list[tuple[str, str]]:
    from mtcli.core.data import read_split
    from mtcli.core.tasks import load_task_file

    examples = read_split(load_task_file(None)["sts"], "train").examples[:rows]
    return [tuple(ex.texts) for ex in examples]


# ---------------------------------------------------------------------- 1. the whole command

PARTS = {   # (module path fragment, function) -> part; cumulative times, so none nests in another
    "onnxruntime": [("onnxruntime_inference_collection.py", "run")],
    "tokenizer": [("mtcli/core/tokenizer.py", "encode"), ("mtcli/core/tokenizer.py", "lengths")],
    "loading (manifest, tokenizer, graphs)": [("mtcli/inference/scorer.py", "__init__"),
                                              ("mtcli/inference/scorer.py", "make_session")],
    "reading": [("mtcli/inference/score.py", "read_score_rows")],
    "writing": [("mtcli/inference/score.py", "_write"), ("csv", "writerow"), ("csv", "writerows")],
}


def profile_command(export: Path, pairs: list, int8: bool, work: Path) -> dict:
    from mtcli.cli import main

    rows = work / "rows.tsv"
    with open(rows, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["sentence1", "sentence2"])
        writer.writerows(pairs)
    # one session: cProfile sees only the thread it runs in, and side-by-side sessions run in others
    argv = ["mtcli", "score", "sts", str(rows), "--model", str(export), "-o", str(work / "out.tsv"), "--sessions", "1",
            *(["--int8"] if int8 else [])]
    saved, sys.argv = sys.argv, argv
    profiler = cProfile.Profile()
    start = time.perf_counter()
    try:
        profiler.enable()
        main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        profiler.disable()
        sys.argv = saved
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    parts = {}
    for part, wanted in PARTS.items():
        parts[part] = sum(entry[3] for (file, _, func), entry in stats.items()
                          if any(fragment in file and func == name for fragment, name in wanted))
    parts["other (imports, Python between batches)"] = wall - sum(parts.values())
    return {"wall_s": wall, "rows_per_s": len(pairs) / wall, "parts_s": parts}


# ---------------------------------------------------------------------- 2. inside onnxruntime


def _flops(event: dict) -> float:
    """From the shapes the trace records: a matrix product's 2 x output elements x inner
    dimension; onnxruntime's fused attention (its own QKV projection, then the scores and their
    weighted sum) 2 x tokens x hidden x 3 hidden + 4 x batch x length^2 x hidden."""
    args = event.get("args", {})
    inputs = [next(iter(d.values())) for d in args.get("input_type_shape", []) if d]
    outputs = [next(iter(d.values())) for d in args.get("output_type_shape", []) if d]
    if not inputs or not outputs or not inputs[0]:
        return 0.0
    if args.get("op_name") in ATTENTIONS:
        batch, length, hidden = inputs[0]
        return 2.0 * batch * length * hidden * inputs[1][-1] + 4.0 * batch * length * length * hidden
    return 2.0 * float(np.prod(outputs[0])) * inputs[0][-1]


def profile_graph(export: Path, pairs: list, int8: bool, work: Path, threads: int) -> dict:
    """onnxruntime's trace of embed.onnx over the pairs' distinct sentences, scored as `score` does."""
    from mtcli.inference.scorer import Scorer, make_session

    scorer = Scorer(export, int8=int8, providers=("cpu",), threads=threads, sessions=1)
    entry = scorer.manifest["embedding"]
    graph = export / entry["int8_file" if int8 else "file"]
    prefix = str(work / f"trace-{'int8' if int8 else 'fp32'}")
    session = make_session(graph, ("cpu",), threads, profile=prefix)
    scorer._sessions[graph.name] = [session]
    sentences = list(dict.fromkeys(text for pair in pairs for text in pair))
    scorer.embed(sentences[:64])   # warm-up, in the trace too: dropped below by its share of runs
    start = time.perf_counter()
    scorer.embed(sentences)
    wall = time.perf_counter() - start
    trace = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first = runs[1]["ts"] if len(runs) > 1 else 0   # after the warm-up's runs
    nodes = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
             and e["ts"] >= first]
    starts = sorted(e["ts"] for e in runs)
    by_op, by_layer, gemm = defaultdict(float), defaultdict(float), defaultdict(lambda: [0.0, 0.0])
    run, part = -1, "embeddings"
    for e in sorted(nodes, key=lambda e: e["ts"]):
        while run + 1 < len(starts) and e["ts"] >= starts[run + 1]:
            run, part = run + 1, "embeddings"   # each run starts at the embeddings
        op, seconds = e["args"].get("op_name", "?"), e["dur"] / 1e6
        by_op[op] += seconds
        layer = re.search(r"layers\.(\d+)", e["name"])
        if layer:   # a fused node keeps no module name: it belongs to the layer the last named node was in
            part = f"layer {int(layer[1])}"
        by_layer[part] += seconds
        if op in MATMULS | ATTENTIONS:
            gemm[op][0] += seconds
            gemm[op][1] += _flops(e)
    session_s = sum(e["dur"] for e in runs[1:] if e["ts"] >= first) / 1e6
    return {"graph": graph.name, "sentences": len(sentences), "wall_s": wall, "session_run_s": session_s,
            "nodes_s": sum(by_op.values()), "by_op_s": dict(by_op), "by_layer_s": dict(by_layer),
            "gemm": {op: {"s": s, "gflop": f / 1e9, "gflops": f / s / 1e9 if s else 0.0} for op, (s, f) in gemm.items()}}


def ort_roof(m: int, k: int, n: int, threads: int, int8: bool, repeats: int = 20) -> float:
    """G(FL)OP/s of onnxruntime's own matrix product, (m x k) @ (k x n): MatMul in fp32, or
    MatMulInteger with u8 activations x s8 weights; the best this onnxruntime does here."""
    from onnx import TensorProto, helper, numpy_helper
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    if int8:
        weights = numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"])
        extra = [numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
                 numpy_helper.from_array(np.array(0, np.int8), "b_zero")]
        a_type, y_type, a = TensorProto.UINT8, TensorProto.INT32, rng.integers(0, 255, (m, k), dtype=np.uint8)
    else:
        weights = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B")
        node, extra = helper.make_node("MatMul", ["A", "B"], ["Y"]), []
        a_type, y_type, a = TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((m, k), dtype=np.float32)
    graph = helper.make_graph([node], "roof", [helper.make_tensor_value_info("A", a_type, [m, k])],
                              [helper.make_tensor_value_info("Y", y_type, [m, n])], initializer=[weights, *extra])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"A": a})
    best = min(_timed(lambda: session.run(None, {"A": a})) for _ in range(repeats))
    return 2 * m * k * n / best / 1e9


def versus(exports: list[Path], pairs: list, int8: bool, repeats: int = 3) -> dict[str, float]:
    """Sentences/s of each export's embedding, as `mtcli score` runs it (Scorer's defaults), the
    exports taking turns; the median of `repeats` passes each."""
    from mtcli.inference.scorer import Scorer

    sentences = list(dict.fromkeys(text for pair in pairs for text in pair))
    scorers = {str(e): Scorer(e, int8=int8, providers=("cpu",)) for e in exports}
    for scorer in scorers.values():
        scorer.embed(sentences[:64])
    seconds = {name: [] for name in scorers}
    for _ in range(repeats):
        for name, scorer in scorers.items():
            seconds[name].append(_timed(lambda: scorer.embed(sentences)))
    return {name: len(sentences) / sorted(s)[len(s) // 2] for name, s in seconds.items()}


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# ---------------------------------------------------------------------- tables


def share_table(title: str, parts: dict, total: float) -> list[str]:
    lines = [f"| {title} | seconds | share |", "|---|---|---|"]
    for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {seconds:.3f} | {100 * seconds / total:.1f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--versus", type=Path, action="append", default=[],
                        help="another export of the same model (the unfused MPNet graphs; repeatable): the embeddings' "
                             "sentences/s side by side, taking turns")
    args = parser.parse_args()

    from mtcli.inference.manifest import read_manifest

    manifest = read_manifest(args.export)
    hidden = manifest["embedding"]["dim"]
    pairs = sts_pairs(args.rows)
    numpy_roof = sgemm_gflops()
    tokens = 64 * 16   # a batch of 64 sentences of about 16 tokens: the shapes scoring runs
    shapes = [(tokens, hidden, 4 * hidden), (tokens, 4 * hidden, hidden)]
    roof = max(ort_roof(*shape, args.threads, int8=False) for shape in shapes)
    roof8 = max(ort_roof(*shape, args.threads, int8=True) for shape in shapes)
    result = {"export": str(args.export), "rows": len(pairs), "threads": args.threads, "sgemm_roof_gflops": numpy_roof,
              "ort_fp32_roof_gflops": roof, "ort_int8_roof_gops": roof8, "machine": platform.node(),
              "date": str(date.today()), "runtimes": {}}
    out = [f"{args.export}: {manifest['encoder']['model_type']}, {manifest['encoder'].get('parameters', 0):,} "
           f"parameters; {len(pairs)} STS-B training pairs; {args.threads} threads; {result['machine']}, "
           f"{result['date']}; sgemm roof (bench/roof.py, numpy's BLAS at 2048^3) {numpy_roof:.1f} GFLOP/s; "
           f"onnxruntime's own roofs at the model's shapes ({tokens} x {hidden} x {4 * hidden} and back): MatMul "
           f"{roof:.1f} GFLOP/s, MatMulInteger {roof8:.1f} GOP/s", ""]
    with tempfile.TemporaryDirectory() as work:
        for int8 in (False, True):
            if int8 and "int8_file" not in manifest["embedding"]:
                continue
            name = "int8" if int8 else "fp32"
            command = profile_command(args.export, pairs, int8, Path(work))
            graph = profile_graph(args.export, pairs, int8, Path(work), args.threads)
            result["runtimes"][name] = {"command": command, "graph": graph}
            out += [f"### {name}: `mtcli score sts` end to end, {command['rows_per_s']:.0f} pairs/s "
                    f"({command['wall_s']:.2f} s)", ""]
            out += share_table("part", command["parts_s"], command["wall_s"]) + [""]
            nodes = graph["nodes_s"]
            out += [f"### {name}: inside onnxruntime, {graph['graph']} over {graph['sentences']} sentences "
                    f"({graph['wall_s']:.2f} s embedding, {graph['session_run_s']:.2f} s in session runs, "
                    f"{nodes:.2f} s in nodes)", ""]
            out += share_table("operator type", graph["by_op_s"], nodes) + [""]
            out += share_table("layer", graph["by_layer_s"], nodes) + [""]
            out += ["| matrix product | seconds | GFLOP | GFLOP/s | of the roof |", "|---|---|---|---|---|"]
            for op, g in sorted(graph["gemm"].items(), key=lambda item: -item[1]["s"]):
                ceiling = roof8 if op in INT8_MATMULS else roof
                out.append(f"| {op} | {g['s']:.3f} | {g['gflop']:.1f} | {g['gflops']:.1f} | "
                           f"{100 * g['gflops'] / ceiling:.0f}% of onnxruntime's {'int8' if op in INT8_MATMULS else 'fp32'}"
                           f" roof, {100 * g['gflops'] / numpy_roof:.0f}% of the sgemm roof |")
            out.append("")
    if args.versus:
        for int8 in (False, True):
            exports = [e for e in (args.export, *args.versus) if not int8 or "int8_file" in read_manifest(e)["embedding"]]
            if len(exports) < 2:
                continue
            rates = versus(exports, pairs, int8)
            result.setdefault("versus", {})["int8" if int8 else "fp32"] = rates
            out += [f"| {'int8' if int8 else 'fp32'} embedding, sentences/s | " + " | ".join(
                f"{name}: {rate:.1f}" for name, rate in rates.items()) + " |"]
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
