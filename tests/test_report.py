"""Report: rows read from metrics.json files, the table's cells, and the verdict sentences."""
from __future__ import annotations

import json

import pytest

from dapt.analysis import compare, margin, rows as report, configurations as seeds, verdict

PARAMS = {"image_size": 32, "epochs": 3, "train_subset": 6000, "eval_subset": 1000}


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
        "test_acc": 0.8659, "best_eval_acc": 0.857, "best_epoch": 3, "eval_images": 1000, "test_images": 10000,
        "wall_time_s": 126.25, "model": "efficientnet_lite2", "init": "ft", "image_size": 48})
    student = {"status": "done", "stage": "distill", "history": [], "image_size": 32,
               "test_acc": 0.7312, "best_eval_acc": 0.74, "best_epoch": 4, "eval_images": 1000,
               "test_images": 10000, "wall_time_s": 101.0, "ece": 0.0649,
               "teacher_run": "runs/study/lite2_ft", "teacher_model": "efficientnet_lite2", "teacher_init": "ft",
               "teacher_image_size": 48, "teacher_run_test_acc": 0.8659, "teacher_test_acc": 0.8508,
               "teacher_eval_acc": 0.842, "agreement": 0.7525, "agreement_teacher_right": 0.8,
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
        "test_acc": 0.70, "eval_images": 1000, "test_images": 10000, "wall_time_s": 50.0, "ece": 0.02})
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
    assert teacher["test_acc"] == 0.8659 and teacher["best_eval_acc"] == 0.857 and teacher["eval_images"] == 1000
    kd = runs["mnv2_kd"]
    assert kd["teacher_run"] == "lite2_ft"  # the folder name, not the repo-relative path
    assert (kd["teacher_test_acc"], kd["teacher_run_test_acc"], kd["teacher_eval_acc"]) == (0.8508, 0.8659, 0.842)
    assert (kd["image_size"], kd["teacher_image_size"], kd["epochs"], kd["train_subset"]) == (32, 48, 4, 6000)
    assert (kd["agreement"], kd["kl"], kd["cka"], kd["ece"]) == (0.7525, 0.465, 0.758, 0.0649)
    assert "best_test_acc" not in kd
    alone = runs["mnv2_none"]
    assert alone["teacher_run"] is None and alone["teacher_test_acc"] is None and alone["agreement"] is None


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


MARGIN_CLAIM = ("the claim (a distilled random-init student at least as accurate as the pre-trained, fine-tuned model) "
                "needs the teacher's lead over that model, m, to be at least the best student's gap to its teacher, g")
ONE_SEED = "One seed each, so whether these gaps exceed the seed spread is unknown: not a finding until repeated over seeds."


def test_verdict_each_distiller_against_no_teacher_and_pretraining():
    rows = [teacher_row("lite0_ft", "lite0", 0.80), teacher_row("lite2_ft", "lite2", 0.8659, size=48),
            student_row("l_none", "lite0", "none", 0.70), student_row("l_kd", "lite0", "kd", 0.72),
            student_row("l_crd", "lite0", "crd", 0.75)]
    lines = verdict.sentences(rows)
    assert lines[0] == ("Accuracies below are final accuracies on all 10,000 test images, "
                        "each run at its own image size.")
    assert lines[1].startswith("Every configuration has one seed, so no gap below can be told apart")
    # one seed: the gap is reported, never called a finding
    assert lines[2] == ("lite0, against no teacher (l_none: 70.00%): kd (l_kd: 72.00%) +2.00 points; crd (l_crd: "
                        "75.00%) +5.00 points. " + ONE_SEED)
    assert lines[3] == ("lite0, against the pre-trained, fine-tuned model (lite0_ft: 80.00%; own run): kd (l_kd: 72.00%) "
                        "−8.00 points; crd (l_crd: 75.00%) −5.00 points. " + ONE_SEED)
    assert lines[4] == ("lite0, teacher margin: " + MARGIN_CLAIM + "; the teacher's accuracy is not recorded in l_crd, "
                        "so m and g are unknown.")
    assert [line.split(":")[0] for line in lines[5:]] == ["Budget", "Plateau", "What this study can show"]
    assert lines[-1] == ("What this study can show: which configuration was ahead after 3 epochs at these settings "
                         "with this one seed. What it cannot: whether any gap exceeds the seed spread (one seed per "
                         "configuration).")


def distilled(run: str, distiller: str, acc: float, teacher_acc: float | None, own_acc: float | None = None) -> dict:
    """A lite0 student of the teacher "big", which scores ``teacher_acc`` on the students' test images."""
    return {**student_row(run, "lite0", distiller, acc), "teacher_run": "big", "teacher_test_acc": teacher_acc,
            "teacher_run_test_acc": own_acc}


def margin_line(rows: list[dict]) -> str:
    [line] = [line for line in verdict.sentences(rows) if ", teacher margin: " in line]
    return line


def test_teacher_margin_short_of_the_distillation_gap():
    rows = [teacher_row("lite0_ft", "lite0", 0.80), teacher_row("big", "lite2", 0.87, size=48),
            distilled("l_kd", "kd", 0.72, 0.85), distilled("l_crd", "crd", 0.75, 0.85)]
    [m] = margin.teacher_margins(compare.comparisons(seeds.configurations(rows)), seeds.configurations(rows))
    # T = 85 on the students' images (not the teacher's own 87), P = 80, best S = crd's 75: m = 5, g = 10
    assert (m["student_run"], m["teacher_run"], m["teacher_on"]) == ("l_crd", "big", "students")
    assert m["margin_pt"] == pytest.approx(5.0) and m["gap_pt"] == pytest.approx(10.0) and m["holds"] is False
    assert margin_line(rows) == (
        "lite0, teacher margin: " + MARGIN_CLAIM + ". The teacher big scores 85.00% on the students' test images: "
        "m = 5.00 points over lite0_ft (80.00%), g = 10.00 points over the best distilled student, crd (l_crd: 75.00%). "
        "m − g = −5.00 points (the best student's pre-training gap above), so m < g: this setting lacks the margin: at "
        "this gap the teacher would have to lead the pre-trained model by 5.00 points more, or the student come 5.00 "
        "points closer to its teacher.")


def test_teacher_margin_that_suffices_and_one_that_is_negative():
    enough = [teacher_row("lite0_ft", "lite0", 0.80), distilled("l_kd", "kd", 0.83, 0.90)]
    assert margin_line(enough).endswith(
        "m = 10.00 points over lite0_ft (80.00%), g = 7.00 points over the best distilled student, kd (l_kd: 83.00%). "
        "m − g = +3.00 points (the best student's pre-training gap above), so m ≥ g: this setting has the margin the "
        "claim needs, and its best student used it.")
    tie = [teacher_row("lite0_ft", "lite0", 0.80), distilled("l_kd", "kd", 0.80, 0.90)]
    assert "so m ≥ g: this setting has the margin" in margin_line(tie)
    behind = [teacher_row("lite0_ft", "lite0", 0.80), distilled("l_kd", "kd", 0.75, 0.78)]
    assert margin_line(behind).endswith(
        "m = −2.00 points over lite0_ft (80.00%), g = 3.00 points over the best distilled student, kd (l_kd: 75.00%). "
        "m − g = −5.00 points (the best student's pre-training gap above), so m < g: the teacher is not ahead of the "
        "pre-trained model at all, so only a student more accurate than its teacher could reach it: this setting "
        "lacks the margin.")


def test_teacher_margin_falls_back_to_the_teachers_own_run():
    rows = [teacher_row("lite0_ft", "lite0", 0.80), distilled("l_kd", "kd", 0.74, None, own_acc=0.86)]
    assert "The teacher big scores 86.00% in its own run: m = 6.00 points over lite0_ft (80.00%), g = 12.00" in \
        margin_line(rows)


def test_verdict_agrees_with_the_gain_and_gap_helpers():
    rows = [teacher_row("m_ft", "mnv2", 0.7011), student_row("m_none", "mnv2", "none", 0.7111),
            student_row("m_kd", "mnv2", "kd", 0.7312), student_row("m_crd", "mnv2", "crd", 0.7296)]
    [best_gain] = [g for g in report.gains_over_scratch(rows) if g["run"] == "m_kd"]
    [gap] = report.pretraining_gap(rows)
    text = " ".join(verdict.sentences(rows))
    assert f"kd (m_kd: 73.12%) +{best_gain['gain_pt']:.2f} points" in text
    assert f"kd (m_kd: 73.12%) +{gap['gap_pt']:.2f} points" in text


def test_verdict_a_loss_and_a_tie_are_signed():
    rows = [student_row("n", "m", "none", 0.6995), student_row("k", "m", "kd", 0.6878),
            student_row("c", "m", "crd", 0.6995)]
    assert verdict.sentences(rows)[2].startswith(
        "m, against no teacher (n: 69.95%): kd (k: 68.78%) −1.17 points; crd (c: 69.95%) ±0.00 points.")


def test_verdict_without_a_pretrained_run_or_a_baseline_says_so():
    rows = [teacher_row("big", "lite2", 0.90), student_row("m_kd", "mnv2", "kd", 0.73)]
    lines = verdict.sentences(rows)
    assert lines[2] == ("mnv2: there is no finished no-teacher (`none`) baseline trained as long to measure the "
                        "distillers (m_kd) against.")
    assert lines[3] == ("mnv2: the study has no pre-trained, fine-tuned mnv2 run (a teacher-stage run with init "
                        "ft) on the same training images, so whether distillation replaces pre-training is not tested for it.")
    assert lines[-1].endswith("; whether distillation replaces pre-training (no finished pre-trained, fine-tuned run "
                              "of a student architecture to compare with).")


def test_verdict_with_failed_runs_names_them_and_uses_the_rest():
    rows = [teacher_row("m_ft", "mnv2", None), student_row("m_none", "mnv2", "none", 0.71),
            student_row("m_kd", "mnv2", "kd", None), student_row("m_crd", "mnv2", "crd", 0.72)]
    lines = verdict.sentences(rows)
    assert lines[1].startswith("Every configuration has one seed")  # a failed run is no seed
    assert lines[2] == ("mnv2, against no teacher (m_none: 71.00%): crd (m_crd: 72.00%) +1.00 point. One seed each, "
                        "so whether this gap exceeds the seed spread is unknown: not a finding until repeated over "
                        "seeds. (1 run without a test accuracy, failed or unfinished: m_kd.)")
    assert lines[3] == ("mnv2: the pre-trained, fine-tuned run m_ft has no test accuracy (failed or unfinished), "
                        "so distillation is not yet compared with pre-training.")


def test_verdict_when_every_distilled_student_failed():
    rows = [student_row("m_none", "mnv2", "none", 0.71), student_row("m_kd", "mnv2", "kd", None)]
    rows.append(teacher_row("m_ft", "mnv2", 0.80))
    lines = verdict.sentences(rows)
    assert lines[2].startswith("mnv2: no distilled student has a test accuracy yet")
    assert lines[3] == ("mnv2: no distilled mnv2 student has a test accuracy yet to compare with the pre-trained, "
                        "fine-tuned m_ft (80.00%; own run).")


def test_verdict_notes_different_image_sizes_of_student_and_pretrained_run():
    rows = [teacher_row("m_ft", "mnv2", 0.80, size=48), student_row("m_kd", "mnv2", "kd", 0.75)]
    assert "(m_ft: 80.00%; own run) (the students ran at 32 px, m_ft at 48 px): kd" in verdict.sentences(rows)[3]


@pytest.mark.parametrize("epochs, subset, expected", [
    ([3, 4], 6000, "Budget: the students trained for 3–4 epochs on a 6,000-image training subset, a short budget "
                   "(fewer than 50 epochs), so these comparisons test that budget, not the paper's 250-epoch "
                   "setting."),
    ([250, 250], None, "Budget: the students trained for 250 epochs on all training images, as long as the "
                       "paper's 250-epoch setting."),
    ([100], None, "Budget: the students trained for 100 epochs on all training images, not a short budget "
                  "(50 epochs or more) but below the paper's 250-epoch setting."),
    ([49], None, "Budget: the students trained for 49 epochs on all training images, a short budget (fewer than "
                 "50 epochs), so these comparisons test that budget, not the paper's 250-epoch setting."),
])
def test_verdict_budget_sentence(epochs, subset, expected):
    rows = [student_row(f"s{i}", "m", "kd", 0.7, epochs=e, train_subset=subset) for i, e in enumerate(epochs)]
    assert budget_line(verdict.sentences(rows)) == expected


def budget_line(lines: list[str]) -> str:
    [line] = [line for line in lines if line.startswith("Budget:")]
    return line


def test_verdict_budget_mixed_and_unknown():
    mixed = [student_row("a", "m", "kd", 0.7, epochs=3), student_row("b", "m", "none", 0.7, epochs=250)]
    assert "some have a short budget (fewer than 50 epochs) and some not" in budget_line(verdict.sentences(mixed))
    unknown = [{k: v for k, v in student_row("a", "m", "kd", 0.7).items() if k not in ("epochs", "train_subset")}]
    assert budget_line(verdict.sentences(unknown)).startswith("Budget: the students' epochs are not recorded")


def test_verdict_budget_ignores_the_teachers_epochs():
    rows = [{**teacher_row("t", "big", 0.9), "epochs": 250}, student_row("s", "m", "kd", 0.7, epochs=3)]
    assert "trained for 3 epochs" in budget_line(verdict.sentences(rows))


def test_verdict_of_a_study_without_students():
    assert verdict.sentences([teacher_row("t", "big", 0.9)]) == [
        "No student run in this study yet, so there is nothing to conclude."]


def test_verdict_of_collected_rows(study):
    lines = verdict.sentences(report.collect(study))
    # mnv2_kd trained 4 epochs, the `none` baselines 3: not a fair comparison, so none is made
    assert lines[2] == ("mobilenet_v2: there is no finished no-teacher (`none`) baseline trained as long to measure "
                        "the distillers (mnv2_kd) against. (1 run without a test accuracy, failed or unfinished: "
                        "mnv2_crd.)")
    assert budget_line(lines).startswith("Budget: the students trained for 3–4 epochs on a 6,000-image training subset")


def test_run_summary_labels_each_teacher_accuracy_with_its_images_and_size():
    metrics = {"stage": "distill", "test_acc": 0.7312, "image_size": 32, "teacher_image_size": 48,
               "teacher_run": "runs/study/lite2_ft", "teacher_run_test_acc": 0.8659, "teacher_test_acc": 0.8508,
               "teacher_eval_acc": 0.842, "eval_images": 1000, "test_images": 10000, "agreement": 0.7525,
               "kl": 0.465, "best_eval_acc": 0.99}
    lines = report.run_summary(metrics).splitlines()
    assert lines == [
        " 73.12%  student test accuracy (all 10,000 test images, 32 px)",
        " 86.59%  teacher lite2_ft, its own run (all 10,000 test images, 48 px)",
        " 85.08%  teacher on this run's test inputs (all 10,000 test images, 32 px resized to 48 px): "
        "what agreement is measured against",
        " 84.20%  teacher on the per-epoch evaluation images (1,000 of 10,000 test images, 32 px resized to 48 px): "
        "the curves' dashed line",
        " 75.25%  top-1 agreement with the teacher (all 10,000 test images)",
        "  0.465  KL(teacher ‖ student) in nats (all 10,000 test images)",
    ]  # the subset's best accuracy (99%) is not put beside the all-images numbers


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
    assert gains["kd_600_2x"]["step_ratio"] == 3.5  # 14 batches of 128 a epoch against 4 and gains["kd_6000_1x"]["real_run"] == "kd_6000"
    # the distillation gain compares real-only runs of the same size only
    assert {g["run"]: round(g["gain_pt"], 2) for g in report.gains_over_scratch(rows)} == {"kd_600": 2.0, "kd_6000": 1.0}
    [gap] = report.pretraining_gap(rows)
    assert gap["real_images"] == 600 and gap["best_run"] == "kd_600_1x"
    text = verdict.sentences(rows)
    one_seed = " One seed each, so whether {} the seed spread is unknown: not a finding until repeated over seeds."
    assert ("mnv2 on 600 real images, kd + 600 synthetic (1x) (kd_600_1x: 75.50%) against real only (kd_600: 72.00%): "
            "+3.50 points; it also took 2.2× the training steps (the same epochs over a larger set)."
            + one_seed.format("this gap exceeds")) in text
    assert ("mnv2 on 600 real images, kd + 1,200 synthetic (2x) (kd_600_2x: 71.00%) against real only (kd_600: "
            "72.00%): −1.00 point; it also took 3.5× the training steps") in " ".join(text)
    # kd_6000_long trained on the real images for as many steps as kd_6000_1x (6 x 46 = 3 x 93 ± 5%)
    long = gains["kd_6000_1x"]
    assert long["same_steps_run"] == "kd_6000_long" and round(long["same_steps_gain_pt"], 2) == -1.5
    assert "kd_600_1x" in gains and "same_steps_run" not in gains["kd_600_1x"]
    [line] = [line for line in text if "(kd_6000_1x: " in line]
    assert line.endswith("; against the real images alone trained for as many steps (kd_6000_long: 83.00%) it is "
                         "−1.50 points." + one_seed.format("these gaps exceed"))
    # the longer control is not compared with a no-teacher baseline that trained half as long
    assert ("mnv2 on 6,000 real images, against no teacher (none_6000: 80.00%): kd (kd_6000: 81.00%) +1.00 point."
            + one_seed.format("this gap exceeds")) in text
    assert any(line.startswith("mnv2 on 6,000 real images: the study has no pre-trained") for line in text)
    # against pre-training, each student of that data size, the synthetic ones named as such
    assert ("mnv2 on 600 real images, against the pre-trained, fine-tuned model (m_ft_600: 74.00%; own run): kd "
            "(kd_600: 72.00%) −2.00 points; kd + 600 synthetic (kd_600_1x: 75.50%) +1.50 points; kd + 1,200 synthetic "
            "(kd_600_2x: 71.00%) −3.00 points.") in " ".join(text)


def test_a_synthetic_run_with_as_many_steps_as_its_twin_is_its_own_control():
    # 30 epochs x 9 batches of 64 = 270 steps; 15 x (1200 // 64 = 18) = 270; 10 x (1800 // 64 = 28) = 280 (+3.7%)
    real = student_row("au", "mnv2", "align_uniform", 0.765, epochs=30, train_subset=600) | {"batch_size": 64}
    one = synthetic_row("au_1x", "align_uniform", 0.770, 600, 600, epochs=15) | {"batch_size": 64}
    two = synthetic_row("au_2x", "align_uniform", 0.750, 600, 1200, epochs=10) | {"batch_size": 64}
    gains = {g["run"]: g for g in report.synthetic_gains([real, one, two])}
    assert gains["au_1x"]["step_ratio"] == 1.0 and round(gains["au_2x"]["step_ratio"], 4) == round(280 / 270, 4)
    assert not any("same_steps_run" in g for g in gains.values())  # the twin is the same-steps control
    [line] = [line for line in verdict.sentences([real, one, two]) if "(au_2x: " in line]
    assert ("align_uniform + 1,200 synthetic (2x) (au_2x: 75.00%) against real only (au: 76.50%): −1.50 points; "
            "both took as many training steps (±5%; 10 epochs over the larger set against 30), so the gap is not "
            "longer training.") in line


def test_a_synthetic_run_with_diffaugment_says_its_twin_had_none():
    rows = [student_row("kd", "mnv2", "kd", 0.72), synthetic_row("kd_syn", "kd", 0.73, 6000, 6000) | {"diffaug": "S"}]
    [line] = [line for line in verdict.sentences(rows) if "synthetic (1x)" in line]
    assert line.endswith("; and DiffAugment S against none for the real-only run, so the difference is not the "
                         "synthetic images' alone. One seed each, so whether this gap exceeds the seed spread is "
                         "unknown: not a finding until repeated over seeds.")


def test_data_cell_names_the_synthetic_share():
    row = synthetic_row("x", "kd", 0.7, 600, 1200) | {"diffaug": "S"}
    assert report._data_cell(row) == "600 real + 1,200 synthetic (ddpm, 2x, DiffAugment S)"


def test_generated_sets_get_their_own_rows_and_sentence(study):
    write_run(study, "ddpm", {"status": "done", "stage": "generate", "history": [],
                              "params": {"generator": "ddpm", "train_subset": 600}, "n_images": 1200,
                              "teacher_run": "runs/study/lite2_ft", "teacher_acc_on_synthetic": 0.804,
                              "wall_time_s": 200.0})
    [row] = report.collect_generated(study)
    assert "ddpm" not in by_run(report.collect(study))
    assert row["data"] == "600 real images" and row["teacher_run"] == "lite2_ft"
    assert "| ddpm | ddpm | 600 real images | 1,200 | lite2_ft | 80.40 | 200 | done |" in \
        report.markdown_table([row], report.GENERATED_COLUMNS)
    assert verdict.sentences(report.collect(study), [row])[2] == (
        "Synthetic set ddpm: 1,200 images from ddpm; the teacher lite2_ft classifies 80.40% of them as the "
        "class they were made for.")
