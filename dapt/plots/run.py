"""Matplotlib figures of a run (a study's are in ``plots.study``); every function returns a Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so they never touch
pyplot's global state: nothing leaks across the many figures of a batch run and nothing is shown
twice in a notebook (a stage notebook shows the PNG that ``plots.common.save_figure`` wrote; elsewhere
``display(fig)``).
Accuracies and agreements arrive as fractions 0–1 and are drawn in %.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dapt.analysis.curves import on_test_images, per_epoch_images
from dapt.core.errors import DaptError
from dapt.plots.common import (
    PANEL_SIZE, SMALL, STYLES, WIDTH, as_count, as_number, as_percent, class_matrix, label_classes, new_figure,
    legend_below, note_figure,
)


def _per_epoch_images(metrics: dict) -> tuple[str, bool]:
    """Which images the per-epoch numbers of a run are on (``curves.per_epoch_images``), and whether the final
    numbers on all test images need their own mark: always beside a validation curve, and beside an older
    run's test curve when that was on a subset of the test images."""
    images = per_epoch_images(metrics)
    if not on_test_images(metrics):
        return images, True
    evaluated, total = as_count(metrics.get("val_images")), as_count(metrics.get("test_images"))
    return images, evaluated is not None and total is not None and evaluated < total


def _final_label(metrics: dict, value: float) -> str:
    """Label of the star marking the final value on all test images, e.g. "final, all 10,000 test images: 71.1%"."""
    total = as_count(metrics.get("test_images"))
    images = f"all {total:,} test images" if total is not None else "all test images"
    return f"final, {images}: {100 * as_number(value):.1f}%"


def training_curves(metrics: dict) -> Figure:
    """Loss and accuracy over epochs of one run, from its whole ``metrics.json`` dict.

    Every accuracy says which images it is on: the per-epoch curve is on the run's validation images
    (in a run recorded before the validation set, on its test subset: ``dapt.analysis.curves``), and the
    final accuracy on all test images is marked with a star at the last epoch (not needed beside an older
    run's curve on all test images). Distill runs add the teacher's accuracy on the per-epoch images
    (``teacher_val_acc``) and a panel of agreement and KL.
    Works for a run in progress: an empty history gives a note figure, missing keys are skipped.
    """
    history = list(metrics.get("history") or [])
    if not history:
        return note_figure("Training curves", "no epoch finished yet")
    distill = (any(entry.get("val_agreement") is not None for entry in history)
               or metrics.get("agreement") is not None)
    n_panels = 3 if distill else 2
    fig = new_figure(PANEL_SIZE[0] * n_panels, PANEL_SIZE[1] + 1.4)
    axes = fig.subplots(1, n_panels)
    epochs = [entry.get("epoch", index + 1) for index, entry in enumerate(history)]

    def series(key: str) -> np.ndarray:
        return np.array([as_number(entry.get(key)) for entry in history])

    def evaluated(key: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of the epochs that were evaluated (``eval_every``), so their line is unbroken."""
        values = series(key)
        return np.array(epochs)[~np.isnan(values)], values[~np.isnan(values)]

    images, mark_final = _per_epoch_images(metrics)
    size = as_count(metrics.get("image_size", (metrics.get("params") or {}).get("image_size")))
    loss_ax, acc_ax = axes[0], axes[1]
    loss_ax.plot(epochs, series("train_loss"), marker="o", label="train loss", **STYLES[0])
    loss_ax.set(title="Training loss", xlabel="epoch", ylabel="loss")
    acc_ax.plot(epochs, 100 * series("train_acc"), marker="o", label="train (augmented batches, epoch mean)",
                **STYLES[0])
    curve_epochs, curve_acc = evaluated("val_acc")
    acc_ax.plot(curve_epochs, 100 * curve_acc, marker="o", label=images, **STYLES[1])
    final = metrics.get("test_acc")
    if mark_final and final is not None:
        acc_ax.plot([epochs[-1]], [100 * as_number(final)], marker="*", markersize=14, linestyle="none",
                    color="tab:orange", markeredgecolor="black", label=_final_label(metrics, final))
    teacher = metrics.get("teacher_val_acc")
    if teacher is not None:
        t_size = as_count(metrics.get("teacher_image_size"))
        resized = f", resized to {t_size} px" if t_size is not None and t_size != size else ""
        acc_ax.axhline(100 * as_number(teacher), color="black", linestyle="--",
                       label=f"teacher, {images}{resized}: {100 * as_number(teacher):.1f}%")
    acc_ax.set(title=f"Accuracy ({size} px)" if size else "Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    legend_below(acc_ax)
    if distill:
        agree_ax = axes[2]
        agree_epochs, agreement = evaluated("val_agreement")
        agree_ax.plot(agree_epochs, 100 * agreement, marker="o", color="tab:green",
                      label=f"top-1 agreement, {images}")
        if mark_final and metrics.get("agreement") is not None:
            agree_ax.plot([epochs[-1]], [100 * as_number(metrics["agreement"])], marker="*", markersize=14,
                          linestyle="none", color="tab:green", markeredgecolor="black",
                          label=_final_label(metrics, metrics["agreement"]))
        agree_ax.set(title="Fidelity to the teacher", xlabel="epoch", ylabel="agreement (%)")
        kl_ax = agree_ax.twinx()
        kl_ax.plot(*evaluated("val_kl"), marker="s", color="tab:red", label=f"KL(teacher ‖ student), {images}")
        kl_ax.set_ylabel("KL (nats)")
        handles = agree_ax.get_legend_handles_labels()[0] + kl_ax.get_legend_handles_labels()[0]
        legend_below(agree_ax, handles)
    for ax in fig.axes:
        # epochs are whole numbers; "auto": as many ticks as the panel's width holds (the fidelity panel is narrower)
        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    return fig


def per_class_agreement_bars(values, class_names, teacher_acc_per_class=None) -> Figure:
    """Top-1 agreement per true class (bars, %), optionally beside the teacher's per-class accuracy."""
    for name, given in {"values": values, "teacher_acc_per_class": teacher_acc_per_class}.items():
        if given is not None and len(given) != len(class_names):
            raise DaptError(f"{name} has {len(given)} entries but there are {len(class_names)} class names; "
                            "pass one value per class, in class order")
    fig = new_figure(min(WIDTH, max(PANEL_SIZE[0], 0.45 * len(class_names) + 3.5)), PANEL_SIZE[1])
    ax = fig.add_subplot()
    positions = np.arange(len(class_names))
    width = 0.4 if teacher_acc_per_class is not None else 0.8
    offset = width / 2 if teacher_acc_per_class is not None else 0.0
    agreement = as_percent(values)
    ax.bar(positions - offset, np.nan_to_num(agreement), width, label="agreement with teacher")
    for x, value in zip(positions - offset, agreement):
        if math.isnan(value):
            ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=SMALL)
    if teacher_acc_per_class is not None:
        teacher = as_percent(teacher_acc_per_class)
        ax.bar(positions + offset, np.nan_to_num(teacher), width, color="grey", label="teacher accuracy")
    ax.set(title="Per-class agreement (test)", xlabel="true class", ylabel="%", ylim=(0, 105))
    label_classes(ax, class_names)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=SMALL)
    return fig


def prediction_matrix_plot(matrix, class_names) -> Figure:
    """Teacher prediction (rows) × student prediction (cols): colour row-normalised, cells annotated."""
    counts = np.asarray(matrix, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(class_names):
        raise DaptError(f"prediction matrix of shape {counts.shape} does not fit {len(class_names)} class names; "
                        "pass the [C, C] output of dapt.training.agreement.prediction_matrix")
    total = counts.sum()
    agreement = f"{100 * np.trace(counts) / total:.1f}%" if total else "n/a"
    return class_matrix(counts, class_names, title=f"Teacher vs student predictions (agreement {agreement})",
                        xlabel="student prediction", ylabel="teacher prediction", share_of="the teacher's predictions")


def _reliability_panel(ax, bins: dict, who: str) -> None:
    lower = np.asarray(bins["lower"], dtype=float)
    width = np.asarray(bins["upper"], dtype=float) - lower
    accuracy = np.array([as_number(v) for v in bins["accuracy"]])
    confidence = np.array([as_number(v) for v in bins["confidence"]])
    counts = np.asarray(bins["count"], dtype=float)
    filled = counts > 0
    ax.bar(lower[filled], accuracy[filled], width[filled], align="edge", edgecolor="black",
           color="tab:blue", label="accuracy")
    ax.bar(lower[filled], (confidence - accuracy)[filled], width[filled], bottom=accuracy[filled],
           align="edge", color="tab:red", alpha=0.3, hatch="//", edgecolor="tab:red",
           label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", label="perfect calibration")
    total = counts.sum()
    ece = np.abs(accuracy - confidence)[filled] @ counts[filled] / total if total else math.nan
    ax.set(title=f"{who} (ECE {100 * ece:.1f}%)", xlabel="confidence", ylabel="accuracy",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=SMALL)


def reliability_diagram(bins_teacher: dict, bins_student: dict) -> Figure:
    """Reliability diagrams (Guo et al. 2017) of teacher and student side by side.

    Takes the output of ``dapt.training.agreement.reliability_bins``; bars above the diagonal mean
    under-confidence, below it over-confidence.
    """
    fig = new_figure(2 * PANEL_SIZE[0], PANEL_SIZE[1] + 0.6)
    teacher_ax, student_ax = fig.subplots(1, 2, sharey=True)
    _reliability_panel(teacher_ax, bins_teacher, "Teacher")
    _reliability_panel(student_ax, bins_student, "Student")
    return fig
