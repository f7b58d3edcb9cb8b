"""Which nodes make int8 lose accuracy: dev metrics of one export's tasks with every MatMul
quantized, and with node families kept in fp32.

    python bench/int8.py --export export            # an fp32 export (mtcli export, no --quantize)

For each exclusion set the task graphs are quantized the way `mtcli export --quantize int8`
does (dynamic, int8 weights per channel, 7 bits) but with the named nodes left fp32, and
each task is evaluated on its full dev set. Prints a markdown table of the change in each
task's headline metric (points) against the fp32 graphs, and the int8 file sizes.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mtcli.export.onnx import INT8_FP32_CANDIDATES, _quantize, nodes_matching  # noqa: E402
from mtcli.eval.evaluate import evaluate_onnx  # noqa: E402

# node-name patterns of the fused BERT graphs (see the Attention / MatMul names in any task graph)
FAMILIES = {
    **{kept: list(patterns) for kept, patterns in INT8_FP32_CANDIDATES.items()},  # what `mtcli export` chooses from
                                                                                  # ("nothing": all quantized)
    "attention out": [r"/attention/out/MatMul$"],
    "Attention (qkv)": [r"^Attention_\d+$"],
    "last layer": [r"layers\.5/", r"^Attention_5$"],
    "first layer": [r"layers\.0/", r"^Attention_0$"],
    "head": [r"/(linear|Gemm)"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, default=Path("export"))
    parser.add_argument("--only", nargs="+", choices=sorted(FAMILIES))
    args = parser.parse_args()
    fp32 = evaluate_onnx(args.export, providers=["cpu"]).results
    tasks = list(fp32["headline"])
    print("| kept in fp32 | nodes | " + " | ".join(f"{t} change (points)" for t in tasks) + " | overall change | MiB |")
    print("|---|---|" + "---|" * (len(tasks) + 2))
    print("| fp32 reference | - | " + " | ".join(f"{fp32['headline'][t]:.4f}" for t in tasks) +
          f" | {fp32['overall']:.4f} | - |", flush=True)
    for name, patterns in FAMILIES.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "export"
            shutil.copytree(args.export, folder)
            size, excluded = 0, 0
            manifest = json.loads((folder / "manifest.json").read_text())
            for task, entry in manifest["tasks"].items():
                graph = folder / entry["file"]
                skip = nodes_matching(graph, patterns) if patterns else []
                excluded = len(skip)
                _quantize(graph, folder / f"{task}.int8.onnx", nodes_to_exclude=skip)
                entry["int8_file"] = f"{task}.int8.onnx"
                size += (folder / entry["int8_file"]).stat().st_size
            embed = folder / manifest["embedding"]["file"]
            _quantize(embed, folder / "embed.int8.onnx", nodes_to_exclude=nodes_matching(embed, patterns) if patterns else [])
            manifest["embedding"]["int8_file"] = "embed.int8.onnx"
            (folder / "manifest.json").write_text(json.dumps(manifest))
            int8 = evaluate_onnx(folder, providers=["cpu"], quantized=True).results
            changes = " | ".join(f"{100 * (int8['headline'][t] - fp32['headline'][t]):+.2f}" for t in tasks)
            print(f"| {name} | {excluded} per graph | {changes} | {100 * (int8['overall'] - fp32['overall']):+.2f} | "
                  f"{size / len(tasks) / 2**20:.0f} |", flush=True)


if __name__ == "__main__":
    main()
