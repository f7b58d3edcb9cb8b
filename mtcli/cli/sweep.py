"""`mtcli sweep`: search recipes with Optuna, trials as ordinary run folders."""

import os
from pathlib import Path

import typer

EPILOG = """Examples:

  mtcli sweep examples/sweep-methods.toml                     # sweeps/sweep-methods/: trials, study, sweep.json

  mtcli sweep examples/sweep-methods.toml --parallel 2        # two trials at once, the cores divided

  mtcli sweep examples/sweep-methods.toml --resume            # continue a killed sweep

  mtcli sweep examples/sweep-methods.toml --engine ray --parallel 2   # on Ray Tune (local Ray, or --ray-address)

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
    engine: str = typer.Option("local", help="local (this machine's processes, Optuna's journal) | ray (Ray Tune: "
                                             "Optuna's search and ASHA through Tune, on a local Ray or a cluster)"),
    ray_address: str = typer.Option(None, "--ray-address", help="A Ray cluster's head, HOST:6379 (default: a local "
                                    "Ray instance on this machine)"),
    worker: int = typer.Option(0, "--worker", hidden=True),   # a --parallel worker's number, from 1
    folder: Path = typer.Option(None, "--folder", hidden=True),
):
    """Search over samplers, methods, objectives and any numeric option with Optuna (grid, random, TPE) and
    pruning (ASHA, median) on dev evaluations; every trial is an ordinary run folder."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mtcli.core.errors import UserError, excerpt
    from mtcli.sweep import study as sweeps

    if engine not in ("local", "ray"):
        raise UserError(f"--engine {excerpt(engine)}: expected local or ray")
    if ray_address and engine != "ray":
        raise UserError("--ray-address applies to --engine ray")
    cores = os.cpu_count() or 1
    if parallel < 1 or engine == "local" and parallel > cores:
        raise UserError(f"--parallel {parallel}: must be between 1 and the number of cores ({cores})"
                        if engine == "local" else f"--parallel {parallel}: must be at least 1")
    quiet = Console(stderr=True, quiet=True)
    if worker:   # a process launched by --parallel: trials until the sweep is done
        sweeps.optimize(folder, sweeps.read_space(folder / "space.toml"), quiet, worker=worker)
        return
    from mtcli.train.config import check_folder_name

    if name is not None:
        check_folder_name(name, "a sweep's name", "methods-2")
    folder = out / (name or space_file.stem)
    console = Console(stderr=True)
    space = sweeps.prepare(space_file, folder, resume,
                           say=lambda note: console.print(f"note: {note}", markup=False, highlight=False))
    on = " on Ray Tune" if engine == "ray" else ""
    console.print(f"[bold]sweep[/] {folder}{on}: {space.search} search over {', '.join(space.params)}; "
                  f"{space.planned_trials()} trials x {len(space.seeds)} seed(s); pruner {space.pruner}; objective "
                  f"dev {space.objective}")
    progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"),
                        TimeElapsedColumn(), console=console)
    study = sweeps.open_study(folder, space)

    def show() -> None:
        record = sweeps.summary(study, folder, space, engine)
        counts = {s: sum(t["state"] == s for t in record["trials"]) for s in ("COMPLETE", "PRUNED", "RUNNING", "FAIL")}
        continued, repeated = sweeps.interrupted(study), sweeps.repeats(study)
        interrupted = sum(t["state"] == "FAIL" and t["number"] in continued for t in record["trials"])
        set_aside = sum(t["state"] == "FAIL" and t["number"] in repeated for t in record["trials"])
        best = record["best"]
        shown = f"best {best['value']:.4f} (trial {best['number']})" if best else "no finished trial yet"
        repeats = f"{set_aside} repeat(s) set aside, " if set_aside else ""
        progress.update(bar, completed=counts["COMPLETE"] + counts["PRUNED"],
                        state=f"{counts['COMPLETE']} done, {counts['PRUNED']} pruned, {counts['RUNNING']} running, "
                              f"{interrupted} interrupted and continued, {repeats}"
                              f"{counts['FAIL'] - interrupted - set_aside} failed; {shown}")

    with progress:
        bar = progress.add_task("sweep", total=space.planned_trials(), state="")
        show()   # a resumed sweep starts from the trials it has
        if engine == "ray":
            from mtcli.sweep import ray_engine

            ray_engine.run(folder, space, parallel=parallel, address=ray_address, progress=show)
        else:
            workers = sweeps.launch_workers(folder, parallel) if parallel > 1 else []
            try:
                sweeps.optimize(folder, space, quiet, progress=show,
                                say=lambda line: progress.console.print(line, markup=False, highlight=False))
                sweeps.wait_for(workers, progress=show)
            finally:
                for w in workers:
                    if w.poll() is None:
                        w.terminate()
        show()
    _announce(console, sweeps.summary(study, folder, space, engine), space, folder)


def _announce(console, record: dict, space, folder: Path) -> None:
    """The best trial, and how to compare the trials."""
    best = record["best"]
    if best is None:
        console.print("[bold]done[/] no trial finished (all pruned or failed): see sweep.json")
        return
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    console.print(f"[bold]best[/] trial {best['number']}: dev {space.objective} {best['value']:.4f} with {params}; "
                  f"runs {', '.join(best['runs'])}")
    console.print(f"compare them: mtcli compare {folder / 'trials'}", highlight=False)
