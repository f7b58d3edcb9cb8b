"""What `mtcli info` reports: versions, device, backbone, data, native kernels."""

import importlib.metadata
import json
import platform
from pathlib import Path

from mtcli.core.version import __version__
from mtcli.core.errors import UserError

PACKAGES = ("torch", "numpy", "tokenizers", "safetensors", "onnx", "onnxruntime", "onnxruntime-gpu", "typer", "rich")


def package_versions() -> dict[str, str]:
    versions = {"mtcli": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def torch_device() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"device": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "cuda": torch.version.cuda}
    return {"device": "cpu", "threads": torch.get_num_threads()}


def backbone_summary(model_dir: str | Path | None = None) -> dict:
    """Path, family, shape and parameter count of an encoder folder, read from its config and weight header."""
    from mtcli.model.config import BertConfig
    from mtcli.core.paths import resolve_model_dir

    path = resolve_model_dir(model_dir)
    config = BertConfig.from_file(path / "config.json")
    summary = {"path": str(path), "family": config.model_type, "layers": config.num_hidden_layers,
               "hidden": config.hidden_size,
               "heads": config.num_attention_heads}
    weights = path / "model.safetensors"
    if weights.is_file():
        summary["parameters"] = _safetensors_numel(weights)
        summary["bytes"] = weights.stat().st_size
    return summary


def _safetensors_numel(path: Path) -> int:
    """Parameter count from the safetensors JSON header, without loading any tensor."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__" or name.endswith("position_ids"):
            continue
        count = 1
        for dim in entry["shape"]:
            count *= dim
        total += count
    return total


def native_status() -> dict:
    from mtcli.weightings import WEIGHTINGS, kernel, make

    return {"kernel_backend": kernel.backend(), "native_module": kernel.native_module_path(),
            "weightings": {name: make(name, num_tasks=1, task_weights=(1.0,)).spec for name in WEIGHTINGS},
            "families": {name: cls.family for name, cls in WEIGHTINGS.items()}}


def task_source(tasks_file=None, checkpoint=None, export=None, data_dir=None) -> tuple[str, dict]:
    """Which tasks to describe: a checkpoint's or an export's, a task file's, or the built-in ones."""
    from mtcli.core.data import locate_data, resolve_data_dir
    from mtcli.core.tasks import load_task_file

    if checkpoint is None and export is None:
        return str(tasks_file or "built-in tasks"), load_task_file(tasks_file, resolve_data_dir(data_dir))
    if checkpoint is not None:
        from mtcli.model.checkpoint import checkpoint_data, checkpoint_tasks

        source, tasks = checkpoint, checkpoint_tasks(checkpoint)
        locate = lambda: checkpoint_data(checkpoint, tasks, task_file=tasks_file, data_dir=data_dir)  # noqa: E731
    else:
        from mtcli.inference.manifest import read_manifest_tasks

        source, tasks = export, read_manifest_tasks(export)
        locate = lambda: locate_data(tasks, export, task_file=tasks_file, data_dir=data_dir)  # noqa: E731
    try:
        return str(source), locate()
    except UserError:
        if tasks_file is not None or data_dir is not None:
            raise
        return str(source), tasks  # described without row counts: its data files are named, not located


def gather(model_dir=None, data_dir=None, tasks_file=None, checkpoint=None, export=None) -> dict:
    from mtcli.core.data import row_counts

    report = {"versions": package_versions(), "torch": torch_device(), "native": native_status()}
    # Folders the user named must be right (exit 2); missing defaults are reported in place.
    try:
        report["backbone"] = backbone_summary(model_dir)
    except UserError as e:
        if model_dir is not None:
            raise
        report["backbone"] = {"error": str(e)}
    source, tasks = task_source(tasks_file, checkpoint, export, data_dir)
    try:
        report["data"] = {"source": source, "rows": row_counts(tasks),
                          "tasks": {name: task.to_dict() for name, task in tasks.items()}}
    except UserError as e:
        if data_dir is not None or tasks_file is not None:
            raise
        report["data"] = {"source": source, "error": str(e)}
    return report
