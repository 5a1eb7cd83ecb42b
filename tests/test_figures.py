"""Every figure a notebook shows reads at a notebook's width: the report's figures of committed studies, the
run figures of committed runs (and of tiny inputs where a run's arrays are not recorded), a generate run's.

The rules (``dapt.plots.common``): the PNG saved and the one the notebook shows at most 1,600 px wide; no
text under 9 points once the figure is shown at most 1,600 px wide, at a resolution where 9 points are at
least 12.5 px (9 pt at 100 dpi), and none cut off at the figure's edge; at most 8 series on one axes, and no
two of them alike in colour, line style and marker.
"""
from __future__ import annotations

import io
import json
import struct
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from dapt.analysis.summary import Summary  # noqa: E402
from dapt.plots import generate as generate_plots, run as run_plots, seeds as seed_plots, study as study_plots  # noqa: E402
from dapt.plots.common import MAX_SERIES, MAX_WIDTH_PX, SMALL, save_figure  # noqa: E402
from dapt.training import agreement as A  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("fashion_ideal", "fashion_paper")
FASHION = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]  # the IHDR chunk: width, height


def series(ax) -> list:
    """What a reader tells apart on one axes: its lines (curves, reference lines) and point clouds; bands and
    error bars go with their series."""
    return [line for line in ax.lines if len(line.get_xdata())] + [
        c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]


def look(artist) -> tuple:
    """Colour, line style and marker: what tells two series of one axes apart."""
    if isinstance(artist, PathCollection):
        return (tuple(np.round(artist.get_facecolor()[0], 3)), "points",
                artist.get_paths()[0].vertices.round(3).tobytes())
    return (tuple(np.round(to_rgba(artist.get_color()), 3)), artist.get_linestyle(), str(artist.get_marker()))


def labels(fig: Figure) -> list[Text]:
    """The words of a figure a reader must see whole: titles, axis labels, notes and legends (tick labels aside:
    matplotlib keeps those of ticks out of view)."""
    texts = list(fig.texts) + [text for legend in fig.legends for text in legend.get_texts()]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        texts += ax.get_legend().get_texts() if ax.get_legend() else []
    return [text for text in texts if text.get_visible() and text.get_text().strip()]


def inside(box, frame, slack: float = 1.0) -> bool:
    return (box.x0 >= frame.x0 - slack and box.x1 <= frame.x1 + slack
            and box.y0 >= frame.y0 - slack and box.y1 <= frame.y1 + slack)


def check_reads(fig: Figure, tmp_path: Path, name: str) -> None:
    """The figure's PNG (saved, which a stage notebook shows, and as the inline backend draws it, as the explorer
    shows its figures), its texts and its axes follow the rules."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = png_width(save_figure(fig, tmp_path / f"{name}.png").png)
        shown = io.BytesIO()
        fig.savefig(shown, format="png", bbox_inches="tight")  # what the inline backend draws for display(fig)
    # e.g. "constrained_layout not applied because axes sizes collapsed to zero": a legend wider than its panel
    assert not caught, f"{name}: {[str(w.message) for w in caught]}"
    widest = max(saved, png_width(shown.getvalue()))
    assert widest <= MAX_WIDTH_PX, f"{name}: {widest} px wide"
    assert fig.dpi * 9 / 72 >= 12.5, f"{name}: {fig.dpi} dpi draws 9 pt under 12.5 px"
    scale = min(1.0, MAX_WIDTH_PX / widest)  # a wider figure would be shrunk to fit, and its text with it
    small = sorted({(t.get_fontsize() * scale, t.get_text()) for t in fig.findobj(Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() * scale < SMALL})
    assert not small, f"{name}: text under {SMALL} pt: {small[:5]}"
    fig.canvas.draw()  # lays the figure out as when it is saved
    cut = [t.get_text() for t in labels(fig) if not inside(t.get_window_extent(), fig.bbox)]
    assert not cut, f"{name}: text cut off at the figure's edge: {cut}"
    for ax in fig.axes:  # e.g. epochs 100 to 250 every 25 on a narrow panel: "100125150175200225250"
        ticks = sorted((t.get_window_extent() for t in ax.get_xticklabels()
                        if t.get_visible() and t.get_text() and t.get_rotation() == 0),  # slanted names may share x
                       key=lambda box: box.x0)
        touching = [(a, b) for a, b in zip(ticks, ticks[1:]) if b.x0 < a.x1 + 2]
        assert not touching, f"{name}, axes {ax.get_title()!r}: x tick labels run together"
    for ax in fig.axes:
        shown_series = series(ax)
        where = f"{name}, axes {ax.get_title() or ax.get_title(loc='left')!r}"
        assert len(shown_series) <= MAX_SERIES, f"{where}: {len(shown_series)} series"
        looks = [look(artist) for artist in shown_series]
        assert len(set(looks)) == len(looks), f"{where}: two series look alike: {looks}"


@pytest.fixture(scope="module", params=STUDIES)
def summary(request) -> Summary:
    return Summary.read(REPO / "runs" / request.param, exclude=("report",))


@pytest.mark.parametrize("name, draw", [
    ("seed_spread", lambda s: seed_plots.seed_spread(s.configurations)),
    ("accuracy_curves", lambda s: seed_plots.accuracy_curves(s.configurations)),
    ("accuracy", lambda s: study_plots.accuracy_bars(s.configurations)),
    ("agreement_vs_accuracy", lambda s: study_plots.agreement_vs_accuracy(s.rows)),
])
def test_report_figures_of_a_committed_study_read_at_a_notebooks_width(summary, name, draw, tmp_path):
    check_reads(draw(summary), tmp_path, name)


def test_curves_of_runs_over_other_images_and_epochs_are_drawn_against_steps(tmp_path):
    """fashion_ideal's students took 3, 5, 15 and 30 epochs over 600 to 6,600 images for about the same steps:
    their curves end within 15% of each other on the steps axis."""
    fig = seed_plots.accuracy_curves(Summary.read(REPO / "runs/fashion_ideal", exclude=("report",)).configurations)
    ends = [line.get_xdata()[-1] for ax in fig.axes[:-1] for line in ax.lines]
    assert {ax.get_xlabel() for ax in fig.axes} == {"training steps (batches)"}
    assert max(ends) <= 1.15 * min(ends)


def test_agreement_figure_of_the_ideal_study_tells_what_each_student_learned_from(tmp_path):
    fig = study_plots.agreement_vs_accuracy(Summary.read(REPO / "runs/fashion_ideal", exclude=("report",)).rows)
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert {"real only", "+ generated (ddpm)", "+ ideal (held-out real)"} <= set(legend)
    assert all(ax.get_title().startswith(("distiller", "no teacher")) for ax in fig.axes)


@pytest.mark.parametrize("run", ["fashion_ideal/lite0_kd_ideal5x_s0", "fashion_ideal/lite2_ft",
                                 "fashion_paper/lite0_kd_s0", "fashion_rich/lite0_kd_s0", "fashion_long/lite0_kd_s0"])
def test_training_curves_of_committed_runs_read_at_a_notebooks_width(run, tmp_path):
    metrics = json.loads((REPO / "runs" / run / "metrics.json").read_text())
    check_reads(run_plots.training_curves(metrics), tmp_path, run.replace("/", "_"))


def predictions(classes: int, n: int = 3000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels, teacher logits right 80% of the time and student logits agreeing with it 80% of the time."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(classes, (n,), generator=g)
    t = torch.where(torch.rand(n, generator=g) < 0.8, y, torch.randint(classes, (n,), generator=g))
    s = torch.where(torch.rand(n, generator=g) < 0.8, t, torch.randint(classes, (n,), generator=g))
    one_hot = torch.nn.functional.one_hot
    return y, one_hot(t, classes).float(), one_hot(s, classes).float()


@pytest.mark.slow  # renders every figure of a run and a generate run twice: seconds each
@pytest.mark.parametrize("classes", [10, 100])
def test_run_and_generate_figures_read_at_a_notebooks_width_with_few_or_many_classes(classes, tmp_path):
    names = FASHION if classes == 10 else [f"a rather long class name {k}" for k in range(classes)]
    y, teacher, student = predictions(classes)
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(classes * 8, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    labels = torch.arange(classes).repeat_interleave(8)
    figures = {
        "per_class_agreement": run_plots.per_class_agreement_bars(
            A.per_class_agreement(teacher, student, y, classes), names, A.per_class_accuracy(teacher, y, classes)),
        "prediction_matrix": run_plots.prediction_matrix_plot(A.prediction_matrix(teacher, student, classes), names),
        "reliability": run_plots.reliability_diagram(A.reliability_bins(teacher * 3, y), A.reliability_bins(student, y)),
        "ddpm_loss": generate_plots.loss_curve([1 / (k + 1) for k in range(40)], 100),
        "samples": generate_plots.sample_grid(images, labels, names),
        "nearest_real": generate_plots.nearest_pairs(images[:classes], images[classes:2 * classes],
                                                     torch.rand(classes, generator=g), names),
        "teacher_per_class": generate_plots.per_class_accuracy_bars(torch.rand(classes, generator=g), names, 0.7),
        "teacher_confusion": generate_plots.confusion_plot(y, teacher.argmax(1), names),
    }
    for name, fig in figures.items():
        check_reads(fig, tmp_path, f"{name}_{classes}")
