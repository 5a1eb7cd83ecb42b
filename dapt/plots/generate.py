"""Figures of a generate run: the ddpm's loss curve, samples per class, nearest real images, and how
the teacher classifies the generated set. Every function returns a matplotlib ``Figure``."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from dapt.plots.common import as_percent

_CELL = 0.75  # inches per image in a grid


def _show(ax, image: torch.Tensor) -> None:
    """A uint8 [3, S, S] image; grey when its channels are equal."""
    array = image.permute(1, 2, 0).numpy()
    if (array == array[..., :1]).all():
        ax.imshow(array[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(array)
    ax.set_xticks([])
    ax.set_yticks([])


def loss_curve(losses: list[float], every: int) -> Figure:
    """The ddpm's training loss ‖v - v_θ‖², one point per ``every`` steps."""
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    steps = every * (np.arange(len(losses)) + 1)
    ax.plot(steps, losses)
    ax.set(title="DDPM training loss", xlabel="training step", ylabel="v-prediction MSE", yscale="log")
    ax.grid(alpha=0.3)
    return fig


def sample_grid(images: torch.Tensor, labels: torch.Tensor, class_names: list[str], columns: int = 8) -> Figure:
    """One row per class: its first ``columns`` generated images."""
    rows = len(class_names)
    fig = Figure(figsize=(_CELL * columns + 1.6, _CELL * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for label, name in enumerate(class_names):
        members = (labels == label).nonzero().flatten()[:columns]
        for col in range(columns):
            ax = axes[label, col]
            if col < len(members):
                _show(ax, images[members[col]])
            else:
                ax.set_axis_off()
        axes[label, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Generated images, one row per class")
    return fig


def nearest_pairs(generated: torch.Tensor, real: torch.Tensor, distances: torch.Tensor,
                  names: list[str]) -> Figure:
    """Top row: generated images; bottom row: each one's nearest real training image (pixel RMS)."""
    n = len(generated)
    fig = Figure(figsize=(1.0 * n + 0.6, 2.6), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for k in range(n):
        _show(axes[0, k], generated[k])
        axes[0, k].set_title(names[k], fontsize=7)
        _show(axes[1, k], real[k])
        axes[1, k].set_title(f"RMS {distances[k]:.2f}", fontsize=7)
    axes[0, 0].set_ylabel("generated", fontsize=8)
    axes[1, 0].set_ylabel("nearest real", fontsize=8)
    fig.suptitle("Does the generator copy? Each generated image above its nearest training image (pixel L2)")
    return fig


def per_class_accuracy_bars(per_class, class_names: list[str], overall: float) -> Figure:
    """The teacher's accuracy on the generated images of each class (%)."""
    fig = Figure(figsize=(max(4.6, 0.5 * len(class_names) + 2), 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(class_names)), np.nan_to_num(as_percent(per_class)))
    ax.axhline(100 * overall, color="black", linestyle="--", label=f"all classes {100 * overall:.1f}%")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45 if len(class_names) > 6 else 0, ha="right")
    ax.set(title="Teacher accuracy on the generated set, per class", ylabel="%", ylim=(0, 105))
    ax.legend(loc="lower right", fontsize=8)
    return fig


def confusion_plot(labels: torch.Tensor, predicted: torch.Tensor, class_names: list[str]) -> Figure:
    """Class asked of the generator (rows) × the teacher's prediction (columns), row-normalised, counts annotated."""
    c = len(class_names)
    counts = torch.bincount(labels * c + predicted, minlength=c * c).reshape(c, c).numpy().astype(float)
    totals = counts.sum(1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = max(4.6, 0.5 * c + 2)
    fig = Figure(figsize=(size, size * 0.85), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the class's generated images")
    if c <= 20:
        for (row, col), count in np.ndenumerate(counts):
            ax.text(col, row, f"{count:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if share[row, col] > 0.5 else "black")
    ax.set_xticks(range(c), class_names, rotation=45 if c > 6 else 0, ha="right")
    ax.set_yticks(range(c), class_names)
    ax.set(title="Generated class × teacher prediction", xlabel="teacher prediction", ylabel="generated as")
    return fig
