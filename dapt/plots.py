"""Matplotlib figures of a run and of a study; every function returns a Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so they never touch
pyplot's global state: nothing leaks across the many figures of a batch run and nothing is shown
twice in a notebook (show one with ``display(fig)`` or by ending a cell with it).
Accuracies and agreements arrive as fractions 0–1 and are drawn in %.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from dapt.errors import DaptError
from dapt.runs import atomic_path

_DPI = 110
_PANEL_SIZE = (4.6, 3.4)


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (temp file + rename), creating the folder."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)


def _number(value) -> float:
    """A plottable float: None (undefined metric, e.g. in metrics.json) becomes nan."""
    return math.nan if value is None else float(value)


def _as_floats(values) -> list[float]:
    """Floats from a list, numpy array or tensor, None turned into nan."""
    return [_number(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _percent(values) -> np.ndarray:
    return 100.0 * np.array(_as_floats(values), dtype=float)


def _note_figure(title: str, note: str) -> Figure:
    """A one-axes figure carrying a message, so a report of a study still in progress renders."""
    fig = Figure(figsize=_PANEL_SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def training_curves(history: list[dict]) -> Figure:
    """Loss and accuracy over epochs; distill runs add agreement/KL and the teacher's accuracy."""
    if not history:
        return _note_figure("Training curves", "no epoch finished yet")
    distill = any(entry.get("agreement") is not None for entry in history)
    n_panels = 3 if distill else 2
    fig = Figure(figsize=(_PANEL_SIZE[0] * n_panels, _PANEL_SIZE[1]), layout="constrained")
    axes = fig.subplots(1, n_panels)
    epochs = [entry.get("epoch", index + 1) for index, entry in enumerate(history)]

    def series(key: str) -> np.ndarray:
        return np.array([_number(entry.get(key)) for entry in history])

    loss_ax, acc_ax = axes[0], axes[1]
    loss_ax.plot(epochs, series("train_loss"), marker="o", label="train loss")
    loss_ax.set(title="Training loss", xlabel="epoch", ylabel="loss")
    acc_ax.plot(epochs, 100 * series("train_acc"), marker="o", label="train")
    acc_ax.plot(epochs, 100 * series("test_acc"), marker="o", label="test")
    teacher_acc = series("teacher_test_acc")
    if not np.isnan(teacher_acc).all():
        acc_ax.axhline(100 * teacher_acc[~np.isnan(teacher_acc)][-1], color="black", linestyle="--", label="teacher (test)")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    acc_ax.legend()
    if distill:
        agree_ax = axes[2]
        agree_ax.plot(epochs, 100 * series("agreement"), marker="o", color="tab:green",
                      label="top-1 agreement")
        agree_ax.set(title="Fidelity to the teacher (test)", xlabel="epoch", ylabel="agreement (%)")
        kl_ax = agree_ax.twinx()
        kl_ax.plot(epochs, series("kl"), marker="s", color="tab:red", label="KL(teacher ‖ student)")
        kl_ax.set_ylabel("KL (nats)")
        handles = agree_ax.get_legend_handles_labels()[0] + kl_ax.get_legend_handles_labels()[0]
        agree_ax.legend(handles=handles, loc="center right")
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    return fig


def _label_classes(ax, class_names) -> None:
    rotation = 45 if len(class_names) > 6 else 0
    ax.set_xticks(range(len(class_names)), class_names, rotation=rotation,
                  ha="right" if rotation else "center")


def per_class_agreement_bars(values, class_names, teacher_acc_per_class=None) -> Figure:
    """Top-1 agreement per true class (bars, %), optionally beside the teacher's per-class accuracy."""
    for name, given in {"values": values, "teacher_acc_per_class": teacher_acc_per_class}.items():
        if given is not None and len(given) != len(class_names):
            raise DaptError(f"{name} has {len(given)} entries but there are {len(class_names)} class names; "
                            "pass one value per class, in class order")
    fig = Figure(figsize=(max(_PANEL_SIZE[0], 0.5 * len(class_names) + 3.5), _PANEL_SIZE[1]),
                 layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(class_names))
    width = 0.4 if teacher_acc_per_class is not None else 0.8
    offset = width / 2 if teacher_acc_per_class is not None else 0.0
    agreement = _percent(values)
    ax.bar(positions - offset, np.nan_to_num(agreement), width, label="agreement with teacher")
    for x, value in zip(positions - offset, agreement):
        if math.isnan(value):
            ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=8)
    if teacher_acc_per_class is not None:
        teacher = _percent(teacher_acc_per_class)
        ax.bar(positions + offset, np.nan_to_num(teacher), width, color="grey", label="teacher accuracy")
    _label_classes(ax, class_names)
    ax.set(title="Per-class agreement (test)", ylabel="%", ylim=(0, 105))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def prediction_matrix_plot(matrix, class_names) -> Figure:
    """Teacher prediction (rows) × student prediction (cols): colour row-normalised, cells annotated."""
    counts = np.asarray(matrix, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(class_names):
        raise DaptError(f"prediction matrix of shape {counts.shape} does not fit {len(class_names)} class names; "
                        "pass the [C, C] output of dapt.agreement.prediction_matrix")
    row_totals = counts.sum(1, keepdims=True)
    row_share = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    size = max(_PANEL_SIZE[0], 0.5 * len(class_names) + 2)
    fig = Figure(figsize=(size, size * 0.85), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the teacher's predictions")
    if len(class_names) <= 20:  # beyond that the numbers become unreadable
        for (row, col), count in np.ndenumerate(counts):
            ax.text(col, row, f"{count:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if row_share[row, col] > 0.5 else "black")
    total = counts.sum()
    agreement = f"{100 * np.trace(counts) / total:.1f}%" if total else "n/a"
    _label_classes(ax, class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(title=f"Teacher vs student predictions (agreement {agreement})",
           xlabel="student prediction", ylabel="teacher prediction")
    return fig


def _reliability_panel(ax, bins: dict, who: str) -> None:
    lower = np.asarray(bins["lower"], dtype=float)
    width = np.asarray(bins["upper"], dtype=float) - lower
    accuracy = np.array([_number(v) for v in bins["accuracy"]])
    confidence = np.array([_number(v) for v in bins["confidence"]])
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
    ax.legend(loc="upper left", fontsize=8)


def reliability_diagram(bins_teacher: dict, bins_student: dict) -> Figure:
    """Reliability diagrams (Guo et al. 2017) of teacher and student side by side.

    Takes the output of ``dapt.agreement.reliability_bins``; bars above the diagonal mean
    under-confidence, below it over-confidence.
    """
    fig = Figure(figsize=(2 * _PANEL_SIZE[0], _PANEL_SIZE[1] + 0.4), layout="constrained")
    teacher_ax, student_ax = fig.subplots(1, 2, sharey=True)
    _reliability_panel(teacher_ax, bins_teacher, "Teacher")
    _reliability_panel(student_ax, bins_student, "Student")
    return fig


def _distill_rows(rows: list[dict]) -> list[dict]:
    """Distill rows grouped by student architecture, each group's no-teacher baseline first."""
    distill = [row for row in rows if row.get("stage") == "distill"]
    students = list(dict.fromkeys(str(row.get("student")) for row in distill))
    return sorted(distill, key=lambda row: (students.index(str(row.get("student"))),
                                            row.get("distiller") != "none"))


def _student_colours(rows: list[dict]) -> dict[str, str]:
    students = dict.fromkeys(str(row.get("student")) for row in rows)
    return {student: f"C{index % 10}" for index, student in enumerate(students)}


def _teacher_accuracies(rows: list[dict]) -> dict[str, float]:
    """Test accuracy per teacher run, from the teacher rows and the distill rows that cite them."""
    teachers: dict[str, float] = {}
    for row in rows:
        if row.get("stage") == "teacher" and row.get("test_acc") is not None:
            teachers[str(row["run"])] = float(row["test_acc"])
        elif row.get("teacher_run") and row.get("teacher_test_acc") is not None:
            teachers.setdefault(str(row["teacher_run"]), float(row["teacher_test_acc"]))
    return teachers


def report_accuracy_bars(rows: list[dict]) -> Figure:
    """Test accuracy of every distill run, coloured by student; teachers as dashed lines.

    Hatched bars are the ``none`` baselines (student trained without a teacher).
    """
    distill = _distill_rows(rows)
    if not distill:
        return _note_figure("Test accuracy per run", "no distill runs in this study yet")
    fig = Figure(figsize=(max(7.0, 0.6 * len(distill) + 4.5), 4.2), layout="constrained")
    ax = fig.add_subplot()
    colours = _student_colours(distill)
    accuracy = _percent(row.get("test_acc") for row in distill)
    teachers = _teacher_accuracies(rows)
    shown = [v for v in accuracy if not math.isnan(v)] + [100 * v for v in teachers.values()]
    # Zoom on the range where runs differ; a failed run (no accuracy) is an "n/a" at the bottom.
    bottom = max(0.0, min(shown, default=10.0) - 10)
    for position, (row, value) in enumerate(zip(distill, accuracy)):
        baseline = row.get("distiller") == "none"
        bar = ax.bar(position, 0 if math.isnan(value) else value, color=colours[str(row.get("student"))],
                     hatch="//" if baseline else None, edgecolor="black" if baseline else None)
        if math.isnan(value):
            ax.text(position, bottom, "n/a", ha="center", va="bottom", fontsize=8)
        else:
            ax.bar_label(bar, labels=[f"{value:.1f}"], fontsize=8)
    for index, (teacher, value) in enumerate(teachers.items()):
        ax.axhline(100 * value, color=f"C{(len(colours) + index) % 10}", linestyle="--",
                   label=f"teacher {teacher} ({100 * value:.1f}%)")
    handles = ax.get_legend_handles_labels()[0]
    handles += [Patch(color=colour, label=f"student {student}") for student, colour in colours.items()]
    handles.append(Patch(facecolor="white", hatch="//", edgecolor="black", label="no teacher (baseline)"))
    ax.set_xticks(range(len(distill)), [str(row.get("run")) for row in distill], rotation=30, ha="right")
    ax.set(title="Test accuracy per run", ylabel="test accuracy (%)")
    ax.set_ylim(bottom, 100)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def report_agreement_vs_accuracy(rows: list[dict]) -> Figure:
    """Scatter of top-1 agreement with the teacher (x) against test accuracy (y), one labelled point per run."""
    points = [row for row in rows
              if not (math.isnan(_number(row.get("agreement"))) or math.isnan(_number(row.get("test_acc"))))]
    if not points:
        return _note_figure("Agreement vs accuracy", "no run with both agreement and test accuracy yet")
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    colours = _student_colours(points)
    for student, colour in colours.items():
        mine = [row for row in points if str(row.get("student")) == student]
        ax.scatter(_percent(r["agreement"] for r in mine), _percent(r["test_acc"] for r in mine),
                   color=colour, label=f"student {student}")
    for row in points:
        ax.annotate(str(row.get("run")), (100 * _number(row["agreement"]), 100 * _number(row["test_acc"])),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.margins(0.15)  # room for the point labels
    ax.set(title="Fidelity vs accuracy", xlabel="top-1 agreement with teacher (%)", ylabel="test accuracy (%)")
    ax.legend(fontsize=8)
    return fig
