"""`mtcli export`: ONNX graphs of a checkpoint, with parity check and optional int8; or (--format hf)
the model as an HF / sentence-transformers folder with a model card."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli export                                   # best checkpoint of the latest run -> export/

  mtcli export --checkpoint runs/demo/best --out export/ --quantize int8

  mtcli export --opset 17

  mtcli export --checkpoint runs/demo/best --format hf --out demo-model   # SentenceTransformer('demo-model') loads it
"""


def export_command(
    checkpoint: Path = typer.Option(None, help="Checkpoint folder (default: runs/<latest>/best)"),
    out: Path = typer.Option(None, help="Output folder (replaced as a whole on success; default: export/, "
                                        "export-hf/ with --format hf)"),
    format: str = typer.Option("onnx", "--format", help="onnx: graphs for mtcli score; hf: an HF / "
                                                        "sentence-transformers folder with a model card"),
    quantize: str = typer.Option(None, help="int8: also write dynamically quantized graphs and report the dev change"),
    opset: int = typer.Option(18, help="ONNX opset (17 or newer)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder holding the tasks' dev files (parity check, int8 "
                                                           "report), read by name"),
    tasks: Path = typer.Option(None, "--tasks", help="The task file declaring the checkpoint's tasks (their dev files)"),
):
    """Export the task heads to ONNX (dynamic batch and sequence), with tokenizer and manifest; or, with --format hf,
    the fine-tuned encoder as an HF / sentence-transformers folder (heads beside it, a model card)."""
    from rich.console import Console

    from mtcli.core.errors import UserError
    from mtcli.model.checkpoint import latest_checkpoint
    from mtcli.export.onnx import export

    from mtcli.export.hf import check_format, export_hf

    console = Console(stderr=True)
    ckpt = checkpoint or latest_checkpoint()
    if check_format(format) == "hf":
        if quantize is not None or opset != 18 or data_dir is not None or tasks is not None:
            raise UserError("--format hf writes the encoder and heads as they are: --quantize, --opset, --data-dir "
                            "and --tasks are for the ONNX export")
        export_hf(ckpt, out or Path("export-hf"), say=console.print)
        return
    out = out or Path("export")
    if tasks is not None and data_dir is not None:
        raise UserError("pass --tasks or --data-dir, not both")
    manifest = export(ckpt, out, opset=opset, quantize=quantize, data_dir=data_dir, task_file=tasks, console=console)
    files = ", ".join(e["file"] + (f" + {e['int8_file']}" if "int8_file" in e else "") for e in manifest["tasks"].values())
    console.print(f"wrote {out}/: {files}, tokenizer.json, manifest.json (opset {opset})")
