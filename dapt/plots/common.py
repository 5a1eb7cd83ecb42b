"""What every figure shares: atomic PNG writes, numbers from metrics.json made plottable, a note panel.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so they never touch
pyplot's global state: nothing leaks across the many figures of a batch run and nothing is shown
twice in a notebook (show one with ``display(fig)`` or by ending a cell with it).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dapt.core.files import atomic_path
from dapt.core.ranks import is_main

_DPI = 110
PANEL_SIZE = (4.6, 3.4)


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (temp file + rename), creating the folder; in a run
    of several processes only rank 0 writes."""
    if not is_main():
        return Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)


def as_number(value) -> float:
    """A plottable float: None (undefined metric, e.g. in metrics.json) becomes nan."""
    return math.nan if value is None else float(value)


def _as_floats(values) -> list[float]:
    """Floats from a list, numpy array or tensor, None turned into nan."""
    return [as_number(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def as_percent(values) -> np.ndarray:
    return 100.0 * np.array(_as_floats(values), dtype=float)


def note_figure(title: str, note: str) -> Figure:
    """A one-axes figure carrying a message, so a report of a study still in progress renders."""
    fig = Figure(figsize=PANEL_SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def student_colours(rows: list[dict]) -> dict[str, str]:
    """One matplotlib colour per student architecture, in order of first appearance, so a student
    keeps its colour across the figures of a report."""
    students = dict.fromkeys(str(row.get("student")) for row in rows)
    return {student: f"C{index % 10}" for index, student in enumerate(students)}


def evaluated_images(rows: list[dict]) -> str:
    """ "all 10,000 test images" when every row that says so agrees, else "all test images"."""
    totals = {as_count(row.get("test_images")) for row in rows} - {None}
    return f"all {totals.pop():,} test images" if len(totals) == 1 else "all test images"


def as_count(value) -> int | None:
    """A whole number of images from metrics.json, None when absent or not a number."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
