"""`mtcli info`: versions, device, backbone, data, the weightings and whether the native kernel is loaded."""

import json
from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli info

  mtcli info --json

  mtcli info --tasks examples/cs224n-cfimdb.toml      # a task file's tasks and row counts

  mtcli info --checkpoint runs/demo/best               # the tasks a checkpoint was trained on

  mtcli info --model export/                           # the tasks an export scores

  mtcli info --model-dir path/to/bert-base-uncased
"""


def info(
    model_dir: Path = typer.Option(None, "--model-dir", help="HF-layout BERT or MPNet folder, or a backbone's name (mtcli backbones; default: all-MiniLM-L6-v2)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Read the tasks' files from this folder instead."),
    tasks: Path = typer.Option(None, "--tasks", help="A TOML task file (default: the built-in CS224N tasks); with "
                                                     "--checkpoint or --model: where their tasks' data lies."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Describe the tasks of this checkpoint."),
    model: Path = typer.Option(None, "--model", help="Describe the tasks of this `mtcli export` folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Show versions, torch device, backbone, the tasks with their row counts, the weightings (--combine) and the kernel backend."""
    from mtcli.core.errors import UserError
    from mtcli.info import gather

    if checkpoint is not None and model is not None:
        raise UserError("pass one of --checkpoint, --model")
    report = gather(model_dir, data_dir, tasks, checkpoint, model)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _render(report)


def _render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from mtcli.weightings.base import FAMILIES

    console = Console()
    versions = "  ".join(f"{k} {v}" for k, v in report["versions"].items())
    console.print(f"[bold]versions[/]  {versions}")
    dev = report["torch"]
    where = f"cuda ({dev['name']} x{dev['count']}, CUDA {dev['cuda']})" if dev["device"] == "cuda" else f"cpu ({dev['threads']} threads)"
    console.print(f"[bold]device[/]    {where}")
    native = report["native"]
    loaded = f"loaded from {native['native_module']}" if native["native_module"] else "not built (torch fallback)"
    console.print(f"[bold]kernel[/]    backend {native['kernel_backend']}; native module {loaded}")
    for family, reads in FAMILIES.items():
        specs = [spec for name, spec in native["weightings"].items() if native["families"][name] == family]
        console.print(f"[bold]combine[/]   {family} (reads {reads}): " + "  ".join(specs), soft_wrap=True)
    bb = report["backbone"]
    if "error" in bb:
        console.print(f"[bold]backbone[/]  [red]{bb['error']}[/]")
    else:
        size = f", {bb['parameters'] / 1e6:.1f}M parameters, {bb['bytes'] / 2**20:.0f} MiB" if "parameters" in bb else ""
        console.print(f"[bold]backbone[/]  {bb['path']} ({bb['family']}, {bb['layers']} layers, {bb['hidden']} wide, {bb['heads']} heads{size})")
    data = report["data"]
    if "error" in data:
        console.print(f"[bold]data[/]      [red]{data['error']}[/]")
        return
    table = Table(title=f"tasks: {data['source']}", title_justify="left")
    for column in ("task", "kind", "text", "labels / range", "metric", "encoding", "train", "dev", "test"):
        table.add_column(column, justify="right" if column in ("train", "dev", "test") else "left")
    for name, counts in data["rows"].items():
        task = data["tasks"][name]
        values = ", ".join(task["labels"]) if "labels" in task else f"{task['range'][0]:g}-{task['range'][1]:g}"
        table.add_row(name, task["kind"], " + ".join(task["text"]), values, task["metric"], task.get("encoding", "-"),
                      *("-" if counts[s] is None else f"{counts[s]:,}" for s in ("train", "dev", "test")))
    console.print(table)
