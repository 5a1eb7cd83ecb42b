"""Figures of a whole study, for its report: accuracy per configuration, and agreement against accuracy.

Rows come from ``dapt.analysis.rows.collect`` (through ``Summary``, which adds each student's generator); like
``dapt.plots.run``, every function returns a ``matplotlib.figure.Figure`` built without pyplot. Accuracies are
fractions 0–1, drawn in %.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from dapt.analysis.configurations import configurations
from dapt.plots.common import (
    MAX_SERIES, REFERENCE_COLOUR, REFERENCE_STYLES, SMALL, as_count, as_number, as_percent, configuration_order,
    data_colours, data_kind, evaluated_images, group_by, new_figure, note_figure, panel_grid, panel_styles,
    reference_styles,
)


def _px(value) -> str:
    size = as_count(value)
    return f"{size} px" if size is not None else ""


def _sizes(rows: list[dict]) -> str:
    """The image sizes of ``rows`` as "32 px" or "32/48 px", "" when none is recorded."""
    sizes = sorted({as_count(row.get("image_size")) for row in rows} - {None})
    return "/".join(str(size) for size in sizes) + " px" if sizes else ""


def _configurations(rows: list[dict]) -> list[dict]:
    """The teacher and student configurations of ``rows`` (runs grouped over seeds), or ``rows`` themselves when
    they already are configurations (they carry ``test_acc_values``)."""
    rows = [row for row in rows if row.get("stage") in ("teacher", "distill")]
    return rows if all("test_acc_values" in row for row in rows) else configurations(rows)


def _own_runs(configs: list[dict]) -> dict[str, dict]:
    """Each teacher-stage configuration's own result, by configuration label: accuracy on all test images at its
    own image size, its seeds, its role, and the run names it stands for.

    Read from the teacher configurations, or from the students that cite a teacher not in the study
    (``teacher_run_test_acc``, ``teacher_image_size``). Never the teacher's accuracy on a student's inputs.
    """
    students = [c for c in configs if c.get("stage") == "distill"]
    cited = {str(c["teacher_run"]) for c in students if c.get("teacher_run")}
    architectures = {str(c.get("student")) for c in students}
    runs: dict[str, dict] = {}
    for c in configs:
        if c.get("stage") == "teacher" and c.get("test_acc") is not None:
            names = set(c.get("runs") or [c["run"]])
            model = str(c.get("model", c.get("student")))
            pretrained = not names & cited and c.get("init") == "ft" and model in architectures
            runs[c["run"]] = {"acc": float(c["test_acc"]), "values": c.get("test_acc_values") or [c["test_acc"]],
                              "size": c.get("image_size"), "names": names, "model": model,
                              "role": "pre-trained" if pretrained else "teacher"}
    known = {name for run in runs.values() for name in run["names"]}
    for c in students:
        if c.get("teacher_run") and c["teacher_run"] not in known and c.get("teacher_run_test_acc") is not None:
            runs.setdefault(str(c["teacher_run"]), {
                "acc": float(c["teacher_run_test_acc"]), "values": [c["teacher_run_test_acc"]],
                "size": c.get("teacher_image_size"), "names": {c["teacher_run"]}, "model": c.get("teacher_model"),
                "role": "teacher"})
    return runs


def _references(students: list[dict], own_runs: dict[str, dict]) -> dict[str, dict]:
    """The own runs a student panel is read against: the teachers its configurations cite and the pre-trained
    comparison of its architecture."""
    cited = {str(c["teacher_run"]) for c in students if c.get("teacher_run")}
    architectures = {str(c.get("student")) for c in students}
    return {label: run for label, run in own_runs.items()
            if run["names"] & cited or (run["role"] == "pre-trained" and run["model"] in architectures)}


def _own_run_label(label: str, run: dict) -> str:
    """E.g. "lite2_ft (teacher, 64 px)": the run, its role and its own image size."""
    return f"{label} ({', '.join(filter(None, [run['role'], _px(run['size'])]))})"


def _student_label(c: dict) -> str:
    return f"{c['run']} (no teacher)" if c.get("distiller") == "none" else str(c["run"])


def _student_title(student: str, mine: list[dict]) -> str:
    return f"student {student} ({_sizes(mine)})" if _sizes(mine) else f"student {student}"


def _mark_rows(ax, entries: list[tuple[str, list[float]]], colours: dict[str, str]) -> None:
    """One row per entry (colour key, seed values in %), top to bottom: the seeds as dots in the key's colour,
    their mean as a black tick, the mean written right of the axes ("n/a": a configuration without a test
    accuracy, e.g. failed)."""
    ys = np.arange(len(entries))[::-1]
    for key in dict.fromkeys(key for key, _ in entries):
        dots = [(v, y) for (k, values), y in zip(entries, ys) if k == key for v in values]
        if dots:
            ax.scatter(*zip(*dots), s=26, color=colours[key], edgecolors="black", linewidths=0.4, alpha=0.8,
                       zorder=3)
    means = [float(np.mean(values)) if values else math.nan for _, values in entries]
    ax.scatter(means, ys, marker="|", s=260, linewidths=2.2, color="black", zorder=4)
    right = blended_transform_factory(ax.transAxes, ax.transData)
    for mean, y in zip(means, ys):
        ax.text(1.01, y, "n/a" if math.isnan(mean) else f"{mean:.1f}", transform=right, va="center",
                fontsize=SMALL)
    ax.set_ylim(-0.7, len(entries) - 0.3)
    ax.grid(axis="x", alpha=0.3)


def _reference_lines(ax, references: dict[str, dict], styles: dict[str, dict]) -> None:
    """A vertical line at each own run's accuracy, named above the panel, where no dot lies (no legend to look
    up; the panel is its architecture's, so its pre-trained comparison needs no name)."""
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for label, run in references.items():
        x, style = 100 * run["acc"], styles[label]
        ax.axvline(x, linewidth=1.2, zorder=2, **style)
        ax.text(x, 1.02, "pre-trained" if run["role"] == "pre-trained" else f"{run['role']} {label}", transform=top,
                rotation=90, ha="center", va="bottom", fontsize=SMALL, color=style["color"])


def accuracy_bars(rows: list[dict]) -> Figure:
    """Final test accuracy (all test images) per configuration: its seeds as dots, their mean as a black tick
    and written right of the panel. Takes a study's rows (grouped here over seeds) or its configurations.

    The teacher-stage runs (each in its own run, at its own image size) in a top panel, then a panel per student
    architecture, all on one accuracy axis. Dot colour: what the student learned from (real only, + generated,
    + ideal). In a student's panel, a line at each own-run accuracy it is read against, named beside it: the
    teachers its configurations cite and its pre-trained comparison.
    """
    configs = _configurations(rows)
    students = [c for c in configs if c.get("stage") == "distill"]
    if not any(c.get("test_acc_values") for c in students):
        return note_figure("Test accuracy per configuration", "no distill runs with a test accuracy in this study yet")
    own_runs = _own_runs(configs)
    # (title, row labels, (colour key, seed values in %) per row, own runs to read against) per panel
    panels = [("teacher-stage runs, each in its own run",
               [_own_run_label(label, run) for label, run in own_runs.items()],
               [("own run", [100 * v for v in run["values"]]) for run in own_runs.values()], {})] if own_runs else []
    for student, mine in group_by(students, lambda c: str(c.get("student"))).items():
        mine = sorted(mine, key=configuration_order)
        panels.append((_student_title(student, mine), [_student_label(c) for c in mine],
                       [(data_kind(c), [100 * v for v in c.get("test_acc_values") or []]) for c in mine],
                       _references(mine, own_runs)))
    heights = [len(labels) for _, labels, _, _ in panels]
    fig = new_figure(8.6, 1.6 + sum(0.3 * h + 0.45 for h in heights))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, height_ratios=[h + 1.5 for h in heights])[:, 0]
    colours = {**data_colours(students), "own run": REFERENCE_COLOUR}
    styles = panel_styles((refs for *_, refs in panels), REFERENCE_STYLES)  # an own run keeps its dash throughout
    for ax, (title, labels, entries, refs), style in zip(axes, panels, styles):
        ax.set_title(title, loc="left")
        _reference_lines(ax, refs, style)
        _mark_rows(ax, entries, colours)
        ax.set_yticks(np.arange(len(entries))[::-1], labels)
    every = [v for _, _, entries, _ in panels for _, values in entries for v in values]
    low, high = min(every), max(every)
    axes[0].set_xlim(max(0.0, low - 0.06 * (high - low) - 0.5), min(100.0, high + 0.04 * (high - low) + 0.5))
    axes[-1].set_xlabel(f"test accuracy (%, {evaluated_images(students)})")
    handles = [Line2D([], [], marker="o", linestyle="none", color=colour, markeredgecolor="black",
                      label=kind if kind != "own run" else "teacher-stage run (own run)")
               for kind, colour in colours.items() if kind != "own run" or own_runs]
    handles.append(Line2D([], [], marker="|", markersize=14, markeredgewidth=2.2, linestyle="none", color="black",
                          label="mean over seeds (written right)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=SMALL, frameon=False)
    fig.suptitle("Final test accuracy per configuration: each seed a dot")
    return fig


_STUDENT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
_GAP_POINTS = 10.0  # runs below a gap this wide (points) are left out of the axes and named instead


def _far_below(values: list[float]) -> float:
    """The value under which runs lie far below the rest: below the first gap wider than ``_GAP_POINTS``
    (from the top) of the sorted values; -inf when there is none."""
    ordered = sorted(values, reverse=True)
    for upper, lower in zip(ordered, ordered[1:]):
        if upper - lower > _GAP_POINTS:
            return upper
    return -math.inf


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


def _agreement_panels(points: list[dict]) -> dict[str, list[dict]]:
    """A panel per distiller, or per distiller and student when a distiller's points would make more than
    ``MAX_SERIES`` series (student × data) with its teacher lines."""
    points = sorted(points, key=lambda row: row.get("distiller") != "none")  # the no-teacher panel first
    by_distiller = group_by(points, lambda row: str(row.get("distiller")))

    def series(rows: list[dict]) -> int:
        return len({(str(r.get("student")), data_kind(r)) for r in rows}) + len(_teacher_references(rows))

    if all(series(rows) <= MAX_SERIES for rows in by_distiller.values()):
        return by_distiller
    return group_by(points, lambda row: f"{row.get('distiller')}, student {row.get('student')}")


def _off_axes_note(ax, hidden: list[dict]) -> None:
    """Name the runs left out of the axes (far below the rest), lower left inside the panel."""
    if not hidden:
        return
    lowest = min(hidden, key=lambda row: as_number(row["test_acc"]))
    text = (f"{len(hidden)} run{'s' if len(hidden) > 1 else ''} far below, not shown:\n{lowest['run']} "
            f"({100 * as_number(lowest['agreement']):.1f}% agreement, {100 * as_number(lowest['test_acc']):.1f}% "
            f"accuracy{', the lowest' if len(hidden) > 1 else ''})")
    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=SMALL, va="bottom",
            bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})


def agreement_vs_accuracy(rows: list[dict]) -> Figure:
    """Final top-1 agreement with the teacher (x) against final test accuracy (y), both on all test images:
    one point per distill run, a panel per distiller (all panels on the same axes), without point text.

    Colour: what the student learned from (real only, + generated, + ideal: the ``holdout`` generator's real
    images); marker: the student architecture; each teacher a horizontal line at its accuracy on the students'
    inputs (``teacher_test_acc``), what agreement is measured against. Runs far below the rest (below a gap of
    10 points, e.g. a diverged distiller) are named in their panel instead of squeezing the others together.
    """
    points = [row for row in rows if row.get("stage") == "distill"
              and not (math.isnan(as_number(row.get("agreement"))) or math.isnan(as_number(row.get("test_acc"))))]
    if not points:
        return note_figure("Agreement vs accuracy", "no run with both agreement and test accuracy yet")
    floors = {key: _far_below([100 * as_number(r[key]) for r in points]) for key in ("agreement", "test_acc")}

    def on_axes(row: dict) -> bool:
        return all(100 * as_number(row[key]) >= floor for key, floor in floors.items())

    colours = data_colours(points)
    markers = {s: _STUDENT_MARKERS[i % len(_STUDENT_MARKERS)]
               for i, s in enumerate(dict.fromkeys(str(r.get("student")) for r in points))}
    teachers = _teacher_references(points)
    teacher_styles = reference_styles(teachers)
    panels = _agreement_panels(points)
    fig, axes = panel_grid(len(panels), panel=(3.6, 3.3), sharex=True, sharey=True)
    for ax, (title, mine) in zip(axes, panels.items()):
        for (student, kind), group in group_by(filter(on_axes, mine),
                                               lambda r: (str(r.get("student")), data_kind(r))).items():
            ax.scatter(as_percent(r["agreement"] for r in group), as_percent(r["test_acc"] for r in group),
                       color=colours[kind], marker=markers[student], s=40, alpha=0.75, edgecolors="black",
                       linewidths=0.6, zorder=3)
        for label in _teacher_references(mine):
            ax.axhline(100 * teachers[label], linewidth=1.2, zorder=1, **teacher_styles[label])
        _off_axes_note(ax, [r for r in mine if not on_axes(r)])
        ax.set(title="no teacher (distiller none)" if title == "none" else f"distiller {title}",
               xlabel="top-1 agreement with the teacher (%)", ylabel="student test accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.tick_params(labelbottom=True, labelleft=True)  # shared axes, yet every panel reads alone
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker="o", linestyle="none", color=colour, markeredgecolor="black", label=kind)
               for kind, colour in colours.items()]
    handles += [Line2D([], [], marker=marker, linestyle="none", color="white", markeredgecolor="black",
                       label=f"student {student}") for student, marker in markers.items()]
    handles += [Line2D([], [], label=label, **teacher_styles[label]) for label in teachers]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=SMALL, frameon=False)
    fig.suptitle(f"Fidelity vs accuracy: one point per run (final models, both on {evaluated_images(points)})")
    return fig
