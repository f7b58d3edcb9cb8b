"""`mtcli sweep`: search recipes with Optuna, trials as ordinary run folders."""

from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli sweep examples/sweep-methods.toml                     # sweeps/sweep-methods/: trials, study, sweep.json

  mtcli sweep examples/sweep-methods.toml --parallel 2        # two trials at once, the cores divided

  mtcli sweep examples/sweep-methods.toml --resume            # continue a killed sweep

  mtcli compare sweeps/sweep-methods                          # its recipes over seeds, with intervals
"""


def sweep_command(
    space_file: Path = typer.Argument(..., help="A space file (TOML): base recipe, objective, search, budget, "
                                                "pruner and the options to search"),
    name: str = typer.Option(None, help="The sweep's folder under --out (default: the space file's name)"),
    out: Path = typer.Option(Path("sweeps"), help="Folder that holds sweeps"),
    resume: bool = typer.Option(False, "--resume", help="Continue the sweep in its folder: finished trials are "
                                "kept, a trial that was running restarts"),
    parallel: int = typer.Option(1, help="Trials at once (worker processes on one journal, the cores divided)"),
    engine: str = typer.Option("local", help="local (this machine's processes)"),
    worker: bool = typer.Option(False, "--worker", hidden=True),
    folder: Path = typer.Option(None, "--folder", hidden=True),
):
    """Search over samplers, methods, objectives and any numeric option with Optuna (grid, random, TPE) and
    pruning (ASHA, median) on dev evaluations; every trial is an ordinary run folder."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mtcli.core.errors import UserError
    from mtcli.sweep import study as sweeps

    if engine != "local":
        raise UserError(f"--engine {engine!r}: only the local engine is built yet (Ray Tune: see docs/experiments.md)")
    if not 1 <= parallel <= max(1, __import__("os").cpu_count() or 1):
        raise UserError(f"--parallel {parallel}: must be between 1 and the number of cores")
    quiet = Console(stderr=True, quiet=True)
    if worker:   # a process launched by --parallel: trials until the sweep is done
        sweeps.optimize(folder, sweeps.read_space(folder / "space.toml"), quiet)
        return
    folder = out / (name or space_file.stem)
    space = sweeps.prepare(space_file, folder, resume)
    console = Console(stderr=True)
    console.print(f"[bold]sweep[/] {folder}: {space.search} search over {', '.join(space.params)}; "
                  f"{space.trials} trials x {len(space.seeds)} seed(s); pruner {space.pruner}; objective "
                  f"dev {space.objective}")
    progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"),
                        TimeElapsedColumn(), console=console)

    def show(study) -> None:
        record = sweeps.summary(study, folder, space)
        counts = {s: sum(t["state"] == s for t in record["trials"]) for s in ("COMPLETE", "PRUNED", "RUNNING", "FAIL")}
        best = record["best"]
        shown = f"best {best['value']:.4f} (trial {best['number']})" if best else "no finished trial yet"
        progress.update(bar, completed=counts["COMPLETE"] + counts["PRUNED"],
                        state=f"{counts['COMPLETE']} done, {counts['PRUNED']} pruned, {counts['RUNNING']} running, "
                              f"{counts['FAIL']} failed; {shown}")

    with progress:
        bar = progress.add_task("sweep", total=space.trials, state="")
        workers = sweeps.launch_workers(folder, parallel) if parallel > 1 else []
        try:
            sweeps.optimize(folder, space, quiet, progress=show)
            sweeps.wait_for(workers)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
        show(sweeps.open_study(folder, space))
    record = sweeps.summary(sweeps.open_study(folder, space), folder, space)
    best = record["best"]
    if best is None:
        console.print("[bold]done[/] no trial finished (all pruned or failed): see sweep.json")
        return
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    console.print(f"[bold]best[/] trial {best['number']}: dev {space.objective} {best['value']:.4f} with {params}; "
                  f"runs {', '.join(best['runs'])}")
    console.print(f"compare them: mtcli compare {folder / 'trials'}", highlight=False)
