"""Figures of a study's configurations (``dapt.analysis.configurations``): each seed's test accuracy
around the mean ± std, and the per-epoch accuracy curves (on the validation images, or on a test subset in
runs recorded before the validation set: ``dapt.analysis.curves``) that show whether each configuration
reached a plateau (``dapt.analysis.budget``).

Like ``dapt.plots.run``, every function returns a ``matplotlib.figure.Figure`` built without pyplot;
accuracies arrive as fractions 0–1 and are drawn in %.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dapt.analysis.budget import plateau
from dapt.analysis.curves import curve, on_test_images, per_epoch_images
from dapt.plots.common import evaluated_images, note_figure, student_colours


def _ordered(configs: list[dict]) -> list[dict]:
    """Student configurations grouped by architecture (the no-teacher baseline first), then teacher-stage runs."""
    students = list(dict.fromkeys(str(c.get("student")) for c in configs if c.get("stage") == "distill"))
    distill = sorted((c for c in configs if c.get("stage") == "distill"),
                     key=lambda c: (students.index(str(c.get("student"))), c.get("distiller") != "none"))
    return distill + [c for c in configs if c.get("stage") == "teacher"]


def seed_spread(configs: list[dict]) -> Figure:
    """Per configuration: every seed's final test accuracy as a dot, the mean as a bar, ± one sample standard
    deviation as its error bar (none for a single seed). Teacher-stage runs (own runs) come last, in grey."""
    shown = [c for c in _ordered(configs) if c.get("test_acc_values")]
    if not shown:
        return note_figure("Test accuracy over seeds", "no configuration has a test accuracy yet")
    fig = Figure(figsize=(max(7.0, 0.55 * len(shown) + 4.0), 4.4), layout="constrained")
    ax = fig.add_subplot()
    colours = student_colours([c for c in shown if c.get("stage") == "distill"])
    values = [100 * v for c in shown for v in c["test_acc_values"]]
    for x, c in enumerate(shown):
        colour = colours.get(str(c.get("student")), "grey") if c.get("stage") == "distill" else "grey"
        points = 100 * np.array(c["test_acc_values"])
        offsets = np.linspace(-0.18, 0.18, len(points)) if len(points) > 1 else np.zeros(1)
        ax.scatter(x + offsets, points, color=colour, edgecolors="black", linewidths=0.5, s=28, zorder=3)
        std = c.get("test_acc_std")
        ax.errorbar(x, 100 * c["test_acc"], yerr=None if std is None else 100 * std, fmt="_", markersize=22,
                    color="black", capsize=6, zorder=4)
        ax.annotate(f"n={len(points)}", (x, min(points)), xytext=(0, -12), textcoords="offset points",
                    ha="center", fontsize=7)
    low, high = min(values), max(values)
    ax.set_ylim(max(0.0, low - 3 - 0.1 * (high - low)), min(100.0, high + 2 + 0.05 * (high - low)))
    ax.set_xticks(range(len(shown)), [str(c["run"]) for c in shown], rotation=30, ha="right", fontsize=8)
    single = all(len(c["test_acc_values"]) == 1 for c in shown)
    ax.set(title=f"Final test accuracy per configuration ({evaluated_images(shown)}): "
                 + ("one seed each, so no spread to show" if single else "seeds and mean ± std"),
           ylabel="test accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], color=colour, marker="o", linestyle="none", markeredgecolor="black",
                      label=f"student {student}") for student, colour in colours.items()]
    handles += [Line2D([], [], color="grey", marker="o", linestyle="none", markeredgecolor="black",
                       label="teacher-stage run (own run)"),
                Line2D([], [], color="black", marker="_", markersize=12, linestyle="none",
                       label="mean ± sample std over seeds")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def _curve(history: list[dict]) -> tuple[list[int], list[float]]:
    points = curve(history)
    return [p[0] for p in points], [100 * p[1] for p in points]


def _per_epoch_set(configs: list[dict]) -> str:
    """"validation", "test" (runs recorded before the validation set) or both, for an axis label."""
    kinds = {"test" if on_test_images(c.get("history") or []) else "validation" for c in configs}
    return kinds.pop() if len(kinds) == 1 else "validation or (older runs) test"


def _per_epoch_title(configs: list[dict]) -> str:
    """The per-epoch images of every configuration when they agree, e.g. "validation (1,000 training images
    outside train_subset)", else which sets they are."""
    labels = {per_epoch_images(c) for c in configs}
    return labels.pop() if len(labels) == 1 else f"{_per_epoch_set(configs)} images"


def accuracy_curves(configs: list[dict]) -> Figure:
    """Accuracy on the per-epoch images (validation; a test subset in older runs) per epoch, one panel per student
    architecture (teacher-stage runs in a last panel): each configuration's mean over its seeds as a line, the
    seeds' min–max as a band, its plateau verdict (``dapt.analysis.budget``) in the legend; the axis and the
    title say which images."""
    shown = [c for c in _ordered(configs) if len(_curve(c.get("history") or [])[0]) >= 1]
    if not shown:
        return note_figure("Accuracy per epoch", "no configuration has a per-epoch history yet")
    panels = list(dict.fromkeys(str(c.get("student")) if c.get("stage") == "distill" else "teacher-stage runs"
                                for c in shown))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(5.2 * columns, 4.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        mine = [c for c in shown if (str(c.get("student")) if c.get("stage") == "distill" else "teacher-stage runs") == panel]
        for index, c in enumerate(mine):
            epochs, mean = _curve(c["history"])
            colour = f"C{index % 10}"
            ax.plot(epochs, mean, marker="o", markersize=3, color=colour,
                    linestyle="--" if c.get("distiller") == "none" else "-",
                    label=f"{c['run']} ({plateau(c['history']).status})")
            seeds = [dict(zip(*_curve(h))) for h in (c.get("histories") or {}).values()]
            if len(seeds) > 1:
                low = [min(s.get(e, math.nan) for s in seeds) for e in epochs]
                high = [max(s.get(e, math.nan) for s in seeds) for e in epochs]
                ax.fill_between(epochs, low, high, color=colour, alpha=0.15, linewidth=0)
        ax.set(title=f"student {panel}" if panel != "teacher-stage runs" else panel, xlabel="epoch",
               ylabel=f"{_per_epoch_set(mine)} accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(f"Accuracy per epoch on {_per_epoch_title(shown)}: mean over seeds (band: min–max of the seeds; "
                 f"dashed: no teacher)")
    return fig
