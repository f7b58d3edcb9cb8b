"""export/manifest.json: what an exported model folder holds. Torch-free (scoring reads it).

The manifest is the scoring side's single source for the tasks: files, input names,
encodings, output names, kinds, label names and max length all come from here, and
were written from the same task registry and head config that training used. It is
validated whole when read (`read_manifest`), and each graph is checked against its
entry when loaded (`check_graph`), so a hand-edited manifest or a swapped graph is
one clear error, not a traceback in the middle of scoring.
"""

from pathlib import Path

from mtcli.core.version import __version__
from mtcli.core.encoding import POOLINGS, encoding_for, input_names
from mtcli.core.errors import UserError
from mtcli.core.fileio import own_file, read_json_object
from mtcli.core.paths import EXPORT_FORMAT as FORMAT, EXPORT_MANIFEST as MANIFEST, export_manifest
from mtcli.core.tasks import Task, plot_names_of, tasks_from_dicts, test_output_name
from mtcli.run.folder import EVAL

FORMAT_VERSION = 3  # 2: each task entry holds the task's declaration; embed.onnx and pair heads; 3: encoder (family, token types)
# core.tasks.EMBEDDING (embed.onnx): a sentence -> the encoder's pooled embedding; a name no task may take
PAIR_HEAD_INPUTS = ("embedding_a", "embedding_b")   # a separate pair task's head graph takes u and v
CARD = "README.md"   # the export's model card (mtcli.export.card)


_JSON_TYPE = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
              bool: "true/false", type(None): "null"}


GRAPH_SUFFIXES = {"file": ".onnx", "head_file": ".head.onnx", "int8_file": ".int8.onnx"}


def graph_file(name: str, key: str = "file") -> str:
    """A graph's file name: a task's (or the embedding's) whole graph, pair head, or int8 copy.
    Task names hold no '.', so no two graphs of an export share a name."""
    return name + GRAPH_SUFFIXES[key]


def output_name(task_kind: str) -> str:
    return {"multiclass": "probabilities", "binary": "probability", "regression": "score"}[task_kind]


def export_files(folder: Path) -> set[str] | None:
    """The files an earlier `mtcli export` (and `eval --onnx`) wrote into `folder`, if it is an export.

    Read leniently: an export by another mtcli version is still mtcli's to replace."""
    # `eval --onnx` writes its outputs into the export by default: its plots and test outputs are listed
    manifest = export_manifest(folder)
    if manifest is None:
        return None
    files = {MANIFEST, CARD, EVAL, "eval-test.json"}
    if isinstance(manifest.get("tokenizer"), str):
        files.add(manifest["tokenizer"])
    if isinstance(manifest.get("embedding"), dict):
        files.update(v for k, v in manifest["embedding"].items() if k in ("file", "int8_file") and isinstance(v, str))
    tasks = manifest.get("tasks") if isinstance(manifest.get("tasks"), dict) else {}
    for name, entry in tasks.items():
        files.add(test_output_name(name))
        if isinstance(entry, dict):
            files.update(v for k, v in entry.items() if k in ("file", "int8_file", "head_file") and isinstance(v, str))
            declared = entry.get("task") if isinstance(entry.get("task"), dict) else entry
            if isinstance(declared.get("kind"), str):
                files.update(plot_names_of(name, declared["kind"]))
    return files


def read_manifest(model_dir: str | Path) -> dict:
    """The validated manifest of an export folder; one UserError naming the manifest otherwise."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: exported model folder not found; run `mtcli export` first or pass --model")
    own_file(path, "manifest")
    if not path.is_file():
        raise UserError(f"{path}: not found; {model_dir} is not an `mtcli export` folder (run `mtcli export`)")
    manifest = read_json_object(path, "manifest", "re-run `mtcli export`")
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path}: not an mtcli ONNX manifest; re-run `mtcli export`")
    if manifest.get("format_version") != FORMAT_VERSION:
        versions = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
        raise UserError(f"{path}: manifest format v{manifest.get('format_version')} was written by mtcli "
                        f"{versions.get('mtcli', '?')}; this mtcli {__version__} reads "
                        f"v{FORMAT_VERSION}: re-run `mtcli export` with this version")
    validate_manifest(manifest, path)
    return manifest


def validate_manifest(manifest: dict, path: Path) -> None:
    """Types, required keys and internal consistency of every field scoring reads."""
    def bad(where: str, problem: str):
        raise UserError(f"{path}: {where}: {problem}; the manifest was edited or damaged: re-run `mtcli export`")

    def need(container: dict, key: str, kind, where: str):
        if key not in container:
            bad(where + key, "missing")
        value = container[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            bad(where + key, f"expected {_JSON_TYPE[kind]}, found {_JSON_TYPE.get(type(value), type(value).__name__)}")
        return value

    def file_name(container: dict, key: str, where: str) -> str:
        name = need(container, key, str, where)
        if not name or Path(name).name != name or name in (".", ".."):
            bad(where + key, f"{name!r} is not a file name inside the export folder")
        own_file(path.parent / name, "graph" if name.endswith(".onnx") else "file")   # no link, no special file
        if not (path.parent / name).is_file():
            raise UserError(f"{path.parent / name}: not found, but {path.name} lists it; re-run `mtcli export`")
        return name

    encoder = need(manifest, "encoder", dict, "")
    need(encoder, "model_type", str, "encoder.")
    token_types = need(encoder, "token_types", bool, "encoder.")
    if "vocab_size" in encoder and need(encoder, "vocab_size", int, "encoder.") < 1:   # exports since 2026-12-07
        bad("encoder.vocab_size", f"{encoder['vocab_size']} is not a vocabulary size")
    need(manifest, "opset", int, "")
    max_length = need(manifest, "max_length", int, "")
    if not 2 <= max_length <= 65536:
        bad("max_length", f"{max_length} is not a sequence length")
    if need(manifest, "pooling", str, "") not in POOLINGS:
        bad("pooling", f"{manifest['pooling']!r} is not one of {', '.join(POOLINGS)}")
    file_name(manifest, "tokenizer", "")
    embedding = need(manifest, "embedding", dict, "")
    file_name(embedding, "file", "embedding.")
    if "int8_file" in embedding:
        file_name(embedding, "int8_file", "embedding.")
    if need(embedding, "inputs", list, "embedding.") != input_names("single", token_types):
        bad("embedding.inputs", f"{embedding['inputs']} are not {', '.join(input_names('single', token_types))}")
    need(embedding, "output", str, "embedding.")
    if need(embedding, "dim", int, "embedding.") < 1:
        bad("embedding.dim", f"{embedding['dim']} is not a width")
    tasks = need(manifest, "tasks", dict, "")
    if not tasks:
        bad("tasks", "no task")
    for name, entry in tasks.items():
        where = f"tasks.{name}."
        if not isinstance(entry, dict):
            bad(where[:-1], f"expected an object, found {_JSON_TYPE.get(type(entry), type(entry).__name__)}")
        task = next(iter(tasks_from_dicts([need(entry, "task", dict, where)], f"{path}: tasks.{name}.task").values()))
        if task.name != name:
            bad(where + "task.name", f"{task.name!r} is not the task's key {name!r}")
        file_name(entry, "file", where)
        if "int8_file" in entry:
            file_name(entry, "int8_file", where)
        encoding = need(entry, "encoding", str, where)
        if encoding != encoding_for(task):
            bad(where + "encoding", f"{encoding!r} is not how a {task.kind} task with encoding {task.encoding!r} "
                                    f"is encoded ({encoding_for(task)!r})")
        if need(entry, "inputs", list, where) != input_names(encoding, token_types):
            bad(where + "inputs", f"{entry['inputs']} are not the inputs of the {encoding} encoding "
                                  f"({', '.join(input_names(encoding, token_types))})")
        if need(entry, "output", str, where) != output_name(task.kind):
            bad(where + "output", f"{entry['output']!r} is not the output of a {task.kind} task "
                                  f"({output_name(task.kind)!r})")
        if encoding == "separate":
            file_name(entry, "head_file", where)
            if need(entry, "head_inputs", list, where) != list(PAIR_HEAD_INPUTS):
                bad(where + "head_inputs", f"{entry['head_inputs']} are not {', '.join(PAIR_HEAD_INPUTS)}")


def read_manifest_tasks(model_dir: str | Path, manifest: dict | None = None) -> dict[str, Task]:
    """The exported tasks, as declared when they were trained (validated), their data files by
    name only: an export never points at a path (mtcli.core.data.locate_data says where)."""
    manifest = manifest if manifest is not None else read_manifest(model_dir)
    return tasks_from_dicts([entry["task"] for entry in manifest["tasks"].values()], Path(model_dir) / MANIFEST)


def check_graph(session, entry: dict, graph: Path, inputs_key: str = "inputs") -> None:
    """The loaded graph takes the inputs and gives the output its manifest entry says
    (`inputs_key="head_inputs"`: the entry's pair head graph)."""
    inputs = [i.name for i in session.get_inputs()]
    if sorted(inputs) != sorted(entry[inputs_key]):
        raise UserError(f"{graph}: the graph's inputs ({', '.join(inputs)}) are not the manifest's "
                        f"({', '.join(entry[inputs_key])}): graph and manifest do not belong together: re-run `mtcli export`")
    outputs = {o.name: o for o in session.get_outputs()}
    if entry["output"] not in outputs:
        raise UserError(f"{graph}: the graph has no output {entry['output']!r} (has: {', '.join(outputs)}): "
                        f"graph and manifest do not belong together: re-run `mtcli export`")
    shape = outputs[entry["output"]].shape
    if "task" in entry:
        task = entry["task"]
        expected, what = [None, len(task["labels"])] if task["kind"] == "multiclass" else [None], f"{task['kind']} task"
    else:
        expected, what = [None, entry["dim"]], "embedding"
    if len(shape) != len(expected) or any(isinstance(s, int) and e is not None and s != e
                                          for s, e in zip(shape, expected)):
        raise UserError(f"{graph}: output {entry['output']!r} has shape {shape}, the manifest's {what} "
                        f"needs {['batch', *expected[1:]]}: graph and manifest do not belong together: re-run `mtcli export`")
