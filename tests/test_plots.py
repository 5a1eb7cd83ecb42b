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
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dapt.plots import run as plots, study as study_plots  # noqa: E402
from dapt.plots.common import save_figure
from dapt.training.agreement import reliability_bins  # noqa: E402
from dapt.core.errors import DaptError  # noqa: E402
from projects import load_benchmark  # noqa: E402

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


def legend_texts(legend) -> list[str]:
    """The labels as a reader takes them in: a label wrapped over lines (plots.common.legend_below) as one line."""
    return [text.get_text().replace("\n", " ") for text in legend.get_texts()]


OUTSIDE = "training images outside train_subset"
VALIDATION = f"validation (1,000 {OUTSIDE})"


def teacher_metrics(**extra) -> dict:
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 * e, "val_acc": 0.25 * e, "lr": 0.1}
               for e in (1, 2, 3)]
    return {"status": "done", "stage": "teacher", "history": history, "val_images": 1000, "val_source": OUTSIDE,
            "test_images": 10000, "test_acc": 0.711, "image_size": 48, **extra}


def distill_metrics(**extra) -> dict:
    history = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.6, "lr": 0.1,
                "val_agreement": 0.7 + 0.05 * e, "val_kl": 0.3 / e, "loss_ce": 0.5, "loss_kd": 0.5} for e in (1, 2)]
    history[0]["val_kl"] = None  # a metric that was not computed must not break the plot
    return {"status": "done", "stage": "distill", "history": history, "val_images": 1000, "val_source": OUTSIDE,
            "test_images": 10000, "image_size": 32, "teacher_image_size": 48, "test_acc": 0.62, "agreement": 0.812,
            "teacher_val_acc": 0.842, "teacher_test_acc": 0.8508, "teacher_run_test_acc": 0.8659, **extra}


def older(metrics: dict, eval_images: int) -> dict:
    """``metrics`` as recorded before the validation set (the epochs evaluated on ``eval_images`` test images),
    as benchmarks/migrate_records.py rewrote such records in the current keys."""
    names = {"val_acc": "test_acc", "val_agreement": "agreement", "val_kl": "kl", "teacher_val_acc": "teacher_eval_acc"}
    history = [{names.get(k, k): v for k, v in entry.items()} for entry in metrics["history"]]
    kept = {names.get(k, k): v for k, v in metrics.items() if k not in ("val_images", "val_source")}
    return load_benchmark("migrate_records").migrated({**kept, "history": history, "eval_images": eval_images})


def stars(ax) -> list:
    return [line for line in ax.lines if line.get_marker() == "*"]


def test_training_curves_on_validation_images_say_so_and_mark_the_final_test_accuracy(close_after):
    fig = plots.training_curves(teacher_metrics())
    close_after(fig)
    render(fig)
    loss_ax, acc_ax = fig.axes
    assert len(fig.axes) == 2 and len(loss_ax.lines) == 1
    assert legend_texts(acc_ax.get_legend()) == ["train (augmented batches, epoch mean)", VALIDATION,
                                                 "final, all 10,000 test images: 71.1%"]
    assert acc_ax.lines[1].get_ydata().tolist() == pytest.approx([25, 50, 75])  # shown in %
    [star] = stars(acc_ax)
    assert star.get_xydata().tolist() == [[3, pytest.approx(71.1)]]  # at the last epoch
    assert "%" in acc_ax.get_ylabel() and "48 px" in acc_ax.get_title()


def test_training_curves_of_an_older_run_on_all_test_images_say_so_and_need_no_final_marker(close_after):
    fig = plots.training_curves(older(teacher_metrics(), eval_images=10000))
    close_after(fig)
    render(fig)
    acc_ax = fig.axes[1]
    assert legend_texts(acc_ax.get_legend()) == ["train (augmented batches, epoch mean)", "test (all 10,000 images)"]
    assert acc_ax.lines[1].get_ydata().tolist() == pytest.approx([25, 50, 75])
    assert stars(acc_ax) == []  # the last point already is the all-images accuracy


def test_training_curves_of_an_older_run_on_a_test_subset_mark_the_final_all_images_accuracy(close_after):
    fig = plots.training_curves(older(teacher_metrics(), eval_images=1000))
    close_after(fig)
    render(fig)
    acc_ax = fig.axes[1]
    texts = legend_texts(acc_ax.get_legend())
    assert "test (1,000 of 10,000 images)" in texts
    assert "final, all 10,000 test images: 71.1%" in texts
    [star] = stars(acc_ax)
    assert star.get_xydata().tolist() == [[3, pytest.approx(71.1)]]


def test_training_curves_distill_run_labels_teacher_line_and_fidelity_images(close_after):
    fig = plots.training_curves(distill_metrics())
    close_after(fig)
    render(fig)
    assert len(fig.axes) == 4  # loss, accuracy, agreement, and KL on a twin axis
    acc_ax, agree_ax, kl_ax = fig.axes[1], fig.axes[2], fig.axes[3]
    [teacher_line] = [line for line in acc_ax.lines if line.get_linestyle() == "--"]
    assert teacher_line.get_ydata()[0] == pytest.approx(84.2)  # teacher_val_acc, not teacher_test_acc
    assert teacher_line.get_label() == f"teacher, {VALIDATION}, resized to 48 px: 84.2%"
    assert "final, all 10,000 test images: 62.0%" in legend_texts(acc_ax.get_legend())
    assert agree_ax.lines[0].get_ydata().tolist() == pytest.approx([75, 80])
    [agreement_star] = stars(agree_ax)
    assert agreement_star.get_ydata()[0] == pytest.approx(81.2)
    assert kl_ax.lines[0].get_xydata().tolist() == [[2, pytest.approx(0.15)]]  # epoch 1 has no kl: not drawn
    assert legend_texts(agree_ax.get_legend()) == [f"top-1 agreement, {VALIDATION}",
                                                   "final, all 10,000 test images: 81.2%",
                                                   f"KL(teacher ‖ student), {VALIDATION}"]


def test_training_curves_of_an_older_distill_run_read_its_test_subset_keys(close_after):
    fig = plots.training_curves(older(distill_metrics(), eval_images=1000))
    close_after(fig)
    render(fig)
    acc_ax, agree_ax, kl_ax = fig.axes[1], fig.axes[2], fig.axes[3]
    [teacher_line] = [line for line in acc_ax.lines if line.get_linestyle() == "--"]
    assert teacher_line.get_label() == "teacher, test (1,000 of 10,000 images), resized to 48 px: 84.2%"
    assert agree_ax.lines[0].get_ydata().tolist() == pytest.approx([75, 80])
    assert kl_ax.lines[0].get_xydata().tolist() == [[2, pytest.approx(0.15)]]
    assert legend_texts(agree_ax.get_legend())[0] == "top-1 agreement, test (1,000 of 10,000 images)"


def test_training_curves_teacher_at_the_students_size_is_not_called_resized(close_after):
    fig = plots.training_curves(distill_metrics(teacher_image_size=32))
    close_after(fig)
    [teacher_line] = [line for line in fig.axes[1].lines if line.get_linestyle() == "--"]
    assert teacher_line.get_label() == f"teacher, {VALIDATION}: 84.2%"


def test_training_curves_of_a_run_in_progress_have_no_final_mark_yet(close_after):
    metrics = {**teacher_metrics(), "status": "running", "history": teacher_metrics()["history"][:1]}
    del metrics["test_acc"]
    fig = plots.training_curves(metrics)
    close_after(fig)
    render(fig)
    acc_ax = fig.axes[1]
    assert legend_texts(acc_ax.get_legend())[1] == VALIDATION
    assert stars(acc_ax) == []


@pytest.mark.parametrize("metrics, label", [(teacher_metrics(), "validation images"),
                                            (older(teacher_metrics(), 1000), "test images")])
def test_training_curves_without_any_image_counts_still_plot(close_after, metrics, label):
    fig = plots.training_curves({"history": metrics["history"], "val_source": metrics["val_source"]})
    close_after(fig)
    render(fig)
    assert legend_texts(fig.axes[1].get_legend())[1] == label


@pytest.mark.parametrize("metrics", [{}, {"status": "running", "history": []}])
def test_training_curves_of_empty_history_is_a_note(close_after, metrics):
    fig = plots.training_curves(metrics)
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
    {"run": "lite2_ft", "stage": "teacher", "model": "efficientnet_lite2", "init": "ft", "image_size": 48,
     "test_acc": 0.89},
    {"run": "mnv2_ft", "stage": "teacher", "model": "mobilenet_v2", "init": "ft", "image_size": 32,
     "test_acc": 0.875},
    {"run": "scratch", "stage": "distill", "student": "mobilenet_v2", "distiller": "none", "image_size": 32,
     "test_acc": 0.80, "agreement": None, "teacher_run": None},
    {"run": "kd", "stage": "distill", "student": "mobilenet_v2", "distiller": "kd", "image_size": 32,
     "test_acc": 0.83, "agreement": 0.88, "teacher_run": "lite2_ft", "teacher_image_size": 48,
     "teacher_test_acc": 0.85, "teacher_run_test_acc": 0.89, "test_images": 10000},
    {"run": "r18_kd", "stage": "distill", "student": "resnet18", "distiller": "kd", "image_size": 32,
     "test_acc": 0.86, "agreement": 0.91, "teacher_run": "other_teacher", "teacher_image_size": 64,
     "teacher_test_acc": 0.90, "teacher_run_test_acc": 0.92, "test_images": 10000},
    {"run": "r18_scratch", "stage": "distill", "student": "resnet18", "distiller": "none", "image_size": 32,
     "test_acc": 0.85, "agreement": float("nan")},
    {"run": "crd", "stage": "distill", "student": "mobilenet_v2", "distiller": "crd", "image_size": 32,
     "test_acc": None, "agreement": None, "teacher_run": "lite2_ft"},
    {"run": "report", "stage": "report"},
]


def tick_labels(ax) -> list[str]:
    """The row labels of a panel of ``accuracy_bars``, top to bottom."""
    return [label.get_text() for label in sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])]


def seed_dots(ax) -> list[list[float]]:
    """(accuracy, row) of every seed dot of a panel: the round markers (the mean is a "|")."""
    return sorted(point for c in ax.collections if c.get_sizes()[0] < 100 for point in c.get_offsets().tolist())


def reference_lines(ax) -> dict[str, float]:
    """Name written beside each vertical reference line of a panel -> its accuracy."""
    names = {round(text.get_position()[0], 6): text.get_text() for text in ax.texts if text.get_rotation() == 90}
    return {names[round(line.get_xdata()[0], 6)]: line.get_xdata()[0] for line in ax.lines}


def test_report_accuracy_bars_panel_per_student_with_the_teacher_stage_runs_on_top(close_after):
    fig = study_plots.accuracy_bars(STUDY_ROWS)
    close_after(fig)
    render(fig)
    own, mnv2, r18 = fig.axes
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "teacher-stage runs, each in its own run", "student mobilenet_v2 (32 px)", "student resnet18 (32 px)"]
    assert own.get_shared_x_axes().joined(own, r18)  # one accuracy axis for every panel
    # own-run accuracies only, each at its own size: never the teacher on the students' inputs (85 / 90)
    assert tick_labels(own) == ["lite2_ft (teacher, 48 px)", "mnv2_ft (pre-trained, 32 px)",
                                "other_teacher (teacher, 64 px)"]
    assert [x for x, _ in seed_dots(own)] == pytest.approx([87.5, 89, 92])
    # the no-teacher baseline first; the failed run keeps its row, "n/a" instead of a mean
    assert tick_labels(mnv2) == ["scratch (no teacher)", "crd", "kd"]
    assert tick_labels(r18) == ["r18_scratch (no teacher)", "r18_kd"]
    np.testing.assert_allclose(seed_dots(mnv2), [[80, 2], [83, 0]])
    assert [t.get_text() for t in mnv2.texts if t.get_rotation() == 0] == ["80.0", "n/a", "83.0"]
    assert "all 10,000 test images" in r18.get_xlabel()


def test_report_accuracy_bars_name_the_own_runs_each_student_is_read_against(close_after):
    fig = study_plots.accuracy_bars(STUDY_ROWS)
    close_after(fig)
    own, mnv2, r18 = fig.axes
    # mobilenet_v2: its teacher, and the pre-trained mobilenet_v2 (the paper's comparison point)
    assert reference_lines(mnv2) == {"teacher lite2_ft": pytest.approx(89), "pre-trained": pytest.approx(87.5)}
    assert reference_lines(r18) == {"teacher other_teacher": pytest.approx(92)}
    assert reference_lines(own) == {}
    assert not any(ax.get_legend() for ax in fig.axes)  # named where they are drawn, not in a legend


def test_report_accuracy_bars_teacher_without_a_recorded_size(close_after):
    rows = [{"run": "t", "stage": "teacher", "test_acc": 0.9},
            {"run": "s", "stage": "distill", "student": "m", "distiller": "kd", "test_acc": 0.8, "teacher_run": "t"}]
    fig = study_plots.accuracy_bars(rows)
    close_after(fig)
    assert tick_labels(fig.axes[0]) == ["t (teacher)"]
    assert reference_lines(fig.axes[1]) == {"teacher t": pytest.approx(90)}


def seeded_rows() -> list[dict]:
    """Three seeds of kd on real images, on real + ddpm and on real + ideal images, and of the baseline."""
    rows = [{"run": "teacher", "stage": "teacher", "model": "resnet18", "init": "ft", "test_acc": 0.9,
             "params": {"model": "resnet18", "seed": 0}}]
    for name, distiller, generator, base in (("none", "none", None, 0.70), ("kd", "kd", None, 0.74),
                                             ("kd_ddpm", "kd", "ddpm", 0.72), ("kd_ideal", "kd", "holdout", 0.76)):
        for seed in range(3):
            rows.append({"run": f"{name}_s{seed}", "stage": "distill", "student": "mobilenet_v2",
                         "distiller": distiller, "teacher_run": "teacher", "test_acc": base + 0.01 * seed,
                         "agreement": base + 0.05 + 0.01 * seed, "teacher_test_acc": 0.88, "n_real": 600,
                         "n_synthetic": 600 if generator else 0, "generator": generator,
                         "synthetic_run": generator and f"{generator}_run",
                         "params": {"distiller": distiller, "synthetic": generator, "seed": seed}})
    return rows


def test_report_accuracy_bars_one_row_per_configuration_its_seeds_as_dots_coloured_by_data(close_after):
    fig = study_plots.accuracy_bars(seeded_rows())
    close_after(fig)
    render(fig)
    _, students = fig.axes
    assert tick_labels(students) == ["none_s{0,1,2} (no teacher)", "kd_s{0,1,2}", "kd_ddpm_s{0,1,2}",
                                     "kd_ideal_s{0,1,2}"]
    assert len(seed_dots(students)) == 12
    colours = {tuple(c.get_facecolor()[0][:3]): sorted({y for _, y in c.get_offsets().tolist()})
               for c in students.collections if c.get_sizes()[0] < 100}
    assert sorted(colours.values()) == [[0], [1], [2, 3]]  # rows from the bottom: ideal, ddpm, real only (2)
    legend = legend_texts(fig.legends[0])
    assert {"real only", "+ generated (ddpm)", "+ ideal (held-out real)"} <= set(legend)
    means = [t.get_text() for t in students.texts if t.get_rotation() == 0]
    assert means == ["71.0", "75.0", "73.0", "77.0"]


def test_report_accuracy_bars_takes_configurations_as_they_are(close_after):
    from dapt.analysis.configurations import configurations
    fig = study_plots.accuracy_bars(configurations(seeded_rows()))
    close_after(fig)
    assert len(seed_dots(fig.axes[1])) == 12


def scatter_points(fig) -> list[list[float]]:
    return sorted(point for ax in fig.axes for c in ax.collections for point in c.get_offsets().tolist())


def test_report_agreement_vs_accuracy_has_no_point_text_and_marks_the_teacher(close_after):
    fig = study_plots.agreement_vs_accuracy(STUDY_ROWS)
    close_after(fig)
    render(fig)
    (ax,) = fig.axes  # one distiller (kd): one panel
    assert ax.get_title() == "distiller kd"
    np.testing.assert_allclose(scatter_points(fig), [[88, 83], [91, 86]])  # runs without agreement skipped
    assert len(ax.texts) == 0
    assert sorted(line.get_ydata()[0] for line in ax.lines) == pytest.approx([85, 90])
    legend = legend_texts(fig.legends[0])
    # the teacher on the students' inputs: what agreement is measured against
    assert {"teacher lite2_ft on the students' inputs (32 px resized to 48 px): 85.0%",
            "teacher other_teacher on the students' inputs (32 px resized to 64 px): 90.0%"} <= set(legend)
    assert {"student mobilenet_v2", "student resnet18", "real only"} <= set(legend)
    assert "all 10,000 test images" in fig.get_suptitle()


def test_report_agreement_vs_accuracy_panel_per_distiller_colour_per_data_marker_per_student(close_after):
    rows = seeded_rows() + [dict(row, run=f"r18_{row['run']}", student="resnet18") for row in seeded_rows()
                            if row["stage"] == "distill"]
    fig = study_plots.agreement_vs_accuracy(rows)
    close_after(fig)
    render(fig)
    assert [ax.get_title() for ax in fig.axes] == ["no teacher (distiller none)", "distiller kd"]
    _, kd = fig.axes
    looks = {(tuple(c.get_facecolor()[0][:3]), c.get_paths()[0].vertices.round(3).tobytes()): len(c.get_offsets())
             for c in kd.collections}
    assert len(looks) == 6 and set(looks.values()) == {3}  # 2 students × 3 data kinds, 3 seeds each
    assert len({colour for colour, _ in looks}) == 3 and len({marker for _, marker in looks}) == 2
    legend = legend_texts(fig.legends[0])
    assert {"real only", "+ generated (ddpm)", "+ ideal (held-out real)", "student mobilenet_v2",
            "student resnet18"} <= set(legend)


def close_rows(n: int = 12) -> list[dict]:
    """``n`` runs within half a point of each other, three students × four distillers, and one far below."""
    students, distillers = ["mobilenet_v2", "resnet18", "lite0"], ["none", "kd", "crd", "align_uniform"]
    rows = [{"run": f"r{i}", "stage": "distill", "student": students[i % 3], "distiller": distillers[i // 3 % 4],
             "test_acc": 0.72 + 0.0004 * i, "agreement": 0.75 + 0.0003 * i, "teacher_run": "t",
             "image_size": 32, "teacher_image_size": 32, "teacher_test_acc": 0.85} for i in range(n)]
    rows.append({"run": "diverged", "stage": "distill", "student": "resnet18", "distiller": "kd",
                 "test_acc": 0.30, "agreement": 0.31, "teacher_run": "t", "image_size": 32,
                 "teacher_image_size": 32, "teacher_test_acc": 0.85})
    return rows


def test_report_agreement_vs_accuracy_names_a_run_far_below_instead_of_squeezing_the_rest(close_after):
    fig = study_plots.agreement_vs_accuracy(close_rows())
    close_after(fig)
    render(fig)
    assert len(scatter_points(fig)) == 12  # the diverged run is not drawn...
    kd = next(ax for ax in fig.axes if ax.get_title() == "distiller kd")
    (note,) = kd.texts  # ...but named in its panel
    assert "1 run far below, not shown" in note.get_text() and "diverged (31.0% agreement" in note.get_text()
    low, high = kd.get_ylim()
    assert low > 70 and high < 90  # the runs and the teacher (85%), not down to 30%
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out, as when it is saved
    renderer = canvas.get_renderer()
    legend_box = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:  # the legend is outside every axes, so it covers no point
        assert not legend_box.overlaps(ax.get_window_extent(renderer))
    assert len(legend_texts(fig.legends[0])) == 1 + 3 + 1  # data kind, students, teacher: not one per run


def test_report_plots_of_a_study_without_results_are_notes(close_after):
    for fig in (study_plots.accuracy_bars(STUDY_ROWS[:2]), study_plots.agreement_vs_accuracy([])):
        close_after(fig)
        render(fig)
        assert len(fig.axes[0].texts) == 1


def test_figures_stay_out_of_pyplot_state(close_after):
    before = plt.get_fignums()
    close_after(plots.training_curves({"history": [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5,
                                                      "test_acc": 0.5}]}))
    assert plt.get_fignums() == before


def test_save_figure_writes_png_atomically_into_new_folder(tmp_path, close_after):
    fig = plots.per_class_agreement_bars([0.5, 0.6, 0.7], CLASSES)
    close_after(fig)
    target = tmp_path / "run" / "figures" / "agreement.png"
    saved = save_figure(fig, target)
    assert saved.path == target and target.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in target.parent.iterdir()] == ["agreement.png"]
    # a notebook shows the file's very bytes, under its name alone (no absolute path in a record)
    assert saved._repr_mimebundle_() == {"image/png": target.read_bytes()}
    assert repr(saved) == "<figure agreement.png>"


def test_a_notebook_shows_the_saved_png_and_no_second_drawing(tmp_path, close_after):
    from IPython.core.formatters import DisplayFormatter

    fig = plots.per_class_agreement_bars([0.5, 0.6, 0.7], CLASSES)
    close_after(fig)
    drawn = []
    fig.canvas.mpl_connect("draw_event", drawn.append)
    saved = save_figure(fig, tmp_path / "agreement.png")
    draws_to_save = len(drawn)
    data, _ = DisplayFormatter().format(saved)
    assert data["image/png"] == (tmp_path / "agreement.png").read_bytes()
    assert data["text/plain"] == "<figure agreement.png>"
    assert draws_to_save > 0 and len(drawn) == draws_to_save, "the figure was drawn again to be shown"


def test_save_figure_leaves_no_temp_file_on_failure(tmp_path, close_after, monkeypatch):
    fig = plots.per_class_agreement_bars([0.5, 0.6, 0.7], CLASSES)
    close_after(fig)

    def broken_savefig(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(OSError):
        save_figure(fig, tmp_path / "figures" / "broken.png")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
