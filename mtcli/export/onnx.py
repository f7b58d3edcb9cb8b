"""`mtcli export`: a checkpoint to ONNX graphs, one per task, plus tokenizer and manifest.

One graph per task (sst.onnx, para.onnx, sts.onnx): each takes exactly the inputs
its head's encoding needs and returns what users see (probabilities or a 0-5 score),
so `mtcli score sts` loads one graph and nothing else. Batch and sequence axes are
dynamic. Parity with torch is checked on real dev rows before the manifest is written.
"""

import contextlib
import importlib.metadata
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from mtcli.core.version import __version__
from mtcli.model.checkpoint import checkpoint_data, checkpoint_hash, load_checkpoint
from mtcli.core.encoding import encode, input_names
from mtcli.core.errors import UserError
from mtcli.core.fileio import staged_dir, write_json, write_text
from mtcli.export.card import model_card
from mtcli.inference.manifest import (CARD, FORMAT, FORMAT_VERSION, MANIFEST, PAIR_HEAD_INPUTS, export_files, graph_file,
                                     output_name, read_manifest_tasks)
from mtcli.model.multitask import MultitaskModel
from mtcli.core.data import read_split
from mtcli.core.tasks import EMBEDDING, Task

PARITY_TOLERANCE = 1e-4
MIN_OPSET = 17


def max_opset() -> int:
    """The newest opset the TorchScript exporter (the one whose graphs onnxruntime fuses) writes."""
    from torch.onnx import _constants

    return min(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20), _constants.ONNX_MAX_OPSET)


def check_out_dir(out_dir: Path, checkpoint: Path) -> None:
    """Refuse an output folder that is, holds, or lies inside the checkpoint or a run folder:
    replacing it would destroy the training run. (Any other non-export folder is refused
    by `staged_dir` when it is not empty.)"""
    from mtcli.run.folder import enclosing_run_dir

    out, ckpt = out_dir.resolve(), checkpoint.resolve()
    if out == ckpt or out in ckpt.parents:
        raise UserError(f"{out_dir}: holds the checkpoint {checkpoint}; exporting there would replace it: "
                        f"pass another --out, e.g. export/")
    run = enclosing_run_dir(out)
    if run is not None:
        raise UserError(f"{out_dir}: is inside the run folder {run}; exporting there would replace part of the run: "
                        f"pass an --out outside it, e.g. export/")


class TaskGraph(torch.nn.Module):
    """One task's inputs -> its predictions, with the input order of `input_names`."""

    def __init__(self, model: MultitaskModel, task: str):
        super().__init__()
        self.model, self.task = model, task
        self.names = input_names(model.encoding(task), model.encoder.config.family.token_types)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model.predict(self.task, self.model(self.task, dict(zip(self.names, inputs))))


class EmbedGraph(torch.nn.Module):
    """One sentence -> the encoder's pooled embedding (what `Scorer.embed` returns, and the
    first half of a separately encoded pair)."""

    def __init__(self, model: MultitaskModel):
        super().__init__()
        self.model = model
        self.names = input_names("single", model.encoder.config.family.token_types)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model.encode("single", dict(zip(self.names, inputs)))


class PairHeadGraph(torch.nn.Module):
    """A separately encoded pair task's second half: the two sentences' embeddings -> its predictions."""

    names = PAIR_HEAD_INPUTS

    def __init__(self, model: MultitaskModel, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.model.predict(self.task, self.model.head(self.task).from_pair(u, v))


@contextlib.contextmanager
def _quiet():
    """The exporter and quantizer narrate every stage on stdout, stderr and the root logger."""
    sink = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("", "torch", "torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _sample_inputs(tokenizer, encoding: str, names: list[str]) -> tuple[torch.Tensor, ...]:
    rows = [("a first example sentence", "and its pair"), ("a second, slightly longer example sentence", "the other side")]
    sample = encode(tokenizer, encoding, rows if encoding != "single" else [r[:1] for r in rows])
    return tuple(torch.from_numpy(sample[name]) for name in names)


def _export_encoder_graph(graph: torch.nn.Module, args, output: str, path: Path, opset: int, config) -> dict[str, int]:
    """Export a graph that runs the encoder, and fuse it for onnxruntime; returns the fused operator counts.

    The encoder is traced with its attention spelled out (matmul, additive mask, softmax,
    matmul) and separate query/key/value projections: the form onnxruntime's BERT graph
    optimizer recognises and fuses into one Attention op per layer, next to
    SkipLayerNormalization and BiasGelu. MPNet's relative position bias has no place in that
    pattern, so its attention is exported as one com.microsoft MultiHeadAttention node per layer
    (mtcli.model.bert.ExportedMultiHeadAttention), the bias computed once per batch and shared.
    (The TorchScript exporter is used because the dynamo exporter's graph of the same code does
    not match those fusion patterns.)"""
    traced = path.with_suffix(".traced.onnx")
    graph.model.encoder.spelled_out_attention = True
    try:
        torch.onnx.export(graph.eval(), args, str(traced), dynamo=False, input_names=graph.names, output_names=[output],
                          opset_version=opset, do_constant_folding=True,
                          custom_opsets=graph.model.encoder.custom_opsets,
                          dynamic_axes={name: {0: "batch", 1: "sequence"} for name in graph.names})
        fused = _fuse(traced, path, config)
    finally:
        graph.model.encoder.spelled_out_attention = False
        traced.unlink(missing_ok=True)
    _check_dynamic_axes(path)
    return fused


def _export_graph(model: MultitaskModel, tokenizer, task: str, path: Path, opset: int) -> dict[str, int]:
    """One task's whole graph: its encoded inputs -> its predictions."""
    graph = TaskGraph(model, task)
    args = _sample_inputs(tokenizer, model.encoding(task), graph.names)
    return _export_encoder_graph(graph, args, output_name(model.tasks[task].kind), path, opset, model.encoder.config)


def _export_pair_head(model: MultitaskModel, task: str, path: Path, opset: int) -> None:
    """A separate pair task's head alone: (embedding_a, embedding_b) -> predictions. Tiny, unfused."""
    width = model.encoder.hidden_size
    torch.onnx.export(PairHeadGraph(model, task).eval(), (torch.randn(2, width), torch.randn(2, width)), str(path),
                      dynamo=False, input_names=list(PAIR_HEAD_INPUTS), output_names=[output_name(model.tasks[task].kind)],
                      opset_version=opset, dynamic_axes={name: {0: "batch"} for name in PAIR_HEAD_INPUTS})


def _fuse(src: Path, dst: Path, config) -> dict[str, int]:
    """onnxruntime's offline BERT fusions (Attention, SkipLayerNormalization, BiasGelu, ...)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(src), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=0)
    optimized.save_model_to_file(str(dst))
    return {op: count for op, count in optimized.get_fused_operator_statistics().items() if count}


def _check_dynamic_axes(path: Path) -> None:
    """Every input must keep symbolic batch and sequence axes (a specialised axis would
    make the graph refuse other batch sizes at scoring time)."""
    for tensor in onnx.load(str(path), load_external_data=False).graph.input:
        dims = [d.dim_param for d in tensor.type.tensor_type.shape.dim]
        if len(dims) != 2 or not all(dims):
            raise RuntimeError(f"{path.name}: input {tensor.name} lost its dynamic axes during export ({dims})")


# Node families that may stay fp32 in the int8 graphs: one projection between the hidden and the
# feed-forward width per layer, so each costs the same size and time. Which one keeps accuracy
# depends on the model (BENCHMARKS.md, "int8: which nodes stay fp32": on the default MiniLM recipe
# ffn_in kept every task within 0.1 points and ffn_out lost 1.0 on SST; on a single-task MPNet SST
# model ffn_in lost 3.2 points and ffn_out 0.8), so the export measures each on dev and keeps the
# better; the first is kept when no dev data is located. Keeping nothing fp32 is the third
# candidate: the fastest (MPNet's int8 embedding about 1.5x the speed with ffn_in kept, BENCHMARKS.md
# "Where the time goes"), kept when its dev quality equals the best's (within INT8_EQUAL_QUALITY
# on its worst task).
INT8_FP32_CANDIDATES = {"ffn_in": (r"/ffn_in/MatMul$",), "ffn_out": (r"/ffn_out/MatMul$",), "nothing": ()}
INT8_EQUAL_QUALITY = 0.0025   # a quarter of a point: well inside a dev set's sampling noise


def nodes_matching(path: Path, patterns) -> list[str]:
    """Names of the graph's nodes that match any of the regular expressions."""
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node
            if any(re.search(p, n.name) for p in patterns)]


def _quantize(src: Path, dst: Path, nodes_to_exclude: list[str] | None = None) -> None:
    """Dynamic int8 quantization: int8 weights per output channel, uint8 activations scaled at
    run time. Weights use 7 bits (reduce_range): without AVX-512 VNNI the u8 x s8 kernels add
    pairs of products in 16 bits, which full-range weights can saturate. `nodes_to_exclude`
    stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The exporter's intermediate shape annotations trip the quantizer's own shape
    # inference; it re-infers them, so hand it the graph without them. It cannot type the
    # outputs of the fused (com.microsoft) operators: they are float.
    model = onnx.load(str(src))
    del model.graph.value_info[:]
    plain = dst.with_suffix(".plain.onnx")
    onnx.save(model, str(plain))
    try:
        quantize_dynamic(str(plain), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         nodes_to_exclude=nodes_to_exclude or [], extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        plain.unlink(missing_ok=True)


def parity_rows(task: Task, count: int = 64) -> list[tuple[str, ...]]:
    """Real dev rows (longest and shortest included) for the torch-vs-ONNX check."""
    examples = read_split(task, "dev").examples
    by_length = sorted(examples, key=lambda ex: sum(len(t) for t in ex.texts))
    picked = by_length[:4] + by_length[-4:] + examples[: count - 8]
    return [ex.texts for ex in picked]


def generated_rows(tokenizer, task: Task, count: int = 64) -> list[tuple[str, ...]]:
    """Rows of the vocabulary's words, from one word to past the maximum length, for the parity
    check when no dev data was located (a copied checkpoint without its data)."""
    words = sorted(w for w in tokenizer.backend.get_vocab() if w.isalpha() and w.islower())
    rng = np.random.default_rng(0)
    lengths = np.geomspace(1, 2 * tokenizer.max_length, count).astype(int)
    return [tuple(" ".join(rng.choice(words, size=n)) for _ in task.text) for n in lengths]


def max_difference(graph: torch.nn.Module, path: Path, batches: list[dict[str, np.ndarray]]) -> float:
    """Largest |onnxruntime - torch| of a graph's output over the given input batches."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in batches:
        inputs = {name: batch[name] for name in graph.names}
        with torch.no_grad():
            expected = graph.eval()(*(torch.from_numpy(v) for v in inputs.values())).numpy()
        worst = max(worst, float(np.abs(session.run(None, inputs)[0] - expected).max()))
    return worst


def check_parity(model: MultitaskModel, tokenizer, task: str, graph_path: Path, rows, batch_size: int = 16) -> float:
    batches = [encode(tokenizer, model.encoding(task), rows[s:s + batch_size]) for s in range(0, len(rows), batch_size)]
    return max_difference(TaskGraph(model, task), graph_path, batches)


def check_embedding_parity(model: MultitaskModel, tokenizer, graph_path: Path, sentences, batch_size: int = 16) -> float:
    batches = [encode(tokenizer, "single", [(s,) for s in sentences[i:i + batch_size]])
               for i in range(0, len(sentences), batch_size)]
    return max_difference(EmbedGraph(model), graph_path, batches)


def check_pair_head_parity(model: MultitaskModel, tokenizer, task: str, graph_path: Path, rows) -> float:
    graph = EmbedGraph(model).eval()
    with torch.no_grad():
        u, v = (graph(*(torch.from_numpy(batch[name]) for name in graph.names)).numpy()
                for batch in (encode(tokenizer, "single", [(row[side],) for row in rows]) for side in (0, 1)))
    return max_difference(PairHeadGraph(model, task), graph_path, [dict(zip(PAIR_HEAD_INPUTS, (u, v)))])


def versions() -> dict[str, str]:
    found = {"mtcli": __version__}
    for name in ("torch", "onnx", "onnxruntime", "tokenizers"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


USAGE = ["Scored with mtcli, without torch: `mtcli score TASK rows.tsv --model path/to/this/folder`, or in Python "
         "`mtcli.inference.Scorer('path/to/this/folder')`; `manifest.json` lists each task's graph, inputs and output."]


def export(checkpoint: str | Path, out_dir: str | Path = "export", *, opset: int = 18, quantize: str | None = None,
           data_dir=None, task_file=None, console=None, evaluate_int8: bool = True) -> dict:
    """Write graphs, tokenizer and manifest into `out_dir` (replaced as a whole on success).

    The parity check (and the int8 report) read the tasks' dev rows where `data_dir` or
    `task_file` say, or the checkpoint's run recorded (mtcli.core.data.locate_data); with
    neither given and none located, parity is checked on generated rows and the int8 dev
    report is left out, both said."""

    if not MIN_OPSET <= opset <= max_opset():
        raise UserError(f"--opset {opset}: mtcli exports opsets {MIN_OPSET} to {max_opset()}")
    if quantize not in (None, "int8"):
        raise UserError(f"--quantize {quantize!r}: only int8 is supported")
    say = console.print if console else (lambda *a, **k: None)
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    check_out_dir(out_dir, checkpoint)
    with staged_dir(out_dir, export_files, "an earlier `mtcli export`") as staging:
        model, tokenizer, meta = load_checkpoint(checkpoint)
        card = model_card(checkpoint, model, meta, USAGE)   # its refusals (a damaged run file) before any graph
        say(f"checkpoint {checkpoint}")
        located = _located_dev_data(checkpoint, model, data_dir, task_file, say)
        tasks = {}
        for task, spec in model.tasks.items():
            encoding = model.encoding(task)
            path = staging / graph_file(task)
            say(f"exporting {task} ({spec.kind}, {spec.encoding or 'single'}: {encoding} encoding) ...")
            with _quiet():
                fused = _export_graph(model, tokenizer, task, path, opset)
            onnx.checker.check_model(str(path), full_check=True)
            rows = parity_rows(located[task]) if located else generated_rows(tokenizer, spec)
            diff = check_parity(model, tokenizer, task, path, rows)
            say(f"  {task}.onnx: fused {', '.join(f'{n} {op}' for op, n in fused.items()) or 'nothing'}; "
                f"parity with torch on {len(rows)} {'dev' if located else 'generated'} rows, max |diff| = {diff:.2e}")
            if diff > PARITY_TOLERANCE:
                raise RuntimeError(f"{task}: ONNX output differs from torch by {diff:.2e} > {PARITY_TOLERANCE:g}")
            tasks[task] = {"task": spec.declaration(), "file": path.name, "encoding": encoding,
                           "inputs": TaskGraph(model, task).names, "output": output_name(spec.kind),
                           "parity_max_abs_diff": diff, "fused_operators": fused}
            if encoding == "separate":  # scoring may encode each distinct sentence once, then run the head alone
                head = staging / graph_file(task, "head_file")
                with _quiet():
                    _export_pair_head(model, task, head, opset)
                head_diff = check_pair_head_parity(model, tokenizer, task, head, rows)
                if head_diff > PARITY_TOLERANCE:
                    raise RuntimeError(f"{task}: ONNX head differs from torch by {head_diff:.2e}")
                tasks[task].update(head_file=head.name, head_inputs=list(PAIR_HEAD_INPUTS), head_parity=head_diff)
            if quantize == "int8":
                tasks[task]["int8_file"] = graph_file(task, "int8_file")
        embedding = _export_embedding(model, tokenizer, located, staging, opset, quantize, say)
        tokenizer.save(staging)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "encoder": {"model_type": model.encoder.config.model_type,
                        "token_types": model.encoder.config.family.token_types,
                        "parameters": model.encoder.num_parameters(),
                        "vocab_size": model.encoder.config.vocab_size},
            "opset": opset, "max_length": tokenizer.max_length,
            "pooling": model.head_config.pooling, "tasks": tasks, "embedding": embedding, "tokenizer": "tokenizer.json",
            "checkpoint": {"path": str(checkpoint.resolve()), "sha256": checkpoint_hash(checkpoint),
                           "step": meta.get("step"), "dev": (meta.get("dev") or {}).get("overall")},
            "versions": versions(),
        }
        write_json(staging / MANIFEST, manifest)
        write_text(staging / CARD, card)
        if quantize == "int8":
            measured = located if evaluate_int8 else None
            if evaluate_int8 and not located:
                say("  int8 dev change not measured: no dev data located (pass --data-dir or --tasks)")
            manifest.update(_quantize_int8(staging, manifest, measured, say))
            write_json(staging / MANIFEST, manifest)
    return manifest


def _located_dev_data(checkpoint: Path, model: MultitaskModel, data_dir, task_file, say) -> dict[str, Task] | None:
    """The tasks with their dev files located, or None (then said) when none is and none was named."""
    try:
        return checkpoint_data(checkpoint, model.tasks, task_file=task_file, data_dir=data_dir, splits=("dev",))
    except UserError as e:
        if data_dir is not None or task_file is not None:
            raise
        say(f"no dev data located ({e}); parity is checked on generated rows")
        return None


def _export_embedding(model: MultitaskModel, tokenizer, tasks: dict[str, Task] | None, staging: Path, opset: int,
                      quantize: str | None, say) -> dict:
    """embed.onnx: the shared encoder and pooling alone (Scorer.embed, and pairs scored a sentence at a time)."""
    path = staging / graph_file(EMBEDDING)
    say(f"exporting {EMBEDDING} (the pooled sentence embedding, {model.encoder.hidden_size} wide) ...")
    graph = EmbedGraph(model)
    with _quiet():
        fused = _export_encoder_graph(graph, _sample_inputs(tokenizer, "single", graph.names), "embedding", path,
                                      opset, model.encoder.config)
    onnx.checker.check_model(str(path), full_check=True)
    rows = [row for name, task in model.tasks.items()
            for row in (parity_rows(tasks[name], count=16) if tasks else generated_rows(tokenizer, task, count=16))]
    sentences = [row[0] for row in rows]
    diff = check_embedding_parity(model, tokenizer, path, sentences)
    say(f"  {path.name}: parity with torch on {len(sentences)} {'dev' if tasks else 'generated'} sentences, "
        f"max |diff| = {diff:.2e}")
    if diff > PARITY_TOLERANCE:
        raise RuntimeError(f"{EMBEDDING}: ONNX output differs from torch by {diff:.2e} > {PARITY_TOLERANCE:g}")
    entry = {"file": path.name, "inputs": list(graph.names), "output": "embedding", "dim": model.encoder.hidden_size,
             "parity_max_abs_diff": diff, "fused_operators": fused}
    if quantize == "int8":
        entry["int8_file"] = graph_file(EMBEDDING, "int8_file")
    return entry


def _quantize_graphs(model_dir: Path, manifest: dict, kept_fp32) -> None:
    """Write every graph's int8 file (the manifest's `int8_file`), the nodes matching `kept_fp32` left fp32."""
    for entry in [*manifest["tasks"].values(), manifest["embedding"]]:
        graph = model_dir / entry["file"]
        with _quiet():
            _quantize(graph, model_dir / entry["int8_file"], nodes_matching(graph, kept_fp32))


def _quantize_int8(model_dir: Path, manifest: dict, tasks: dict[str, Task] | None, say) -> dict:
    """Quantize every graph keeping one of INT8_FP32_CANDIDATES fp32: with located dev data, the one
    `_choose` picks (nothing, the fastest, at equal dev quality; else the one whose worst task loses
    least), each candidate measured and recorded; without, the first. Returns the manifest's int8
    fields."""
    first = next(iter(INT8_FP32_CANDIDATES))
    _quantize_graphs(model_dir, manifest, INT8_FP32_CANDIDATES[first])  # the manifest lists them: reading it needs them
    if tasks is None:
        return {"int8_kept_fp32": first}
    from mtcli.eval.evaluate import evaluate_onnx

    fp32 = evaluate_onnx(model_dir, tasks=tasks).results
    specs = read_manifest_tasks(model_dir)
    measured = {}
    for kept, patterns in INT8_FP32_CANDIDATES.items():
        if kept != first:
            _quantize_graphs(model_dir, manifest, patterns)
        int8 = evaluate_onnx(model_dir, tasks=tasks, quantized=True).results
        measured[kept] = {"int8": int8, "change": _int8_changes(fp32, int8, specs)}
        change = measured[kept]["change"]
        say(f"  int8 with {'nothing' if kept == 'nothing' else f'the {kept} MatMuls'} fp32, dev change in points: " + ", ".join(
            f"{name} {'undefined' if c is None else f'{100 * c:+.2f}'}"
            for name, c in [*change["tasks"].items(), ("overall", change["overall"])]))
    best = _choose({kept: m["change"] for kept, m in measured.items()})
    if best != list(INT8_FP32_CANDIDATES)[-1]:  # the files on disk are the last candidate's
        _quantize_graphs(model_dir, manifest, INT8_FP32_CANDIDATES[best])
    for task, spec in specs.items():
        change = measured[best]["change"]["tasks"][task]
        if change is None:
            say(f"  int8 {task} dev {spec.metric}: undefined on this dev set")
        else:
            before, after = fp32["tasks"][task][spec.metric], measured[best]["int8"]["tasks"][task][spec.metric]
            say(f"  int8 {task} dev {spec.metric}: {before:.4f} -> {after:.4f} ({100 * change:+.2f} points)")
    say(f"  int8 keeps nothing fp32 (the fastest, its dev quality equal to the best's)" if best == "nothing" else
        f"  int8 keeps the {best} MatMuls fp32 (its worst task loses least on dev)")
    report = {"fp32": fp32, "int8": measured[best]["int8"], "change": measured[best]["change"],
              "candidates": {kept: m["change"] for kept, m in measured.items()}}
    return {"int8_kept_fp32": best, "int8_dev": report}


def _int8_changes(fp32: dict, int8: dict, specs: dict[str, Task]) -> dict:
    """Each task's headline change (int8 minus fp32; None where undefined) and the overall's."""
    tasks = {}
    for task, spec in specs.items():
        before, after = fp32["tasks"][task][spec.metric], int8["tasks"][task][spec.metric]
        tasks[task] = None if before is None or after is None else after - before
    both = fp32["overall"] is not None and int8["overall"] is not None
    return {"tasks": tasks, "overall": int8["overall"] - fp32["overall"] if both else None}


def _choose(changes: dict[str, dict]) -> str:
    """The candidate the export keeps: keeping nothing fp32 (the fastest) when its worst task
    loses at most INT8_EQUAL_QUALITY more than the least-loss candidate's, else that one."""
    best = _least_loss(changes)
    if "nothing" in changes and _worst(changes["nothing"]) >= _worst(changes[best]) - INT8_EQUAL_QUALITY:
        return "nothing"
    return best


def _worst(change: dict) -> float:
    return min((c for c in change["tasks"].values() if c is not None), default=0.0)


def _least_loss(changes: dict[str, dict]) -> str:
    """The candidate whose worst task changes least for the worse, then the one whose overall
    changes least for the worse; the first listed on a tie."""
    def loss(kept: str) -> tuple[float, float]:
        return -_worst(changes[kept]), -(changes[kept]["overall"] or 0.0)

    return min(changes, key=loss)
