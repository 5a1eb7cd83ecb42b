"""Figures of a generate run: the ddpm's loss curve, samples per class, nearest real images, and how
the teacher classifies the generated set. Every function returns a matplotlib ``Figure``; the image grids
show at most ``SHOWN_CLASSES`` classes (the first ones), so a set of 200 classes stays a figure to read."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from dapt.plots.common import (
    PANEL_SIZE, SMALL, WIDTH, as_percent, class_matrix, label_classes, new_figure,
)

_CELL = 0.75  # inches per image in a grid
SHOWN_CLASSES = 20
_PAIRS_PER_ROW = 10  # nearest_pairs: generated/real pairs side by side before the next two rows


def _shown(class_names: list[str]) -> tuple[int, str]:
    """How many classes an image grid shows, and the words that say so when not all."""
    n = min(len(class_names), SHOWN_CLASSES)
    return n, "" if n == len(class_names) else f" (the first {n} of {len(class_names)} classes)"


def _short(name: str, chars: int = 12) -> str:
    """A class name that fits above one image at ``SMALL`` points."""
    return name if len(name) <= chars else name[:chars - 1] + "…"


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
    fig = new_figure(5.5, 3.2)
    ax = fig.add_subplot()
    steps = every * (np.arange(len(losses)) + 1)
    ax.plot(steps, losses)
    ax.set(title="DDPM training loss", xlabel="training step", ylabel="v-prediction MSE", yscale="log")
    ax.grid(alpha=0.3)
    return fig


def sample_grid(images: torch.Tensor, labels: torch.Tensor, class_names: list[str], columns: int = 8) -> Figure:
    """One row per class: its first ``columns`` generated images."""
    rows, which = _shown(class_names)
    fig = new_figure(_CELL * columns + 1.8, _CELL * rows + 0.5)
    axes = fig.subplots(rows, columns, squeeze=False)
    for label, name in enumerate(class_names[:rows]):
        members = (labels == label).nonzero().flatten()[:columns]
        for col in range(columns):
            ax = axes[label, col]
            if col < len(members):
                _show(ax, images[members[col]])
            else:
                ax.set_axis_off()
        axes[label, 0].set_ylabel(_short(name, 16), rotation=0, ha="right", va="center", fontsize=SMALL)
    fig.suptitle(f"Generated images, one row per class{which}")
    return fig


def nearest_pairs(generated: torch.Tensor, real: torch.Tensor, distances: torch.Tensor,
                  names: list[str]) -> Figure:
    """Each generated image above its nearest real training image (pixel RMS), ``_PAIRS_PER_ROW`` pairs to a
    row of pairs."""
    n, which = _shown(names)
    columns = min(n, _PAIRS_PER_ROW)
    blocks = -(-n // columns)
    fig = new_figure(1.0 * columns + 1.2, 2.5 * blocks + 0.7)
    axes = fig.subplots(2 * blocks, columns, squeeze=False)
    for k in range(blocks * columns):
        top, bottom = axes[2 * (k // columns), k % columns], axes[2 * (k // columns) + 1, k % columns]
        if k >= n:
            top.set_axis_off()
            bottom.set_axis_off()
            continue
        _show(top, generated[k])
        top.set_title(_short(names[k]), fontsize=SMALL)
        _show(bottom, real[k])
        bottom.set_title(f"RMS {distances[k]:.2f}", fontsize=SMALL)
    for block in range(blocks):
        axes[2 * block, 0].set_ylabel("generated", fontsize=SMALL)
        axes[2 * block + 1, 0].set_ylabel("nearest real", fontsize=SMALL)
    fig.suptitle(f"Does the generator copy? Each generated image above its nearest\ntraining image (pixel L2){which}")
    return fig


def per_class_accuracy_bars(per_class, class_names: list[str], overall: float) -> Figure:
    """The teacher's accuracy on the generated images of each class (%)."""
    fig = new_figure(min(WIDTH, max(PANEL_SIZE[0] + 1.4, 0.45 * len(class_names) + 2.5)), 3.4)
    ax = fig.add_subplot()
    ax.bar(range(len(class_names)), np.nan_to_num(as_percent(per_class)))
    ax.axhline(100 * overall, color="black", linestyle="--", label=f"all classes {100 * overall:.1f}%")
    ax.set(title="Teacher accuracy on the generated set, per class", xlabel="class asked of the generator",
           ylabel="%", ylim=(0, 105))
    label_classes(ax, class_names)
    ax.legend(loc="lower right", fontsize=SMALL)
    return fig


def confusion_plot(labels: torch.Tensor, predicted: torch.Tensor, class_names: list[str]) -> Figure:
    """Class asked of the generator (rows) × the teacher's prediction (columns), row-normalised, counts annotated."""
    c = len(class_names)
    counts = torch.bincount(labels * c + predicted, minlength=c * c).reshape(c, c).numpy().astype(float)
    return class_matrix(counts, class_names, title="Generated class × teacher prediction", xlabel="teacher prediction",
                        ylabel="generated as", share_of="the class's generated images")
