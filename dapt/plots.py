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
from matplotlib.lines import Line2D
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


def _count(value) -> int | None:
    """A whole number of images from metrics.json, None when absent or not a number."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _eval_images(metrics: dict) -> tuple[str, bool]:
    """Which test images the per-epoch numbers of a run are on, and whether that is a subset.

    ``("all 10,000 images", False)``, ``("1,000 of 10,000 images", True)``; a run still in progress
    (``eval_images`` not yet written) is read from its ``eval_subset`` parameter.
    """
    evaluated, total = _count(metrics.get("eval_images")), _count(metrics.get("test_images"))
    if evaluated is not None and total is not None:
        if evaluated >= total:
            return f"all {total:,} images", False
        return f"{evaluated:,} of {total:,} images", True
    if evaluated is not None:
        return f"{evaluated:,} images", False
    params = metrics.get("params") or {}
    if "eval_subset" in params:
        subset = _count(params["eval_subset"])
        if subset is None:
            return "all images", False
        return f"a {subset:,}-image subset", True
    return "", False


def _final_label(metrics: dict, value: float) -> str:
    """Label of the star marking the final value on all test images, e.g. "final, all 10,000 test images: 71.1%"."""
    total = _count(metrics.get("test_images"))
    images = f"all {total:,} test images" if total is not None else "all test images"
    return f"final, {images}: {100 * _number(value):.1f}%"


def training_curves(metrics: dict) -> Figure:
    """Loss and accuracy over epochs of one run, from its whole ``metrics.json`` dict.

    Every accuracy says which images it is on: the per-epoch test curve is on the run's
    evaluation images (all test images, or the ``eval_subset``), and when that is a subset the final
    accuracy on all test images is marked with a star at the last epoch. Distill runs add the teacher's
    accuracy on the same evaluation images (``teacher_eval_acc``) and a panel of agreement and KL.
    Works for a run in progress: an empty history gives a note figure, missing keys are skipped.
    """
    history = list(metrics.get("history") or [])
    if not history:
        return _note_figure("Training curves", "no epoch finished yet")
    distill = (any(entry.get("agreement") is not None for entry in history)
               or metrics.get("agreement") is not None)
    n_panels = 3 if distill else 2
    fig = Figure(figsize=(_PANEL_SIZE[0] * n_panels, _PANEL_SIZE[1] + 1.0), layout="constrained")
    axes = fig.subplots(1, n_panels)
    epochs = [entry.get("epoch", index + 1) for index, entry in enumerate(history)]

    def series(key: str) -> np.ndarray:
        return np.array([_number(entry.get(key)) for entry in history])

    images, on_subset = _eval_images(metrics)
    size = _count(metrics.get("image_size", (metrics.get("params") or {}).get("image_size")))
    loss_ax, acc_ax = axes[0], axes[1]
    loss_ax.plot(epochs, series("train_loss"), marker="o", label="train loss")
    loss_ax.set(title="Training loss", xlabel="epoch", ylabel="loss")
    acc_ax.plot(epochs, 100 * series("train_acc"), marker="o", label="train (augmented batches, epoch mean)")
    acc_ax.plot(epochs, 100 * series("test_acc"), marker="o", label=f"test ({images})" if images else "test")
    final = metrics.get("test_acc")
    if on_subset and final is not None:
        acc_ax.plot([epochs[-1]], [100 * _number(final)], marker="*", markersize=14, linestyle="none",
                    color="tab:orange", markeredgecolor="black", label=_final_label(metrics, final))
    teacher = metrics.get("teacher_eval_acc")
    if teacher is None:  # metrics.json of an older run: the teacher's per-epoch accuracy on the same images
        old = series("teacher_test_acc")
        teacher = old[~np.isnan(old)][-1] if not np.isnan(old).all() else None
    if teacher is not None:
        t_size = _count(metrics.get("teacher_image_size"))
        resized = f", resized to {t_size} px" if t_size is not None and t_size != size else ""
        same = f"the same {images}" if images else "the same images"
        acc_ax.axhline(100 * _number(teacher), color="black", linestyle="--",
                       label=f"teacher on {same}{resized}: {100 * _number(teacher):.1f}%")
    acc_ax.set(title=f"Accuracy ({size} px)" if size else "Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    acc_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8)
    if distill:
        agree_ax = axes[2]
        agree_ax.plot(epochs, 100 * series("agreement"), marker="o", color="tab:green",
                      label="top-1 agreement")
        if on_subset and metrics.get("agreement") is not None:
            agree_ax.plot([epochs[-1]], [100 * _number(metrics["agreement"])], marker="*", markersize=14,
                          linestyle="none", color="tab:green", markeredgecolor="black",
                          label=_final_label(metrics, metrics["agreement"]))
        agree_ax.set(title=f"Fidelity to the teacher (test, {images})" if images else "Fidelity to the teacher",
                     xlabel="epoch", ylabel="agreement (%)")
        kl_ax = agree_ax.twinx()
        kl_ax.plot(epochs, series("kl"), marker="s", color="tab:red", label="KL(teacher ‖ student)")
        kl_ax.set_ylabel("KL (nats)")
        handles = agree_ax.get_legend_handles_labels()[0] + kl_ax.get_legend_handles_labels()[0]
        agree_ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8)
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


def _px(value) -> str:
    size = _count(value)
    return f"{size} px" if size is not None else ""


def _sizes(rows: list[dict], key: str = "image_size") -> str:
    """The image sizes of ``rows`` as "32 px" or "32/48 px", "" when none is recorded."""
    sizes = sorted({_count(row.get(key)) for row in rows} - {None})
    return "/".join(str(size) for size in sizes) + " px" if sizes else ""


def _test_images(rows: list[dict]) -> str:
    """ "all 10,000 test images" when every row that says so agrees, else "all test images"."""
    totals = {_count(row.get("test_images")) for row in rows} - {None}
    return f"all {totals.pop():,} test images" if len(totals) == 1 else "all test images"


def _own_runs(rows: list[dict]) -> dict[str, dict]:
    """Each teacher-stage run's own result: accuracy on all test images at its own image size, and its role.

    Read from the teacher rows, or from the distill rows that cite a teacher not in the rows
    (``teacher_run_test_acc``, ``teacher_image_size``). Never the teacher's accuracy on a student's inputs.
    """
    cited = {str(row["teacher_run"]) for row in rows if row.get("stage") == "distill" and row.get("teacher_run")}
    students = {str(row.get("student")) for row in rows if row.get("stage") == "distill"}
    runs: dict[str, dict] = {}
    for row in rows:
        if row.get("stage") == "teacher" and row.get("test_acc") is not None:
            name = str(row["run"])
            pretrained = (name not in cited and row.get("init") == "ft"
                          and str(row.get("model", row.get("student"))) in students)
            runs[name] = {"acc": float(row["test_acc"]), "size": row.get("image_size"),
                          "role": "pre-trained, fine-tuned" if pretrained else "teacher"}
    for row in rows:
        if row.get("stage") == "distill" and row.get("teacher_run") and row.get("teacher_run_test_acc") is not None:
            runs.setdefault(str(row["teacher_run"]), {"acc": float(row["teacher_run_test_acc"]),
                                                      "size": row.get("teacher_image_size"), "role": "teacher"})
    return runs


def _own_run_label(name: str, run: dict) -> str:
    """E.g. "teacher lite2_ft (own run, 48 px): 86.6%"."""
    where = ", ".join(["own run", _px(run.get("size"))]).rstrip(", ")
    return f"{run['role']} {name} ({where}): {100 * run['acc']:.1f}%"


def report_accuracy_bars(rows: list[dict]) -> Figure:
    """Final test accuracy (all test images) of every distill run, coloured by student; teacher-stage
    runs as dashed lines at their own run's accuracy, labelled with their run and image size.

    Hatched bars are the ``none`` baselines (student trained without a teacher).
    """
    distill = _distill_rows(rows)
    if not distill:
        return _note_figure("Test accuracy per run", "no distill runs in this study yet")
    fig = Figure(figsize=(max(7.0, 0.6 * len(distill) + 5.5), 4.2), layout="constrained")
    ax = fig.add_subplot()
    colours = _student_colours(distill)
    accuracy = _percent(row.get("test_acc") for row in distill)
    own_runs = _own_runs(rows)
    shown = [v for v in accuracy if not math.isnan(v)] + [100 * run["acc"] for run in own_runs.values()]
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
    for index, (name, run) in enumerate(own_runs.items()):
        ax.axhline(100 * run["acc"], color=f"C{(len(colours) + index) % 10}", linestyle="--",
                   label=_own_run_label(name, run))
    handles = ax.get_legend_handles_labels()[0]
    for student, colour in colours.items():
        size = _sizes([row for row in distill if str(row.get("student")) == student])
        handles.append(Patch(color=colour, label=f"student {student}" + (f" ({size})" if size else "")))
    handles.append(Patch(facecolor="white", hatch="//", edgecolor="black", label="no teacher (baseline)"))
    ax.set_xticks(range(len(distill)), [str(row.get("run")) for row in distill], rotation=30, ha="right")
    ax.set(title=f"Final test accuracy per run ({_test_images(distill)})", ylabel="test accuracy (%)")
    ax.set_ylim(bottom, 100)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


_DISTILLER_MARKERS = {"none": "o", "kd": "s", "crd": "^", "srrl": "D", "align_uniform": "v"}
_SPARE_MARKERS = ["P", "X", "<", ">", "h", "p", "*"]


def _distiller_markers(rows: list[dict]) -> dict[str, str]:
    distillers = dict.fromkeys(str(row.get("distiller")) for row in rows)
    spare = iter(_SPARE_MARKERS)
    return {name: _DISTILLER_MARKERS.get(name) or next(spare, "o") for name in distillers}


_ZOOM_POINTS = 10.0  # the zoom panel shows the runs within this many points of the best on both axes


def _scatter_runs(ax, points: list[dict], colours: dict[str, str], markers: dict[str, str]) -> None:
    for student, colour in colours.items():
        for distiller, marker in markers.items():
            mine = [row for row in points
                    if str(row.get("student")) == student and str(row.get("distiller")) == distiller]
            if mine:
                ax.scatter(_percent(r["agreement"] for r in mine), _percent(r["test_acc"] for r in mine),
                           color=colour, marker=marker, s=55, alpha=0.7, edgecolors="black", linewidths=0.7,
                           zorder=3)
    ax.grid(alpha=0.3)


def _teacher_references(points: list[dict]) -> dict[str, float]:
    """Label -> the teacher's accuracy on the students' inputs, one per (teacher, student size, teacher size)."""
    teachers: dict[str, float] = {}
    for row in points:
        if row.get("teacher_test_acc") is None:
            continue
        name = str(row.get("teacher_run") or "teacher")
        size, t_size = _count(row.get("image_size")), _count(row.get("teacher_image_size"))
        sizes = (f" ({size} px resized to {t_size} px)" if size and t_size and size != t_size
                 else f" ({size} px)" if size else "")
        value = float(row["teacher_test_acc"])
        teachers.setdefault(f"teacher {name} on the students' inputs{sizes}: {100 * value:.1f}%", value)
    return teachers


def report_agreement_vs_accuracy(rows: list[dict]) -> Figure:
    """Final top-1 agreement with the teacher (x) against final test accuracy (y), both on all test images.

    One point per distill run, without text: colour is the student architecture, marker shape the
    distiller, both explained in the legend below the axes. Each teacher is a horizontal dashed line at
    its accuracy on the students' inputs (``teacher_test_acc``), the accuracy agreement is measured
    against. When a few runs lie far below the rest (e.g. a diverged distiller), a second panel zooms on
    the runs within 10 points of the best, so close points stay apart.
    """
    points = [row for row in _distill_rows(rows)
              if not (math.isnan(_number(row.get("agreement"))) or math.isnan(_number(row.get("test_acc"))))]
    if not points:
        return _note_figure("Agreement vs accuracy", "no run with both agreement and test accuracy yet")
    best_agreement = max(_number(row["agreement"]) for row in points)
    best_acc = max(_number(row["test_acc"]) for row in points)
    close = [row for row in points if 100 * (best_agreement - _number(row["agreement"])) <= _ZOOM_POINTS
             and 100 * (best_acc - _number(row["test_acc"])) <= _ZOOM_POINTS]
    zoom = 2 <= len(close) < len(points)
    fig = Figure(figsize=(11.0 if zoom else 7.0, 6.2), layout="constrained")
    axes = fig.subplots(1, 2) if zoom else [fig.add_subplot()]
    plotted = {str(row.get("student")) for row in points}  # same colours as report_accuracy_bars
    all_colours = _student_colours(_distill_rows(rows))
    colours = {s: c for s, c in all_colours.items() if s in plotted}
    markers = _distiller_markers(points)
    images = _test_images(points)
    teachers = _teacher_references(points)
    handles = []
    for index, (label, value) in enumerate(teachers.items()):
        handles.append(axes[0].axhline(100 * value, linestyle="--", zorder=1, label=label,
                                       color="black" if len(teachers) == 1 else f"C{(len(all_colours) + index) % 10}"))
    _scatter_runs(axes[0], points, colours, markers)
    axes[0].margins(0.08)
    axes[0].set(title="Fidelity vs accuracy (final models)" if not zoom else "All runs",
                xlabel=f"top-1 agreement with the teacher (%, {images})",
                ylabel=f"student test accuracy (%, {images})")
    if zoom:
        zoom_ax = axes[1]
        _scatter_runs(zoom_ax, close, colours, markers)
        zoom_ax.margins(0.12)
        low, high = zoom_ax.get_ylim()
        outside = False
        for handle, value in zip(handles, teachers.values()):
            if low <= 100 * value <= high:  # a teacher far above the runs would undo the zoom
                zoom_ax.axhline(100 * value, linestyle="--", zorder=1, color=handle.get_color())
            else:
                outside = True
        zoom_ax.set(title=f"Zoom: runs within {_ZOOM_POINTS:.0f} points of the best"
                          + ("\n(teacher line outside this range: see left)" if outside else ""),
                    xlabel=f"top-1 agreement with the teacher (%, {images})",
                    ylabel=f"student test accuracy (%, {images})")
        fig.suptitle("Fidelity vs accuracy (final models)")
    handles += [Line2D([], [], color=colour, marker="o", linestyle="none", markeredgecolor="black",
                       label=f"student {student}") for student, colour in colours.items()]
    handles += [Line2D([], [], color="grey", marker=marker, linestyle="none", markeredgecolor="black",
                       label=f"distiller {distiller}") for distiller, marker in markers.items()]
    # Outside the axes, never on the points: teacher line(s), then colours (students), then shapes (distillers).
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncol=2 if len(handles) > 6 else 1)
    return fig
