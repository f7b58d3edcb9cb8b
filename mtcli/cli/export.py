"""`mtcli export`: ONNX graphs of a checkpoint, with parity check and optional int8."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli export                                   # best checkpoint of the latest run -> export/

  mtcli export --checkpoint runs/demo/best --out export/ --quantize int8

  mtcli export --opset 17
"""


def export_command(
    checkpoint: Path = typer.Option(None, help="Checkpoint folder (default: runs/<latest>/best)"),
    out: Path = typer.Option(Path("export"), help="Output folder (replaced as a whole on success)"),
    quantize: str = typer.Option(None, help="int8: also write dynamically quantized graphs and report the dev change"),
    opset: int = typer.Option(18, help="ONNX opset (17 or newer)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder holding the tasks' dev files (parity check, int8 "
                                                           "report), read by name"),
    tasks: Path = typer.Option(None, "--tasks", help="The task file declaring the checkpoint's tasks (their dev files)"),
):
    """Export the three task heads to ONNX (dynamic batch and sequence), with tokenizer and manifest."""
    from rich.console import Console

    from mtcli.core.errors import UserError
    from mtcli.model.checkpoint import latest_checkpoint
    from mtcli.export.onnx import export

    console = Console(stderr=True)
    ckpt = checkpoint or latest_checkpoint()
    if tasks is not None and data_dir is not None:
        raise UserError("pass --tasks or --data-dir, not both")
    manifest = export(ckpt, out, opset=opset, quantize=quantize, data_dir=data_dir, task_file=tasks, console=console)
    files = ", ".join(e["file"] + (f" + {e['int8_file']}" if "int8_file" in e else "") for e in manifest["tasks"].values())
    console.print(f"wrote {out}/: {files}, tokenizer.json, manifest.json (opset {opset})")
