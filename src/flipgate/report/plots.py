"""Every PNG flipgate draws, as bytes: the report's plots and the bcwi stage's curve. Figures are drawn on
matplotlib's Agg canvas without pyplot, so there is no global figure state and no display is needed.
Nothing else in flipgate imports matplotlib."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

_ANNOTATE_MAX = 12  # classes up to which each cell of the flip matrix shows its count
MAX_BARS = 30  # classes shown in the per-class NFR plot (the worst ones)


def _png(fig: Figure, dpi: int = 100) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def flip_matrix_png(matrix: np.ndarray, names: list[str], title: str, model: str = "model") -> bytes:
    """Heatmap of counts, old's prediction (rows) x the model's (columns); sqrt colour scale so that
    the off-diagonal cells (the flips) stay visible beside the large diagonal."""
    k = len(names)
    side = min(4.0 + 0.22 * k, 22.0)
    fig = Figure(figsize=(side + 1.2, side), constrained_layout=True)
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0, vmax=max(int(matrix.max()), 1)))
    fontsize = 9 if k <= _ANNOTATE_MAX else max(6, 9 - k // 12)
    ticks = np.arange(k)
    ax.set_xticks(ticks, [_short(n) for n in names], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, [_short(n) for n in names], fontsize=fontsize)
    ax.set_xlabel(f"{model}'s prediction")
    ax.set_ylabel("old's prediction")
    if k <= _ANNOTATE_MAX:
        half = max(int(matrix.max()), 1) / 2
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if matrix[i, j] > half else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="examples")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def per_class_nfr_png(nfr: dict[str, np.ndarray], names: list[str], title: str) -> bytes:
    """Grouped bars of NFR (%) per gold class, one bar per model; only the MAX_BARS classes with the
    highest NFR (over the models) are drawn when there are more."""
    models = list(nfr)
    values = np.vstack([nfr[m] for m in models]) * 100 if models else np.zeros((0, len(names)))
    order = np.arange(len(names))
    if len(names) > MAX_BARS:
        order = np.argsort(-values.max(axis=0), kind="stable")[:MAX_BARS]
        title += f" (worst {MAX_BARS} of {len(names)} classes)"
    width_in = min(4.0 + 0.35 * len(order) * max(len(models), 1) / 2, 22.0)
    fig = Figure(figsize=(width_in, 4.2), constrained_layout=True)
    ax = fig.add_subplot()
    x = np.arange(len(order))
    bar = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        ax.bar(x + (i - (len(models) - 1) / 2) * bar, values[i, order], bar, label=model)
    ax.set_xticks(x, [_short(names[c]) for c in order], rotation=60 if len(order) > 6 else 0, ha="right"
                  if len(order) > 6 else "center", fontsize=8)
    ax.set_ylabel("NFR within the class (%)")
    ax.grid(axis="y", alpha=0.3)
    if models:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def epoch_curves_png(curves: dict[str, list[dict]], kept: dict[str, int]) -> bytes:
    """Training loss and dev accuracy per epoch, one line per model; the kept epoch marked."""
    fig = Figure(figsize=(10, 3.8), constrained_layout=True)
    loss_ax, acc_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for model, rows in curves.items():
        epochs = [r["epoch"] for r in rows]
        (line,) = loss_ax.plot(epochs, [r["train_loss"] for r in rows], marker="o", ms=3, label=model)
        acc = [100 * r["dev_accuracy"] for r in rows if "dev_accuracy" in r]
        if acc:
            acc_ax.plot(epochs[: len(acc)], acc, marker="o", ms=3, color=line.get_color(), label=model)
            k = kept.get(model)
            if k and 0 < k <= len(acc):
                acc_ax.plot([k], [acc[k - 1]], marker="*", ms=12, color=line.get_color())
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="dev accuracy (%)", title="dev accuracy (star: the epoch kept)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def note_png(title: str, text: str) -> bytes:
    """A figure that only says why there is no plot (e.g. a stage that skipped)."""
    import textwrap

    fig = Figure(figsize=(10, 2), constrained_layout=True)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text, 110), ha="center", va="center", fontsize=9)
    fig.suptitle(title)
    return _png(fig, dpi=110)


def bcwi_curve_png(rows: list[dict], selected: dict) -> bytes:
    """Accuracy and NFR against alpha, one line per variant and split (the bcwi stage's curve rows:
    variant, split, alpha, accuracy, nfr); the selected alpha marked."""
    df = pd.DataFrame(rows)
    fig = Figure(figsize=(10, 4), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for (variant, split), g in df.groupby(["variant", "split"]):
        style = "-" if split == "regression" else "--"
        for ax, metric in zip(axes, ("accuracy", "nfr")):
            ax.plot(g["alpha"], 100 * g[metric], style, marker="o", ms=3, label=f"{variant} ({split})")
    for ax, metric in zip(axes, ("accuracy %", "NFR %")):
        ax.axvline(selected["alpha"], color="grey", lw=0.8, ls=":")
        ax.set_xlabel("alpha (0 = new, 1 = old)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"BCWI: selected {selected['variant']} alpha={selected['alpha']:.2f} on dev")
    return _png(fig, dpi=110)
