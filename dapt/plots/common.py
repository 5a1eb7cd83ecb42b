"""What every figure shares: its size and resolution, the series styles, the small multiples, atomic PNG
writes, numbers from metrics.json made plottable, a note panel.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so they never touch
pyplot's global state: nothing leaks across the many figures of a batch run and nothing is shown
twice in a notebook. A notebook shows the PNG that ``save_figure`` wrote (``SavedFigure``), so each figure is
drawn once.

Every figure reads at a notebook's width: saved at most ``MAX_WIDTH_PX`` wide, no text under ``SMALL``
points, at most ``MAX_SERIES`` series on one axes (small multiples beyond that) and no two series of one
axes in the same colour and line style (``series_styles``).
"""
from __future__ import annotations

import io
import itertools
import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterable, TypeVar

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dapt.analysis.rows import IDEAL, is_synthetic
from dapt.core.files import atomic_path
from dapt.core.ranks import is_main

DPI = 120  # the figure's own and its PNG's, so the notebook shows what figures/*.png holds
MAX_WIDTH_PX = 1600
WIDTH = 10.8  # inches (1,296 px): the widest figure, whose text still reads when shown ~800 px wide
PANEL_SIZE = (3.6, 2.9)  # inches: one panel; three side by side make WIDTH
SMALL = 9  # points: the smallest text of any figure (legends, annotations)
LEGEND_CHARS = 44  # characters of SMALL text a line of a legend under one panel holds (PANEL_SIZE wide)
MAX_SERIES = 8

# tab10 without its grey, which marks references (teachers, teacher-stage runs); solid, then dashed:
# 18 (colour, line style) pairs, more than the MAX_SERIES of one axes.
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:olive", "tab:cyan")
STYLES = tuple({"color": colour, "linestyle": style} for style in ("-", "--") for colour in COLOURS)
# Reference lines (a teacher, the no-teacher baseline) are black or grey, each of one axes in its own dash.
REFERENCE_STYLES = tuple({"color": colour, "linestyle": style} for colour in ("black", "dimgrey", "darkgrey")
                         for style in ("--", ":", "-."))
REFERENCE_COLOUR = "grey"

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure at ``DPI``, never wider than ``WIDTH``."""
    fig = Figure(figsize=(min(width, WIDTH), height), dpi=DPI, layout="constrained")
    # 6 pt, not matplotlib's 3, at the sides: the label of a right-hand twin axis lands ~2 px past 3 pt
    fig.get_layout_engine().set(w_pad=6 / 72)
    return fig


def legend_below(ax: Axes, handles: list | None = None) -> None:
    """A legend under ``ax``, its labels wrapped to the panel's width: a label wider than its panel makes
    constrained layout squeeze the axes of the whole row to nothing."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    labels = [textwrap.fill(h.get_label(), LEGEND_CHARS, break_long_words=False, break_on_hyphens=False)
              for h in handles]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=SMALL)


def panel_grid(n: int, panel: tuple[float, float] = PANEL_SIZE, columns: int = 3, fill: bool = False,
               **subplots) -> tuple[Figure, list[Axes]]:
    """Small multiples: ``n`` panels of size ``panel``, wrapped into as few rows of at most ``columns`` (and as
    many as ``WIDTH`` holds) as they need, balanced (4 panels: 2 × 2), widened to fill ``WIDTH`` with
    ``fill``; the spare cells of the last row stay empty. Returns the figure and the n axes."""
    rows = math.ceil(n / max(1, min(columns, int(WIDTH // panel[0]))))
    columns = math.ceil(n / rows)
    fig = new_figure(WIDTH if fill else panel[0] * columns, panel[1] * rows)
    axes = list(fig.subplots(rows, columns, squeeze=False, **subplots).ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def series_styles(keys: Iterable[K], styles: tuple[dict, ...] = STYLES) -> dict[K, dict]:
    """One (colour, line style) per key, in order of first appearance, as keyword arguments of ``plot``:
    ``styles`` in turn, so up to 18 keys (``STYLES``) never share a look."""
    return {key: styles[index % len(styles)] for index, key in enumerate(dict.fromkeys(keys))}


def reference_styles(keys: Iterable[K]) -> dict[K, dict]:
    """One black or grey dash per reference line (teachers, baselines), in order of first appearance."""
    return series_styles(keys, REFERENCE_STYLES)


def panel_styles(panels: Iterable[Iterable[K]], styles: tuple[dict, ...] = STYLES) -> list[dict[K, dict]]:
    """``series_styles`` for the keys of each panel: one mapping for the whole figure, so a key keeps its look
    from panel to panel, unless the figure has more keys than ``styles``: then each panel its own, as
    the series of one axes must never share a look."""
    panels = [list(keys) for keys in panels]
    shared = series_styles((key for keys in panels for key in keys), styles)
    if len(shared) <= len(styles):
        return [shared] * len(panels)
    return [series_styles(keys, styles) for keys in panels]


def wrap_groups(groups: list[list[T]], limit: int = MAX_SERIES, shared: int = 0) -> list[list[T]]:
    """``groups`` packed in order into as few panels as hold them, about as full as each other, each of at most
    ``limit`` items with ``shared`` slots kept for items every panel repeats (a baseline); a group larger than
    a panel is cut."""
    room = max(1, limit - shared)
    pieces = [group[start:start + room] for group in groups for start in range(0, len(group), room)]
    target = math.ceil(sum(map(len, pieces)) / math.ceil(sum(map(len, pieces)) / room))
    panels: list[list[T]] = []
    for piece in pieces:
        if panels and len(panels[-1]) + len(piece) <= target:
            panels[-1] += piece
        else:
            panels.append(list(piece))
    return panels


NAMED_CLASSES = 20  # beyond this many classes an axis names every few classes by index: names would not read


def label_classes(ax, class_names: list[str], axis: str = "x") -> None:
    """The classes as tick labels of ``axis``: their names (slanted beyond six), or beyond ``NAMED_CLASSES``
    every few classes by index, the axis label saying so."""
    n, set_ticks = len(class_names), (ax.set_xticks if axis == "x" else ax.set_yticks)
    if n > NAMED_CLASSES:
        ticks = list(range(0, n, math.ceil(n / 10)))
        set_ticks(ticks, [str(t) for t in ticks])
        label = ax.xaxis.label if axis == "x" else ax.yaxis.label
        label.set_text(f"{label.get_text()} (class index)".strip())
    elif axis == "x" and n > 6:
        set_ticks(range(n), class_names, rotation=45, ha="right")
    else:
        set_ticks(range(n), class_names)


_ANNOTATED_CLASSES = 12  # up to this many classes a matrix cell holds its count legibly (at SMALL points)


def class_matrix(counts: np.ndarray, class_names: list[str], *, title: str, xlabel: str, ylabel: str,
                 share_of: str) -> Figure:
    """A [C, C] matrix of counts, rows × columns: colour the row-normalised share ("share of ``share_of``"),
    each cell's count written while the cells hold it."""
    c = len(class_names)
    totals = counts.sum(1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = min(8.0, max(PANEL_SIZE[0] + 1.4, 0.45 * c + 2.5))
    fig = new_figure(side, side * 0.85)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label=f"share of {share_of}")
    if c <= _ANNOTATED_CLASSES:
        for (row, col), count in np.ndenumerate(counts):
            ax.text(col, row, f"{count:.0f}", ha="center", va="center", fontsize=SMALL,
                    color="white" if share[row, col] > 0.5 else "black")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    label_classes(ax, class_names, "x")
    label_classes(ax, class_names, "y")
    return fig


@dataclass(frozen=True)
class SavedFigure:
    """A figure written as the PNG ``png`` at ``path``. A notebook shows those very bytes (end a cell with it, or
    ``display`` it): the figure is drawn once, not again by the inline backend, and the report shows the file."""
    path: Path
    png: bytes | None  # None in a process other than rank 0, which writes nothing

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, bytes]:
        return {"image/png": self.png} if self.png is not None else {}

    def __repr__(self) -> str:  # the text beside the image: the file's name, never a machine's absolute path
        return f"<figure {self.path.name}>"


def save_figure(fig: Figure, path: str | os.PathLike) -> SavedFigure:
    """Write ``fig`` as a PNG at ``path`` atomically (temp file + rename), creating the folder; in a run
    of several processes only rank 0 writes."""
    if not is_main():
        return SavedFigure(Path(path), None)
    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", dpi=DPI)
    with atomic_path(path) as tmp:
        tmp.write_bytes(drawn.getvalue())
    return SavedFigure(Path(path), drawn.getvalue())


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
    fig = new_figure(*PANEL_SIZE)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def synthetic_source(row: dict) -> str:
    """Where a student's added images come from: "ideal" for the ``holdout`` generator (real images outside
    its subset: what a perfect generator would draw), else its generator ("ddpm"), or, in a row without it
    (not read through ``Summary``), its generate run."""
    generator = row.get("generator")
    return "ideal" if generator == IDEAL else str(generator or row.get("synthetic_run") or "synthetic")


def data_kind(row: dict) -> str:
    """What a student learned from: "real only", "+ generated (ddpm)" or "+ ideal (held-out real)"."""
    if not is_synthetic(row):
        return "real only"
    source = synthetic_source(row)
    return "+ ideal (held-out real)" if source == "ideal" else f"+ generated ({source})"


def data_colours(rows: list[dict]) -> dict[str, str]:
    """A colour per ``data_kind`` of ``rows``: real only blue, ideal green, generated sets the next colours,
    so a kind keeps its colour in every figure of a report."""
    kinds = sorted({data_kind(row) for row in rows},
                   key=lambda kind: (kind != "real only", kind.startswith("+ ideal"), kind))
    spare = itertools.cycle(c for c in COLOURS if c not in ("tab:blue", "tab:green"))
    return {kind: "tab:blue" if kind == "real only" else "tab:green" if kind.startswith("+ ideal") else next(spare)
            for kind in kinds}


def configuration_order(row: dict) -> tuple:
    """Sort key of a student's configurations: the no-teacher baseline first, then by distiller, real images
    before added ones, fewer added images first, then fewer epochs."""
    kind = data_kind(row)
    return (row.get("distiller") != "none", str(row.get("distiller")), kind != "real only", kind,
            as_number(row.get("n_synthetic") or 0), as_number(row.get("epochs")))


def group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` grouped by ``key``, groups and members in order of first appearance."""
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def evaluated_images(rows: list[dict]) -> str:
    """ "all 10,000 test images" when every row that says so agrees, else "all test images"."""
    totals = {as_count(row.get("test_images")) for row in rows} - {None}
    return f"all {totals.pop():,} test images" if len(totals) == 1 else "all test images"


def as_count(value) -> int | None:
    """A whole number of images from metrics.json, None when absent or not a number."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
