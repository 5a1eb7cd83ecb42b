"""Plots: structure of each figure from tiny synthetic inputs, NaN/None handling, PNG writing."""
from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dapt import plots  # noqa: E402
from dapt.agreement import reliability_bins  # noqa: E402
from dapt.errors import DaptError  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["t-shirt", "trouser", "pullover"]


@pytest.fixture
def close_after():
    figures: list[Figure] = []
    yield figures.append
    for fig in figures:
        plt.close(fig)


def render(fig: Figure) -> None:
    """Draw the figure with Agg: layout and text problems only surface at draw time."""
    fig.savefig(io.BytesIO(), format="png")


def test_training_curves_plain_run_has_loss_and_accuracy_panels(close_after):
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 * e, "test_acc": 0.25 * e, "lr": 0.1}
               for e in (1, 2, 3)]
    fig = plots.training_curves(history)
    close_after(fig)
    render(fig)
    loss_ax, acc_ax = fig.axes
    assert len(fig.axes) == 2
    assert len(loss_ax.lines) == 1 and len(acc_ax.lines) == 2
    assert acc_ax.lines[1].get_ydata().tolist() == pytest.approx([25, 50, 75])  # shown in %
    assert "%" in acc_ax.get_ylabel()


def test_training_curves_distill_run_adds_teacher_line_and_fidelity_panel(close_after):
    history = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.6, "lr": 0.1,
                "agreement": 0.7 + 0.05 * e, "kl": 0.3 / e, "teacher_test_acc": 0.9} for e in (1, 2)]
    history[0]["kl"] = None  # a metric that was not computed must not break the plot
    fig = plots.training_curves(history)
    close_after(fig)
    render(fig)
    assert len(fig.axes) == 4  # loss, accuracy, agreement, and KL on a twin axis
    acc_ax, agree_ax, kl_ax = fig.axes[1], fig.axes[2], fig.axes[3]
    teacher_line = [line for line in acc_ax.lines if line.get_linestyle() == "--"]
    assert len(teacher_line) == 1 and teacher_line[0].get_ydata()[0] == pytest.approx(90)
    assert agree_ax.lines[0].get_ydata().tolist() == pytest.approx([75, 80])
    assert math.isnan(kl_ax.lines[0].get_ydata()[0])
    assert len(agree_ax.get_legend().get_texts()) == 2


def test_training_curves_of_empty_history_is_a_note(close_after):
    fig = plots.training_curves([])
    close_after(fig)
    assert "no epoch" in fig.axes[0].texts[0].get_text()


def test_per_class_agreement_bars_with_teacher_and_missing_class(close_after):
    fig = plots.per_class_agreement_bars(torch.tensor([0.9, float("nan"), 0.5]), CLASSES, [0.95, 0.8, None])
    close_after(fig)
    render(fig)
    (ax,) = fig.axes
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([90, 0, 50, 95, 80, 0])
    assert [text.get_text() for text in ax.texts] == ["n/a"]
    assert [label.get_text() for label in ax.get_xticklabels()] == CLASSES


def test_per_class_agreement_bars_rejects_wrong_length(close_after):
    with pytest.raises(DaptError):
        plots.per_class_agreement_bars([0.5, 0.5], CLASSES)


def test_prediction_matrix_plot_annotates_counts_and_normalises_rows(close_after):
    matrix = torch.tensor([[8, 2, 0], [0, 0, 0], [1, 1, 3]])
    fig = plots.prediction_matrix_plot(matrix, CLASSES)
    close_after(fig)
    render(fig)
    ax, colorbar_ax = fig.axes
    assert [text.get_text() for text in ax.texts] == ["8", "2", "0", "0", "0", "0", "1", "1", "3"]
    shares = ax.images[0].get_array()
    assert shares[0].tolist() == pytest.approx([0.8, 0.2, 0.0])
    assert shares[1].tolist() == [0.0, 0.0, 0.0]  # a class the teacher never predicts
    assert "73.3%" in ax.get_title()  # (8 + 0 + 3) / 15


def test_prediction_matrix_plot_rejects_mismatched_names(close_after):
    with pytest.raises(DaptError):
        plots.prediction_matrix_plot(np.zeros((2, 2)), CLASSES)


def test_reliability_diagram_has_two_panels_with_diagonal_and_gap_bars(close_after):
    labels = torch.tensor([0, 0, 0, 1])
    teacher = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 0.5], [0.0, 3.0]])
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    bins_teacher, bins_student = reliability_bins(teacher, labels, 5), reliability_bins(student, labels, 5)
    fig = plots.reliability_diagram(bins_teacher, bins_student)
    close_after(fig)
    render(fig)
    assert len(fig.axes) == 2
    for ax, bins in zip(fig.axes, (bins_teacher, bins_student)):
        filled = sum(1 for count in bins["count"] if count)
        assert len(ax.patches) == 2 * filled  # accuracy bar + gap bar per non-empty bin
        assert ax.lines[0].get_xydata().tolist() == [[0, 0], [1, 1]]
    # student: every sample at confidence e/(1+e) ≈ 0.731 in bin (0.6, 0.8], accuracy 0.5
    gap = abs(0.5 - math.e / (1 + math.e))
    assert f"ECE {100 * gap:.1f}%" in fig.axes[1].get_title()


STUDY_ROWS = [
    {"run": "lite2_ft", "stage": "teacher", "test_acc": 0.89},
    {"run": "scratch", "stage": "distill", "student": "mobilenet_v2", "distiller": "none",
     "test_acc": 0.80, "agreement": None, "teacher_run": None},
    {"run": "kd", "stage": "distill", "student": "mobilenet_v2", "distiller": "kd", "test_acc": 0.83,
     "agreement": 0.88, "teacher_run": "lite2_ft", "teacher_test_acc": 0.89},
    {"run": "r18_kd", "stage": "distill", "student": "resnet18", "distiller": "kd", "test_acc": 0.86,
     "agreement": 0.91, "teacher_run": "other_teacher", "teacher_test_acc": 0.92},
    {"run": "r18_scratch", "stage": "distill", "student": "resnet18", "distiller": "none",
     "test_acc": 0.85, "agreement": float("nan")},
    {"run": "crd", "stage": "distill", "student": "mobilenet_v2", "distiller": "crd", "test_acc": None,
     "agreement": None, "teacher_run": "lite2_ft"},
    {"run": "report", "stage": "report"},
]


def test_report_accuracy_bars_groups_by_student_and_marks_baselines(close_after):
    fig = plots.report_accuracy_bars(STUDY_ROWS)
    close_after(fig)
    render(fig)
    (ax,) = fig.axes
    names = [label.get_text() for label in ax.get_xticklabels()]
    assert names == ["scratch", "kd", "crd", "r18_scratch", "r18_kd"]  # baseline first in each group
    assert [p.get_height() for p in ax.patches] == pytest.approx([80, 83, 0, 85, 86])
    hatched = [name for name, patch in zip(names, ax.patches) if patch.get_hatch()]
    assert hatched == ["scratch", "r18_scratch"]
    colours = [patch.get_facecolor() for patch in ax.patches]
    assert colours[0] == colours[1] == colours[2] != colours[3] == colours[4]
    teacher_lines = sorted(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--")
    assert teacher_lines == pytest.approx([89, 92])
    assert "n/a" in [text.get_text() for text in ax.texts]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "no teacher (baseline)" in legend and "student resnet18" in legend


def test_report_agreement_vs_accuracy_skips_runs_without_agreement(close_after):
    fig = plots.report_agreement_vs_accuracy(STUDY_ROWS)
    close_after(fig)
    render(fig)
    (ax,) = fig.axes
    points = np.concatenate([collection.get_offsets() for collection in ax.collections])
    np.testing.assert_allclose(sorted(points.tolist()), [[88, 83], [91, 86]])
    assert sorted(text.get_text() for text in ax.texts) == ["kd", "r18_kd"]


def test_report_plots_of_a_study_without_results_are_notes(close_after):
    for fig in (plots.report_accuracy_bars(STUDY_ROWS[:1]), plots.report_agreement_vs_accuracy([])):
        close_after(fig)
        render(fig)
        assert len(fig.axes[0].texts) == 1


def test_figures_stay_out_of_pyplot_state(close_after):
    before = plt.get_fignums()
    close_after(plots.training_curves([{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5}]))
    assert plt.get_fignums() == before


def test_save_figure_writes_png_atomically_into_new_folder(tmp_path, close_after):
    fig = plots.per_class_agreement_bars([0.5, 0.6, 0.7], CLASSES)
    close_after(fig)
    target = tmp_path / "run" / "figures" / "agreement.png"
    assert plots.save_figure(fig, target) == target
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in target.parent.iterdir()] == ["agreement.png"]


def test_save_figure_leaves_no_temp_file_on_failure(tmp_path, close_after, monkeypatch):
    fig = plots.per_class_agreement_bars([0.5, 0.6, 0.7], CLASSES)
    close_after(fig)

    def broken_savefig(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(OSError):
        plots.save_figure(fig, tmp_path / "figures" / "broken.png")
    assert list((tmp_path / "figures").iterdir()) == []
