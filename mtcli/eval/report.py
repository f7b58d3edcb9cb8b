"""`mtcli report`: what a run's metrics.jsonl says about its task gradients.

Per task pair: how many steps measured it, the mean (and spread of the) cosine between
the two task gradients, and the fraction of steps in which they conflicted (cosine < 0,
the steps where PCGrad projects). Per task: the weight the run's weighting gave its
gradient (mean, min, max over the steps; weights.png draws it over the run). Also the
per-epoch dev scores, and the plots: conflicts.png and (re-drawn) curves.png. Torch-free.
"""

from collections import defaultdict
from pathlib import Path

import numpy as np

from mtcli.core.errors import UserError
from mtcli.core.fileio import write_json
from mtcli.run.folder import METRICS, REPORT, read_config
from mtcli.run.metrics_log import last_stop, read_metrics


def task_order(records: list[dict]) -> list[str]:
    """The run's tasks in declaration order (the order of its per-step losses and dev scores)."""
    order: dict[str, None] = {}
    for r in records:
        for name in (*r.get("dev", {}), *(k for k in r.get("loss", {}) if ":" not in k)):
            order.setdefault(name)
    return list(order)


def _canonical(pair: str, order: list[str]) -> str:
    """'sts/sst' and 'sst/sts' are one pair: name it in declaration order."""
    a, b = pair.split("/")
    return "/".join(sorted((a, b), key=lambda t: order.index(t) if t in order else len(order)))


def conflict_report(records: list[dict]) -> dict:
    order = task_order(records)
    cosines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    weights: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        if r.get("type") != "step":
            continue
        for pair, cosine in r.get("grad_cosine", {}).items():
            cosines[_canonical(pair, order)].append((r["step"], cosine))
        for task, w in r.get("weights", {}).items():
            weights[task].append((r["step"], w))
    pairs = {}
    for pair, values in sorted(cosines.items()):
        c = np.array([v for _, v in values])
        pairs[pair] = {"steps": len(c), "mean_cosine": float(c.mean()), "std_cosine": float(c.std()),
                       "conflict_fraction": float((c < 0).mean())}
    epochs = [{"epoch": r["epoch"], "step": r["step"], "overall": r.get("overall"),
               **r.get("headline", {})}
              for r in records if r.get("type") == "epoch"]
    task_weights = {}
    for task in sorted(weights, key=lambda t: order.index(t) if t in order else len(order)):
        w = np.array([v for _, v in weights[task]])
        task_weights[task] = {"steps": len(w), "mean": float(w.mean()), "min": float(w.min()), "max": float(w.max())}
    return {"pairs": pairs, "weights": task_weights, "epochs": epochs, "tasks": order,
            "series": dict(cosines), "weight_series": dict(weights)}


def _smoothed(series: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """A moving average over about 1/40 of the run, against the step."""
    steps = np.array([s for s, _ in series])
    values = np.array([v for _, v in series])
    window = max(1, len(values) // 40)
    return steps[window - 1:], np.convolve(values, np.ones(window) / window, mode="valid")


def plot_weights(report: dict, out: Path, title: str) -> Path:
    from mtcli.eval.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for task, series in report["weight_series"].items():
        ax.plot(*_smoothed(series), label=task)
    ax.set_xlabel("step")
    ax.set_ylabel("weight of the task's gradient")
    ax.set_title(f"task weights over the run (smoothed): {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_conflicts(report: dict, out: Path) -> Path:
    from mtcli.eval.plots import _pyplot, _save

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    for pair, series in report["series"].items():
        left.plot(*_smoothed(series), label=pair)
    left.axhline(0, color="black", lw=0.8)
    left.set_xlabel("step")
    left.set_ylabel("cosine between task gradients")
    left.set_title("task-gradient cosine (smoothed)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    names = list(report["pairs"])
    right.bar(names, [report["pairs"][p]["conflict_fraction"] for p in names], color="tab:red")
    right.set_ylim(0, 1)
    right.set_title("conflicting steps")
    right.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return _save(fig, out)


def report_run(run_dir: str | Path, warn=None) -> dict:
    """The report of a run folder; `warn(line)` hears of a torn last line in its log."""
    from mtcli.eval.plots import plot_curves

    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.is_file():
        raise UserError(f"{run_dir}: no metrics.jsonl; pass a folder written by `mtcli train`")
    records = read_metrics(path, on_torn=warn)
    report = conflict_report(records)
    if report["pairs"]:
        plot_conflicts(report, run_dir / "conflicts.png")
    if report["weights"]:
        config = read_config(run_dir) or {}
        plot_weights(report, run_dir / "weights.png", str(config.get("combine", "")))
    if any(r.get("type") == "epoch" for r in records):
        plot_curves(records, report["tasks"], run_dir / "curves.png")
    report["stopped"] = last_stop(records)   # where and why a sweep's pruner ended the run
    write_json(run_dir / REPORT, {k: v for k, v in report.items() if k not in ("series", "weight_series")})
    return report
