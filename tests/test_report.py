"""Report: rows read from metrics.json files, the table's cells, and the study's Summary: its comparisons,
the teacher's headroom, budget and what it leaves untested, asserted on their values; and the committed
fashion_paper report's prose, short and in agreement with its tables."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dapt.analysis import render, rows as report
from dapt.analysis.summary import Summary
from dapt.analysis.curves import TEST_SUBSET
from projects import load_benchmark

REPO = Path(__file__).resolve().parents[1]

PARAMS = {"image_size": 32, "epochs": 3, "train_subset": 6000, "eval_subset": 1000}
OUTSIDE = "training images outside train_subset"


def write_run(study, name: str, metrics: dict) -> None:
    (study / name).mkdir(parents=True)
    (study / name / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


@pytest.fixture
def study(tmp_path):
    """A study in the new metrics.json schema: a teacher, two students of it, one with no teacher,
    one still running, and the report folder itself."""
    write_run(tmp_path, "lite2_ft", {
        "status": "done", "stage": "teacher", "history": [],
        "params": {"model": "efficientnet_lite2", "init": "ft", "image_size": 48, "epochs": 3,
                   "train_subset": 6000, "eval_subset": 1000},
        "test_acc": 0.8659, "best_val_acc": 0.857, "best_epoch": 3, "val_images": 1000, "val_source": OUTSIDE,
        "test_images": 10000, "wall_time_s": 126.25, "model": "efficientnet_lite2", "init": "ft", "image_size": 48})
    student = {"status": "done", "stage": "distill", "history": [], "image_size": 32,
               "test_acc": 0.7312, "best_val_acc": 0.74, "best_epoch": 4, "val_images": 1000, "val_source": OUTSIDE,
               "test_images": 10000, "wall_time_s": 101.0, "ece": 0.0649,
               "teacher_run": "runs/study/lite2_ft", "teacher_model": "efficientnet_lite2", "teacher_init": "ft",
               "teacher_image_size": 48, "teacher_run_test_acc": 0.8659, "teacher_test_acc": 0.8508,
               "teacher_val_acc": 0.842, "agreement": 0.7525, "agreement_teacher_right": 0.8,
               "agreement_teacher_wrong": 0.4, "kl": 0.465, "teacher_ece": 0.0257, "cka": 0.758}
    write_run(tmp_path, "mnv2_kd", {**student, "student": "mobilenet_v2", "distiller": "kd",
                                    "params": {**PARAMS, "epochs": 4, "student": "mobilenet_v2", "distiller": "kd"}})
    write_run(tmp_path, "mnv2_none_compared", {**student, "student": "mobilenet_v2", "distiller": "none",
                                               "test_acc": 0.7111,
                                               "params": {**PARAMS, "student": "mobilenet_v2", "distiller": "none",
                                                          "teacher": "runs/study/lite2_ft"}})
    write_run(tmp_path, "mnv2_none", {
        "status": "done", "stage": "distill", "history": [], "image_size": 32, "student": "mobilenet_v2",
        "distiller": "none", "params": {**PARAMS, "student": "mobilenet_v2", "distiller": "none"},
        "test_acc": 0.70, "val_images": 1000, "val_source": OUTSIDE, "test_images": 10000, "wall_time_s": 50.0,
        "ece": 0.02})
    write_run(tmp_path, "mnv2_crd", {"status": "running", "stage": "distill", "history": [],
                                     "params": {**PARAMS, "image_size": 40, "student": "mobilenet_v2",
                                                "distiller": "crd", "teacher": "runs/study/lite2_ft"}})
    write_run(tmp_path, "report", {"status": "done", "stage": "report", "params": {}, "history": []})
    (tmp_path / "notes.txt").write_text("not a run", encoding="utf-8")
    return tmp_path


def by_run(rows: list[dict]) -> dict[str, dict]:
    return {row["run"]: row for row in rows}


def test_collect_reads_the_new_keys(study):
    rows = report.collect(study, exclude=("report",))
    assert [row["run"] for row in rows] == ["lite2_ft", "mnv2_crd", "mnv2_kd", "mnv2_none", "mnv2_none_compared"]
    runs = by_run(rows)
    teacher = runs["lite2_ft"]
    assert (teacher["stage"], teacher["model"], teacher["init"], teacher["image_size"]) == \
        ("teacher", "efficientnet_lite2", "ft", 48)
    assert teacher["test_acc"] == 0.8659 and teacher["best_val_acc"] == 0.857 and teacher["val_images"] == 1000
    assert teacher["val_source"] == OUTSIDE and "eval_images" not in teacher
    kd = runs["mnv2_kd"]
    assert kd["teacher_run"] == "lite2_ft"  # the folder name, not the repo-relative path
    assert (kd["teacher_test_acc"], kd["teacher_run_test_acc"], kd["teacher_val_acc"]) == (0.8508, 0.8659, 0.842)
    assert (kd["image_size"], kd["teacher_image_size"], kd["epochs"], kd["train_subset"]) == (32, 48, 4, 6000)
    assert (kd["agreement"], kd["kl"], kd["cka"], kd["ece"]) == (0.7525, 0.465, 0.758, 0.0649)
    assert "best_test_acc" not in kd
    alone = runs["mnv2_none"]
    assert alone["teacher_run"] is None and alone["teacher_test_acc"] is None and alone["agreement"] is None


def test_runs_recorded_before_the_validation_set_are_migrated_once_and_labelled_as_on_test_images(tmp_path):
    """runs/ kept records whose epochs were evaluated on a test subset: test_acc per epoch, eval_images,
    best_eval_acc, teacher_eval_acc. benchmarks/migrate_records.py rewrote them once in the current keys (a second
    pass changes nothing); read then, their curves say test, new ones validation."""
    from dapt.analysis.budget import plateau
    from dapt.analysis.configurations import configurations
    from dapt.analysis.curves import on_test_images, per_epoch_images

    for name, key, extra in (("older", "test_acc", {"eval_images": 1000, "best_eval_acc": 0.65,
                                                    "teacher_eval_acc": 0.8}),
                             ("newer", "val_acc", {"val_images": 1000, "val_source": OUTSIDE, "best_val_acc": 0.65,
                                                   "teacher_val_acc": 0.8})):
        history = [{"epoch": e, "train_acc": 0.5, key: 0.5 + 0.05 * e} for e in (1, 2, 3)]  # still rising
        write_run(tmp_path, name, {"status": "done", "stage": "distill", "history": history, "test_acc": 0.6,
                                   "test_images": 10000, "student": "mobilenet_v2", "distiller": "kd",
                                   "params": {**PARAMS, "student": "mobilenet_v2", "distiller": "kd", "lr": name},
                                   **extra})
    newer_text = (tmp_path / "newer" / "metrics.json").read_text()
    migrate = load_benchmark("migrate_records")
    migrate.main([str(tmp_path)])
    migrated_text = (tmp_path / "older" / "metrics.json").read_text()
    record = json.loads(migrated_text)
    assert not {"eval_images", "best_eval_acc", "teacher_eval_acc"} & set(record)
    assert (record["val_images"], record["val_source"]) == (1000, TEST_SUBSET)
    assert [entry["val_acc"] for entry in record["history"]] == [0.55, 0.6, 0.65]
    assert (tmp_path / "newer" / "metrics.json").read_text() == newer_text  # already current: untouched
    migrate.main([str(tmp_path)])
    assert (tmp_path / "older" / "metrics.json").read_text() == migrated_text  # once: a second pass changes nothing
    configs = {c["run"]: c for c in configurations(report.collect(tmp_path))}
    older, newer = configs["older"], configs["newer"]
    for config in (older, newer):
        assert (config["best_val_acc"], config["teacher_val_acc"]) == (0.65, 0.8)
    assert per_epoch_images(older) == "test (1,000 of 10,000 images)"
    assert per_epoch_images(newer) == "validation (1,000 training images outside train_subset)"
    for config, on in ((older, "test"), (newer, "validation")):
        verdict = plateau(config["history"], on_test_images(config))
        assert (verdict.on, verdict.status, verdict.last_acc) == (on, "still improving", pytest.approx(0.65))
    assert "| validation |" in render.plateau_table(Summary.read(tmp_path))


def test_collect_keeps_a_run_in_progress_with_what_its_params_say(study):
    running = by_run(report.collect(study))["mnv2_crd"]
    assert running["status"] == "running" and running["test_acc"] is None
    assert (running["student"], running["distiller"], running["image_size"], running["epochs"]) == \
        ("mobilenet_v2", "crd", 40, 3)


def test_collect_without_exclude_still_skips_report_and_non_runs(study):
    assert "report" not in by_run(report.collect(study)) and "notes.txt" not in by_run(report.collect(study))


def table_cells(rows: list[dict]) -> tuple[list[str], dict[str, dict[str, str]]]:
    head, rule, *body = report.markdown_table(rows).splitlines()
    titles = [cell.strip() for cell in head.strip("|").split("|")]
    cells = {}
    for line in body:
        values = [cell.strip() for cell in line.strip("|").split("|")]
        cells[values[0]] = dict(zip(titles, values))
    return titles, cells


def test_markdown_table_names_image_size_teacher_and_which_accuracy(study):
    titles, cells = table_cells(report.collect(study))
    assert titles[:7] == ["run", "student", "px", "teacher (init, px)", "distiller", "training images",
                          "test acc % (all test images, at px)"]
    assert "teacher acc % (on this run's test images)" in titles
    teacher = cells["lite2_ft"]
    assert teacher["px"] == "48" and teacher["test acc % (all test images, at px)"] == "86.59"  # its own run
    assert teacher["teacher (init, px)"] == "— (own run: ImageNet, fine-tuned)"
    assert teacher["teacher acc % (on this run's test images)"] == "–"
    kd = cells["mnv2_kd"]
    assert kd["px"] == "32" and kd["teacher (init, px)"] == "lite2_ft: efficientnet_lite2 (ft), 48 px"
    assert kd["test acc % (all test images, at px)"] == "73.12"
    assert kd["teacher acc % (on this run's test images)"] == "85.08"  # not the teacher's own 86.59
    assert kd["agreement %"] == "75.25" and kd["KL(t‖s)"] == "0.465" and kd["epochs"] == "4"
    assert cells["mnv2_none"]["teacher (init, px)"] == "— (no teacher)"
    assert cells["mnv2_none_compared"]["teacher (init, px)"].endswith("compared with, not distilled from")
    assert cells["mnv2_crd"]["test acc % (all test images, at px)"] == "–"
    assert kd["training images"] == "6,000 real" and teacher["training images"] == "6,000 real"


def teacher_row(run: str, model: str, acc: float | None, init: str = "ft", size: int = 32) -> dict:
    return {"run": run, "stage": "teacher", "student": model, "model": model, "init": init, "test_acc": acc,
            "image_size": size, "test_images": 10000, "epochs": 3, "train_subset": 6000}


def student_row(run: str, student: str, distiller: str, acc: float | None, epochs: int = 3,
                train_subset: int | None = 6000, size: int = 32) -> dict:
    return {"run": run, "stage": "distill", "student": student, "distiller": distiller, "test_acc": acc,
            "image_size": size, "test_images": 10000, "epochs": epochs, "train_subset": train_subset,
            "batch_size": 128}


def summarise(rows: list[dict], generated: list[dict] = ()) -> Summary:
    return Summary.of(rows, generated, paper_epochs=250, short_budget_epochs=50)


def gaps(summary: Summary, claim: str) -> dict[str, float]:
    """A run → its gap in points (A − B) for every comparison of ``claim``."""
    return {c.a: round(c.welch.gap_pt, 2) for c in summary.comparisons if c.claim == claim}


def test_each_distiller_against_no_teacher_and_pretraining_with_one_seed():
    rows = [teacher_row("lite0_ft", "lite0", 0.80), teacher_row("lite2_ft", "lite2", 0.8659, size=48),
            student_row("l_none", "lite0", "none", 0.70), student_row("l_kd", "lite0", "kd", 0.72),
            student_row("l_crd", "lite0", "crd", 0.75)]
    summary = summarise(rows)
    assert [(c.claim, c.group, c.a, c.b) for c in summary.comparisons] == [
        ("no teacher", "lite0", "l_kd", "l_none"), ("no teacher", "lite0", "l_crd", "l_none"),
        ("pre-training", "lite0", "l_kd", "lite0_ft"), ("pre-training", "lite0", "l_crd", "lite0_ft")]
    assert gaps(summary, "no teacher") == {"l_kd": 2.0, "l_crd": 5.0}
    assert gaps(summary, "pre-training") == {"l_kd": -8.0, "l_crd": -5.0}
    # one seed: the gap is reported, never judged
    assert {(c.welch.verdict, c.welch.p) for c in summary.comparisons} == {("unknown", None)}
    assert summary.seed_counts == [1] and summary.test_images == 10000 and summary.untested == []
    [h] = summary.headroom  # no teacher accuracy recorded in l_crd: its lead is unknown
    assert (h.student, h.teacher_acc, h.lead_pt, h.low_pt, h.interval) == ("l_crd", None, None, None, None)
    assert "lead over the pre-trained model is unknown" in render.headroom_line(h)
    assert (summary.budget.epochs, summary.budget.kind) == ((3, 3), "short")


def distilled(run: str, distiller: str, acc: float, teacher_acc: float | None, own_acc: float | None = None) -> dict:
    """A lite0 student of the teacher "big", which scores ``teacher_acc`` on the students' test images."""
    return {**student_row(run, "lite0", distiller, acc), "teacher_run": "big", "teacher_test_acc": teacher_acc,
            "teacher_run_test_acc": own_acc}


def test_headroom_is_the_teachers_lead_over_the_pretrained_model():
    rows = [teacher_row("lite0_ft", "lite0", 0.80), teacher_row("big", "lite2", 0.87, size=48),
            distilled("l_kd", "kd", 0.72, 0.85), distilled("l_crd", "crd", 0.75, 0.85)]
    [h] = summarise(rows).headroom
    # T = 85 on the students' images (not the teacher's own 87), P = 80 (one run: no interval)
    assert (h.student, h.pretrained, h.teacher, h.teacher_on, h.teacher_n) == ("l_crd", "lite0_ft", "big", "students",
                                                                               1)
    assert h.lead_pt == pytest.approx(5.0) and (h.low_pt, h.high_pt, h.interval) == (None, None, None)
    line = render.headroom_line(h)
    assert line == ("Headroom, lite0: teacher big scores 85.00% on the students' test images, +5.00 points against "
                    "the pre-trained lite0_ft (no interval: one pre-trained run); a student that at best matches its "
                    "teacher passes the pre-trained model by at most that.")


@pytest.mark.parametrize("teacher, lead, bound", [
    (0.90, 10.0, "passes the pre-trained model by at most that"),
    (0.80, 0.0, "does not pass the pre-trained model"),  # a tie: no headroom
    (0.78, -2.0, "does not pass the pre-trained model"),  # the teacher behind the pre-trained model
])
def test_headroom_ahead_level_or_behind(teacher, lead, bound):
    [h] = summarise([teacher_row("lite0_ft", "lite0", 0.80), distilled("l_kd", "kd", 0.75, teacher)]).headroom
    assert h.lead_pt == pytest.approx(lead) and bound in render.headroom_line(h)


def test_headroom_falls_back_to_the_teachers_own_run():
    rows = [teacher_row("lite0_ft", "lite0", 0.80), distilled("l_kd", "kd", 0.74, None, own_acc=0.86)]
    [h] = summarise(rows).headroom
    assert (h.teacher_on, h.teacher_acc, h.lead_pt) == ("own run", 0.86, pytest.approx(6.0))
    assert "scores 86.00% in its own run" in render.headroom_line(h)


def test_a_loss_and_a_tie_are_signed():
    rows = [student_row("n", "m", "none", 0.6995), student_row("k", "m", "kd", 0.6878),
            student_row("c", "m", "crd", 0.6995)]
    assert gaps(summarise(rows), "no teacher") == {"k": -1.17, "c": 0.0}
    assert (render.points(-1.17), render.points(0.0), render.points(-0.001)) == ("−1.17", "+0.00", "+0.00")


def test_without_a_pretrained_run_or_a_baseline_the_claims_are_untested():
    summary = summarise([teacher_row("big", "lite2", 0.90), student_row("m_kd", "mnv2", "kd", 0.73)])
    assert summary.comparisons == [] and summary.headroom == []
    assert summary.untested == [("mnv2", "no teacher"), ("mnv2", "pre-training")]


def test_failed_runs_are_named_and_the_rest_compared():
    rows = [teacher_row("m_ft", "mnv2", None), student_row("m_none", "mnv2", "none", 0.71),
            student_row("m_kd", "mnv2", "kd", None), student_row("m_crd", "mnv2", "crd", 0.72)]
    summary = summarise(rows)
    assert summary.missing == ["m_ft", "m_kd"]
    assert summary.seed_counts == [1]  # a failed run is no seed
    assert gaps(summary, "no teacher") == {"m_crd": 1.0}
    assert summary.untested == [("mnv2", "pre-training")]  # the pre-trained run has no test accuracy


def test_when_every_distilled_student_failed_nothing_is_compared():
    rows = [student_row("m_none", "mnv2", "none", 0.71), student_row("m_kd", "mnv2", "kd", None),
            teacher_row("m_ft", "mnv2", 0.80)]
    summary = summarise(rows)
    assert summary.comparisons == [] and summary.untested == [] and summary.missing == ["m_kd"]


@pytest.mark.parametrize("epochs, kind", [([3, 4], "short"), ([49], "short"), ([250, 250], "paper"),
                                          ([100], "between"), ([50], "between"), ([3, 250], "mixed")])
def test_budget_against_the_report_settings(epochs, kind):
    rows = [student_row(f"s{i}", "m", "kd", 0.7, epochs=e) for i, e in enumerate(epochs)]
    budget = summarise(rows).budget
    assert (budget.epochs, budget.kind) == ((min(epochs), max(epochs)), kind)
    assert (budget.paper_epochs, budget.short_epochs) == (250, 50)


def test_budget_is_the_report_stages_parameters_and_ignores_the_teachers_epochs():
    rows = [{**teacher_row("t", "big", 0.9), "epochs": 250}, student_row("s", "m", "kd", 0.7, epochs=100)]
    assert Summary.of(rows, paper_epochs=100, short_budget_epochs=10).budget.kind == "paper"
    assert Summary.of(rows, paper_epochs=400, short_budget_epochs=200).budget.kind == "short"
    assert Summary.of(rows).budget.kind == "unknown"  # no settings: no verdict on the budget
    unrecorded = [{k: v for k, v in student_row("a", "m", "kd", 0.7).items() if k != "epochs"}]
    assert summarise(unrecorded).budget.epochs is None and summarise(unrecorded).budget.kind == "unknown"


def test_a_study_without_students_has_nothing_to_conclude():
    summary = summarise([teacher_row("t", "big", 0.9)])
    assert summary.students == [] and summary.comparisons == []
    assert len(render.prose(summary)) == 1


def test_summary_of_collected_rows(study):
    summary = Summary.read(study, paper_epochs=250, short_budget_epochs=50)
    # mnv2_kd trained 4 epochs, the `none` baselines 3: not a fair comparison, so none is made
    assert summary.comparisons == [] and ("mobilenet_v2", "no teacher") in summary.untested
    assert summary.missing == ["mnv2_crd"] and summary.budget.epochs == (3, 4)


def test_summary_reads_the_settings_its_report_run_recorded(study):
    write_run(study, "report_2", {"status": "done", "stage": "report", "history": [],
                                  "params": {"paper_epochs": 90, "short_budget_epochs": 4}})
    (study / "report" / "metrics.json").unlink()  # the fixture's report run recorded no settings
    budget = Summary.read(study).budget
    assert (budget.paper_epochs, budget.short_epochs, budget.kind) == (90, 4, "mixed")
    assert Summary.read(study, paper_epochs=3, short_budget_epochs=2).budget.kind == "paper"


VALIDATION_RECORD = {"teacher_val_acc": 0.842, "val_images": 1000, "val_source": "training images outside train_subset",
                     "best_val_acc": 0.99}
OLDER_RECORD = {"teacher_val_acc": 0.842, "val_images": 1000, "val_source": TEST_SUBSET,  # before the validation set
                "best_val_acc": 0.99}


@pytest.mark.parametrize("per_epoch, images", [
    (VALIDATION_RECORD, "validation (1,000 training images outside train_subset)"),
    (OLDER_RECORD, "test (1,000 of 10,000 images)"),
])
def test_run_summary_labels_each_teacher_accuracy_with_its_images_and_size(per_epoch, images):
    metrics = {"stage": "distill", "test_acc": 0.7312, "image_size": 32, "teacher_image_size": 48,
               "teacher_run": "runs/study/lite2_ft", "teacher_run_test_acc": 0.8659, "teacher_test_acc": 0.8508,
               "test_images": 10000, "agreement": 0.7525, "kl": 0.465, **per_epoch}
    lines = report.run_summary(metrics).splitlines()
    assert lines == [
        " 73.12%  student test accuracy (all 10,000 test images, 32 px)",
        " 86.59%  teacher lite2_ft, its own run (all 10,000 test images, 48 px)",
        " 85.08%  teacher on this run's test inputs (all 10,000 test images, 32 px resized to 48 px): "
        "what agreement is measured against",
        f" 84.20%  teacher on the per-epoch images: {images}, 32 px resized to 48 px; the curves' dashed line",
        " 75.25%  top-1 agreement with the teacher (all 10,000 test images)",
        "  0.465  KL(teacher ‖ student) in nats (all 10,000 test images)",
    ]  # the best per-epoch accuracy (99%) is not put beside the all-images numbers


def test_run_summary_of_a_run_without_teacher_or_results():
    assert report.run_summary({"stage": "distill", "test_acc": 0.7, "test_images": 10000, "image_size": 32}) == \
        " 70.00%  student test accuracy (all 10,000 test images, 32 px)"
    assert report.run_summary({"stage": "distill", "history": []}) == "no final numbers yet"



def synthetic_row(run: str, distiller: str, acc: float, real: int, synthetic: int, epochs: int = 3) -> dict:
    """A student row on real + synthetic images (batch size 128, as the real-only rows of these tests)."""
    return {**student_row(run, "mnv2", distiller, acc, epochs=epochs, train_subset=real), "n_real": real,
            "n_synthetic": synthetic, "synset_size": f"{synthetic // real}x", "synthetic_run": "ddpm"}


def test_synthetic_runs_are_compared_with_their_real_only_twin_at_each_data_size():
    rows = [teacher_row("m_ft_600", "mnv2", 0.74) | {"train_subset": 600},
            student_row("none_600", "mnv2", "none", 0.70, train_subset=600),
            student_row("kd_600", "mnv2", "kd", 0.72, train_subset=600),
            synthetic_row("kd_600_1x", "kd", 0.755, 600, 600),
            synthetic_row("kd_600_2x", "kd", 0.71, 600, 1200),
            student_row("none_6000", "mnv2", "none", 0.80), student_row("kd_6000", "mnv2", "kd", 0.81),
            synthetic_row("kd_6000_1x", "kd", 0.815, 6000, 6000),
            student_row("kd_6000_long", "mnv2", "kd", 0.83, epochs=6)]
    # a real-only student of another teacher is no twin: the teacher would differ as well as the images
    other_teacher = student_row("kd_600_lp", "mnv2", "kd", 0.60, train_subset=600) | {"teacher_run": "m_lp"}
    gains = {g["run"]: g for g in report.synthetic_gains([other_teacher] + rows)}
    assert gains["kd_600_1x"]["real_run"] == "kd_600" and round(gains["kd_600_1x"]["gain_pt"], 2) == 3.5
    assert gains["kd_600_2x"]["step_ratio"] == 3.5  # 14 batches of 128 an epoch against 4
    assert gains["kd_6000_1x"]["real_run"] == "kd_6000"
    # kd_6000_long trained on the real images for as many steps as kd_6000_1x (6 x 46 = 3 x 93 ± 5%)
    long = gains["kd_6000_1x"]
    assert long["same_steps_run"] == "kd_6000_long" and round(long["same_steps_gain_pt"], 2) == -1.5
    assert "same_steps_run" not in gains["kd_600_1x"]

    summary = summarise(rows)
    synthetic = [c for c in summary.comparisons if c.claim == "synthetic"]
    assert [(c.group, c.a, c.b, round(c.welch.gap_pt, 2), round(c.step_ratio, 2)) for c in synthetic] == [
        ("mnv2 on 600 real images", "kd_600_1x", "kd_600", 3.5, 2.25),
        ("mnv2 on 600 real images", "kd_600_2x", "kd_600", -1.0, 3.5),
        ("mnv2 on 6,000 real images", "kd_6000_1x", "kd_6000", 0.5, 2.02)]
    [same] = [c for c in summary.comparisons if c.claim == "synthetic vs same steps"]
    assert (same.a, same.b, round(same.welch.gap_pt, 2)) == ("kd_6000_1x", "kd_6000_long", -1.5)
    # the distillation gain compares real-only runs of the same size and epochs only: not kd_6000_long
    assert gaps(summary, "no teacher") == {"kd_600": 2.0, "kd_6000": 1.0}
    # against pre-training, each student of that data size, the synthetic ones too
    assert gaps(summary, "pre-training") == {"kd_600": -2.0, "kd_600_1x": 1.5, "kd_600_2x": -3.0}
    assert summary.untested == [("mnv2 on 6,000 real images", "pre-training")]


def test_a_synthetic_run_with_as_many_steps_as_its_twin_is_its_own_control():
    # 30 epochs x 9 batches of 64 = 270 steps; 15 x (1200 // 64 = 18) = 270; 10 x (1800 // 64 = 28) = 280 (+3.7%)
    real = student_row("au", "mnv2", "align_uniform", 0.765, epochs=30, train_subset=600) | {"batch_size": 64}
    one = synthetic_row("au_1x", "align_uniform", 0.770, 600, 600, epochs=15) | {"batch_size": 64}
    two = synthetic_row("au_2x", "align_uniform", 0.750, 600, 1200, epochs=10) | {"batch_size": 64}
    comps = {c.a: c for c in summarise([real, one, two]).comparisons}
    assert comps["au_1x"].step_ratio == 1.0 and comps["au_2x"].step_ratio == pytest.approx(280 / 270)
    assert {c.claim for c in comps.values()} == {"synthetic"}  # the twin is the same-steps control


def test_a_synthetic_run_with_diffaugment_notes_that_its_twin_had_none():
    rows = [student_row("kd", "mnv2", "kd", 0.72), synthetic_row("kd_syn", "kd", 0.73, 6000, 6000) | {"diffaug": "S"}]
    [c] = [c for c in summarise(rows).comparisons if c.claim == "synthetic"]
    assert c.diffaug == ("S", "none")


def test_data_cell_names_the_synthetic_share():
    row = synthetic_row("x", "kd", 0.7, 600, 1200) | {"diffaug": "S"}
    assert report.data_cell(row) == "600 real + 1,200 synthetic (ddpm, 2x, DiffAugment S)"


def test_generated_sets_get_their_own_rows(study):
    write_run(study, "ddpm", {"status": "done", "stage": "generate", "history": [],
                              "params": {"generator": "ddpm", "train_subset": 600}, "n_images": 1200,
                              "teacher_run": "runs/study/lite2_ft", "teacher_acc_on_synthetic": 0.804,
                              "wall_time_s": 200.0})
    [row] = report.collect_generated(study)
    assert "ddpm" not in by_run(report.collect(study)) and Summary.read(study).generated == [row]
    assert row["data"] == "600 real images" and row["teacher_run"] == "lite2_ft"
    assert "| ddpm | ddpm | 600 real images | 1,200 | lite2_ft | 80.40 | 200 | done |" in \
        report.markdown_table([row], report.GENERATED_COLUMNS)


# ---- the committed fashion_paper report -------------------------------------------------------------

PAPER = REPO / "runs" / "fashion_paper"
SIGNED = re.compile(r"[+−]\d+\.\d\d")


def words(lines: list[str]) -> int:
    return sum(len(line.split()) for line in lines)


def claims_table_rows(summary: Summary) -> list[dict[str, str]]:
    head, _, *body = [line for line in render.claims_table(summary.comparisons).splitlines() if line.startswith("|")]
    titles = [cell.strip() for cell in head.strip("|").split("|")]
    return [dict(zip(titles, (cell.strip() for cell in line.strip("|").split("|")))) for line in body]


def test_fashion_paper_prose_is_short():
    summary = Summary.read(PAPER)
    lines = render.prose(summary)
    # each verdict carries its interval's detectable gap, and the teacher's headroom and the runs' provenance
    # have a line each: still a page's read
    assert words(lines) + words([render.SEED_NOISE_RULE, render.PLATEAU_RULE]) <= 500
    claims = {(c.group, c.claim) for c in summary.comparisons}
    assert lines == (render.claim_sentences(summary) + render.headroom_lines(summary) + render.budget_lines(summary)
                     + render.provenance_lines(summary))
    assert len(render.claim_sentences(summary)) == len(claims)  # one sentence per claim and student group


def test_fashion_paper_claim_sentences_carry_the_claims_tables_numbers():
    summary = Summary.read(PAPER)
    table = claims_table_rows(summary)
    for sentence in render.claim_sentences(summary):
        group, claim = next((c.group, c.claim) for c in summary.comparisons
                            if sentence.startswith(f"{c.group}, {render.CLAIM_TITLES[c.claim]}: "))
        mine = [row for row in table if (row["student"], row["claim"]) == (group, claim)]
        shown = sorted((float(g.replace("−", "-")) for g in SIGNED.findall(sentence)))
        in_table = sorted(float(row["A − B (points)"].replace("−", "-")) for row in mine)
        assert shown == ([in_table[0], in_table[-1]] if len(mine) > 1 else in_table), sentence
        verdicts = [row["verdict"] for row in mine]
        for direction in ("higher", "lower"):
            count = sum(v.startswith(direction) for v in verdicts)
            assert (count > 0) == (f"{direction} beyond seed noise" in sentence), sentence
        # several within noise: the largest of their detectable gaps bounds each
        within = [float(v.split()[4]) for v in verdicts if v.startswith("no gap larger than ")]
        assert (f"no gap larger than {max(within):.1f} points (these seeds)" in sentence if within
                else "no gap larger" not in sentence), sentence
        assert "within seed noise" not in sentence and "no effect" not in sentence


def test_fashion_paper_headroom_line_agrees_with_the_claims_table():
    from scipy import stats

    summary = Summary.read(PAPER)
    [h] = summary.headroom
    [row] = [r for r in claims_table_rows(summary) if r["claim"] == "pre-training" and
             r["A: test acc %"].startswith(f"{h.student}: ")]
    pretrained = float(row["B: test acc %"].split(": ")[1].split(" ")[0])
    assert h.lead_pt == pytest.approx(100 * h.teacher_acc - pretrained, abs=0.011)
    # one teacher run: the one-sample t interval of the pre-trained seeds, shifted to T − P
    [config] = [c for c in summary.configurations if c["run"] == h.pretrained]
    low, high = stats.ttest_1samp(config["test_acc_values"], h.teacher_acc).confidence_interval()
    assert (h.low_pt, h.high_pt) == (pytest.approx(100 * (h.teacher_acc - high)),
                                     pytest.approx(100 * (h.teacher_acc - low)))
    line = render.headroom_line(h)
    assert f"{render.points(h.lead_pt)} points against the pre-trained {h.pretrained}" in line
    assert f"95% interval {render.interval(h.low_pt, h.high_pt)}" in line and "by at most that" in line


def test_the_committed_fashion_paper_report_states_the_summarys_prose():
    recorded = json.loads((PAPER / "report" / "metrics.json").read_text(encoding="utf-8"))
    assert recorded["verdict"] == render.prose(Summary.read(PAPER)), \
        "re-execute the report: dapt run params/fashion_paper.yaml --only report --force"


def seeded(row: dict, accs: tuple[float, ...], **params) -> list[dict]:
    """``row`` once per seed, named ``<run>_s<seed>``, with the params that make its seeds one configuration."""
    return [{**row, "run": f"{row['run']}_s{seed}", "test_acc": acc, "params": {**params, "seed": seed}}
            for seed, acc in enumerate(accs)]


def ideal_study(ideal_10x: tuple[float, ...]) -> Summary:
    """A Lite0 pre-trained at 82%, kd students on 600 real images alone (77%), + 1x DDPM images (76%), + 1x
    ideal images (80%), + 10x ideal images (``ideal_10x``), at 30/15/3 epochs of batches of 64."""
    def student(run, accs, synthetic=None, factor=0, epochs=30):
        row = {**student_row(run, "lite0", "kd", None, epochs=epochs, train_subset=600), "batch_size": 64,
               "teacher_run": "lite2_ft"}
        if synthetic:
            row.update(n_real=600, n_synthetic=600 * factor, synset_size=f"{factor}x", synthetic_run=synthetic)
        return seeded(row, accs, student="lite0", distiller="kd", synthetic=synthetic, factor=factor, epochs=epochs)
    pretrained = seeded(teacher_row("lite0_ft", "lite0", None) | {"train_subset": 600}, (0.819, 0.82, 0.821),
                        model="lite0", init="ft")
    rows = [*pretrained, *student("kd", (0.769, 0.77, 0.771)), *student("kd_ddpm1x", (0.759, 0.76, 0.761), "ddpm", 1, 15),
            *student("kd_ideal1x", (0.799, 0.80, 0.801), "ideal", 1, 15),
            *student("kd_ideal10x", ideal_10x, "ideal", 10, 3)]
    generated = [{"run": "ddpm", "stage": "generate", "generator": "ddpm"},
                 {"run": "ideal", "stage": "generate", "generator": "holdout"}]
    return summarise(rows, generated)


def test_generated_images_are_compared_with_as_many_ideal_ones_and_the_question_is_answered():
    summary = ideal_study((0.789, 0.79, 0.791))
    [shortfall] = [c for c in summary.comparisons if c.claim == "ideal images"]
    assert (shortfall.a, shortfall.b, round(shortfall.welch.gap_pt, 2), shortfall.welch.direction) == (
        "kd_ddpm1x_s{0,1,2}", "kd_ideal1x_s{0,1,2}", -4.0, "lower")
    lines = render.ideal_lines(summary)
    assert lines == [
        "Ideal images vs pre-training, lite0: with 10x ideal images, the distilled random-init student scores "
        "−3.00 points against the pre-trained, fine-tuned lite0_ft_s{0,1,2}; lower beyond seed noise, so at this "
        "budget even an ideal generator does not let distillation reach pre-training.",
        "Generated vs ideal images, lite0: the generated images score −4.00 points against as many ideal ones at "
        "as many steps; lower beyond seed noise; over the real images alone, generated ones add, against ideal "
        "ones, kd: −1.00 against +3.00 points."]
    assert all(line in render.prose(summary) for line in lines)
    assert "| ideal images | lite0 | kd_ddpm1x_s{0,1,2}: 76.00 ± 0.10 (n=3) | kd_ideal1x_s{0,1,2}" in \
        render.claims_table(summary.comparisons)


@pytest.mark.parametrize("ideal_10x, answer", [
    ((0.829, 0.83, 0.831), "lets a distilled random-init student beat the pre-trained one"),
    ((0.80, 0.82, 0.84), "no gap larger than 18.4 points (these seeds), so these seeds cannot tell whether at this "
                         "budget an ideal generator lets distillation reach pre-training")])
def test_the_ideal_answer_follows_the_verdict(ideal_10x, answer):
    assert answer in render.ideal_lines(ideal_study(ideal_10x))[0]


def test_a_study_without_ideal_images_has_no_ideal_lines():
    rows = [teacher_row("lite0_ft", "lite0", 0.80), student_row("l_kd", "lite0", "kd", 0.72),
            synthetic_row("l_kd_1x", "kd", 0.73, 6000, 6000)]
    assert render.ideal_lines(summarise(rows, [{"run": "ddpm", "stage": "generate", "generator": "ddpm"}])) == []
