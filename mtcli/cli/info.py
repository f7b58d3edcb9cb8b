"""`mtcli info`: versions, device, backbone, data and whether the native PCGrad kernel is loaded."""

import json
from pathlib import Path

import typer

EPILOG = "Examples:\n\n  mtcli info\n\n  mtcli info --json\n\n  mtcli info --model-dir path/to/bert-base-uncased"


def info(
    model_dir: Path = typer.Option(None, "--model-dir", help="HF-layout BERT folder (default: packaged all-MiniLM-L6-v2)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the CS224N task files (default: bundled data/)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Show versions, torch device, backbone, data row counts and the PCGrad backend."""
    from mtcli.info import gather

    report = gather(model_dir, data_dir)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _render(report)


def _render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    versions = "  ".join(f"{k} {v}" for k, v in report["versions"].items())
    console.print(f"[bold]versions[/]  {versions}")
    dev = report["torch"]
    where = f"cuda ({dev['name']} x{dev['count']}, CUDA {dev['cuda']})" if dev["device"] == "cuda" else f"cpu ({dev['threads']} threads)"
    console.print(f"[bold]device[/]    {where}")
    native = report["native"]
    loaded = f"loaded from {native['native_module']}" if native["native_module"] else "not built (torch fallback)"
    console.print(f"[bold]pcgrad[/]    backend {native['pcgrad_backend']}; native module {loaded}")
    bb = report["backbone"]
    if "error" in bb:
        console.print(f"[bold]backbone[/]  [red]{bb['error']}[/]")
    else:
        size = f", {bb['parameters'] / 1e6:.1f}M parameters, {bb['bytes'] / 2**20:.0f} MiB" if "parameters" in bb else ""
        console.print(f"[bold]backbone[/]  {bb['path']} ({bb['layers']} layers, {bb['hidden']} wide, {bb['heads']} heads{size})")
    data = report["data"]
    if "error" in data:
        console.print(f"[bold]data[/]      [red]{data['error']}[/]")
        return
    table = Table(title=f"data: {data['path']}", title_justify="left")
    for column in ("dataset", "train", "dev", "test"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, counts in data["rows"].items():
        table.add_row(name, *("-" if counts[s] is None else f"{counts[s]:,}" for s in ("train", "dev", "test")))
    console.print(table)
