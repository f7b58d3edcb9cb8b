"""The `mtcli` command line: one module per command, each a thin wrapper over
importable functions. Torch is imported inside the commands that need it."""

import errno
import signal
import sys

import typer

from mtcli.core.version import __version__
from mtcli.core.errors import Interrupted, UserError

app = typer.Typer(
    name="mtcli",
    help="Multitask fine-tuning of a BERT or MPNet encoder (SST, Quora, STS-B and your own tasks) with 35 multitask "
         "methods, ONNX export and fast scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        print(f"mtcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


def _register() -> None:
    from mtcli.cli import eval as eval_cmd
    from mtcli.cli import backbones, compare, export, info, report, score, serve, sweep, train

    app.command(name="train", epilog=train.EPILOG)(train.train)
    app.command(name="eval", epilog=eval_cmd.EPILOG)(eval_cmd.eval_command)
    app.command(name="export", epilog=export.EPILOG)(export.export_command)
    app.command(name="score", epilog=score.EPILOG)(score.score)
    app.command(name="report", epilog=report.EPILOG)(report.report)
    app.command(name="compare", epilog=compare.EPILOG)(compare.compare_command)
    app.command(name="sweep", epilog=sweep.EPILOG)(sweep.sweep_command)
    app.command(name="serve", epilog=serve.EPILOG)(serve.serve)
    app.command(name="info", epilog=info.EPILOG)(info.info)
    app.add_typer(backbones.app, name="backbones")


_register()


def _interrupt(signum, frame):
    raise Interrupted(signum)  # not a KeyboardInterrupt: Typer turns those into a silent exit 130


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2; Ctrl-C and
    SIGTERM say so and exit 130 / 143 (files being written are removed on the way out;
    training first saves last/, so the run resumes)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        app(prog_name="mtcli")
    except UserError as e:
        print(f"mtcli: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except OSError as e:  # the machine said no: disk full, permissions, a vanished folder
        print(f"mtcli: error: {describe_os_error(e)}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    except Interrupted as e:
        print(f"mtcli: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("mtcli: interrupted", file=sys.stderr)
        sys.exit(130)


def describe_os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}disk full while writing; nothing was left under the final name: free space and run again"
    if e.errno == errno.EPIPE:
        return "output closed early (broken pipe)"
    return f"{where}{e.strerror or e}"
