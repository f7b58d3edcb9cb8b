"""Plots: loss curves per task (train and dev), confusion matrices, predicted-vs-gold scatters."""

from pathlib import Path

import numpy as np

from mtcli.core.version import __version__
from mtcli.core.fileio import atomic_path

PNG_SOFTWARE = "mtcli"  # the PNGs' Software tag: how mtcli knows a plot is its own to replace


def _pyplot():
    """pyplot on the Agg backend, every text plain: names come from files (a task, a recipe, a
    class called `$\\foo{$`) and are shown as written, never read as mathtext."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: list[dict], tasks: list[str], out: str | Path) -> Path:
    """Train loss per task (smoothed per step, and mean per epoch) and dev loss per epoch."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    for ax, task in zip(axes[0], tasks):
        xs = [r["epoch_progress"] for r in steps if task in r["loss"]]
        ys = [r["loss"][task] for r in steps if task in r["loss"]]
        if ys:
            window = max(1, len(ys) // 50)
            smooth = np.convolve(ys, np.ones(window) / window, mode="valid")
            ax.plot(xs[window - 1:], smooth, color="tab:blue", alpha=0.6, label="train (per step, smoothed)")
        ex = [r["epoch"] for r in epochs]
        train = [r.get("train_loss", {}).get(task, np.nan) for r in epochs]   # optional in the log's shape (run/metrics_log.py)
        ax.plot(ex, train, "o-", color="tab:blue", label="train (epoch mean)")
        ax.plot(ex, [r["dev"].get(task, {}).get("loss", np.nan) for r in epochs], "s-", color="tab:orange",
                label="dev")
        ax.set_title(task)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_confusion(matrix: np.ndarray, labels: list[str], out: str | Path, title: str = "dev confusion") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, out)


def plot_scatter(gold: np.ndarray, predicted: np.ndarray, out: str | Path, value_range: tuple[float, float],
                 title: str = "dev: predicted vs gold") -> Path:
    plt = _pyplot()
    low, high = value_range
    margin = 0.02 * (high - low)
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.scatter(gold, predicted, s=6, alpha=0.4)
    ax.plot([low, high], [low, high], color="tab:red", lw=1, label="perfect")
    ax.set_xlim(low - margin, high + margin)
    ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel("gold")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out) -> Path:
    plt = _pyplot()
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=120, format="png", metadata={"Software": f"{PNG_SOFTWARE} {__version__}"})
    finally:
        plt.close(fig)
    return Path(out)
