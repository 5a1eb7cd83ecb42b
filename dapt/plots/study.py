"""Figures of a whole study, for its report: accuracy per run, and agreement against accuracy.

Rows come from ``dapt.analysis.rows.collect``; like ``dapt.plots.run``, every function returns a
``matplotlib.figure.Figure`` built without pyplot. Accuracies are fractions 0–1, drawn in %.
"""
from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dapt.plots.common import as_count, as_number, as_percent, evaluated_images, note_figure, student_colours


def _distill_rows(rows: list[dict]) -> list[dict]:
    """Distill rows grouped by student architecture, each group's no-teacher baseline first."""
    distill = [row for row in rows if row.get("stage") == "distill"]
    students = list(dict.fromkeys(str(row.get("student")) for row in distill))
    return sorted(distill, key=lambda row: (students.index(str(row.get("student"))),
                                            row.get("distiller") != "none"))


def _px(value) -> str:
    size = as_count(value)
    return f"{size} px" if size is not None else ""


def _sizes(rows: list[dict], key: str = "image_size") -> str:
    """The image sizes of ``rows`` as "32 px" or "32/48 px", "" when none is recorded."""
    sizes = sorted({as_count(row.get(key)) for row in rows} - {None})
    return "/".join(str(size) for size in sizes) + " px" if sizes else ""


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


def accuracy_bars(rows: list[dict]) -> Figure:
    """Final test accuracy (all test images) of every distill run, coloured by student; teacher-stage
    runs as dashed lines at their own run's accuracy, labelled with their run and image size.

    Hatched bars are the ``none`` baselines (student trained without a teacher).
    """
    distill = _distill_rows(rows)
    if not distill:
        return note_figure("Test accuracy per run", "no distill runs in this study yet")
    fig = Figure(figsize=(max(7.0, 0.6 * len(distill) + 5.5), 4.2), layout="constrained")
    ax = fig.add_subplot()
    colours = student_colours(distill)
    accuracy = as_percent(row.get("test_acc") for row in distill)
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
    ax.set(title=f"Final test accuracy per run ({evaluated_images(distill)})", ylabel="test accuracy (%)")
    ax.set_ylim(bottom, 100)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


_DISTILLER_MARKERS = {"none": "o", "kd": "s", "crd": "^", "srrl": "D", "align_uniform": "v", "dkd": "P",
                      "dist": "X"}
_SPARE_MARKERS = ["<", ">", "h", "p", "*"]


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
                ax.scatter(as_percent(r["agreement"] for r in mine), as_percent(r["test_acc"] for r in mine),
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
        size, t_size = as_count(row.get("image_size")), as_count(row.get("teacher_image_size"))
        sizes = (f" ({size} px resized to {t_size} px)" if size and t_size and size != t_size
                 else f" ({size} px)" if size else "")
        value = float(row["teacher_test_acc"])
        teachers.setdefault(f"teacher {name} on the students' inputs{sizes}: {100 * value:.1f}%", value)
    return teachers


def agreement_vs_accuracy(rows: list[dict]) -> Figure:
    """Final top-1 agreement with the teacher (x) against final test accuracy (y), both on all test images.

    One point per distill run, without text: colour is the student architecture, marker shape the
    distiller, both explained in the legend below the axes. Each teacher is a horizontal dashed line at
    its accuracy on the students' inputs (``teacher_test_acc``), the accuracy agreement is measured
    against. When a few runs lie far below the rest (e.g. a diverged distiller), a second panel zooms on
    the runs within 10 points of the best, so close points stay apart.
    """
    points = [row for row in _distill_rows(rows)
              if not (math.isnan(as_number(row.get("agreement"))) or math.isnan(as_number(row.get("test_acc"))))]
    if not points:
        return note_figure("Agreement vs accuracy", "no run with both agreement and test accuracy yet")
    best_agreement = max(as_number(row["agreement"]) for row in points)
    best_acc = max(as_number(row["test_acc"]) for row in points)
    close = [row for row in points if 100 * (best_agreement - as_number(row["agreement"])) <= _ZOOM_POINTS
             and 100 * (best_acc - as_number(row["test_acc"])) <= _ZOOM_POINTS]
    zoom = 2 <= len(close) < len(points)
    fig = Figure(figsize=(11.0 if zoom else 7.0, 6.2), layout="constrained")
    axes = fig.subplots(1, 2) if zoom else [fig.add_subplot()]
    plotted = {str(row.get("student")) for row in points}  # same colours as report_accuracy_bars
    all_colours = student_colours(_distill_rows(rows))
    colours = {s: c for s, c in all_colours.items() if s in plotted}
    markers = _distiller_markers(points)
    images = evaluated_images(points)
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
