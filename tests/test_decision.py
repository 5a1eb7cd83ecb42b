"""A study's decision rule (``decision`` in its params file, ``dapt.analysis.decision``): each of its three
outcomes on derived seeds, the comparison it reads (the best distilled student, skipping runs recorded
unalike), its lines in the report and in ``dapt report``, its check when the study loads, and its way from the
params file into the report run without making a recorded report a changed run. The bad-input battery
(tests/test_bad_inputs.py) checks that each mistake in it is one line that writes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dapt.analysis import render, results
from dapt.analysis.decision import CANNOT_TELL, FAILS, HOLDS, decide
from dapt.analysis.summary import Summary
from dapt.core.claims import CLAIMS, DECIDABLE
from dapt.pipeline import config
from dapt.pipeline.runner import run_state
from dapt.pipeline.study import load_study

REPO = Path(__file__).resolve().parents[1]
LITE0 = "efficientnet_lite0"
RULE = {"claim": "pre-training", "within_pt": 1.0}
PREFIX = "Decision rule (pre-training, within 1 point; written before the study ran): "


def seeded(run: str, stage: str, accs: tuple[float, ...], **fields) -> list[dict]:
    """A configuration's rows, one per seed (``<run>_s<seed>``), with the params that make them one."""
    return [{"run": f"{run}_s{seed}", "stage": stage, "test_acc": acc, "image_size": 48, "test_images": 10000,
             "epochs": 240, "train_subset": 600, "batch_size": 64, **fields, "params": {"name": run, "seed": seed}}
            for seed, acc in enumerate(accs)]


def lite0(kd: tuple[float, ...], au: tuple[float, ...], pretrained=(0.800, 0.810, 0.805),
          student: str = LITE0, **kd_fields) -> list[dict]:
    """fashion_long's design on derived seeds: ``student`` with none, kd and align_uniform, and the same
    architecture pre-trained and fine-tuned."""
    return [*seeded(f"{student}_none", "distill", (0.74, 0.75, 0.745), student=student, distiller="none"),
            *seeded(f"{student}_kd", "distill", kd, student=student, distiller="kd", **kd_fields),
            *seeded(f"{student}_align_uniform", "distill", au, student=student, distiller="align_uniform"),
            *seeded(f"{student}_pretrained_ft", "teacher", pretrained, student=student, model=student, init="ft")]


def summarise(rows: list[dict], generated: list[dict] = ()) -> Summary:
    return Summary.of(rows, generated, paper_epochs=250, short_budget_epochs=50)


def test_the_claim_holds_when_the_best_students_interval_lies_within_the_margin():
    summary = summarise(lite0(kd=(0.802, 0.804, 0.803), au=(0.78, 0.79, 0.785), pretrained=(0.804, 0.806, 0.805)))
    [fired] = decide(summary, RULE)
    w = fired.comparison.welch
    # kd, the best (80.30 against align_uniform's 78.50), −0.20 points, its interval above −1; align_uniform's
    # −2.00 is not what the rule reads
    assert (fired.fired, fired.comparison.a, round(w.gap_pt, 2), w.direction) == (
        HOLDS, "efficientnet_lite0_kd_s{0,1,2}", -0.2, "within") and w.ci_low_pt > -1
    assert fired.detectable_pt is None
    assert render.decision_lines(summary, RULE) == [
        PREFIX + "(1) fired for efficientnet_lite0: efficientnet_lite0_kd_s{0,1,2} −0.20 points against "
        "efficientnet_lite0_pretrained_ft_s{0,1,2} (95% interval −0.43 to +0.03; Holm p = 0.070): no gap larger "
        "than 0.5 points (these seeds); the claim holds at this setting."]


def test_a_gap_within_seed_noise_whose_interval_reaches_past_the_margin_cannot_tell():
    """Within noise is not within the margin: −0.47 points, but an interval down to −1.60 with three seeds."""
    summary = summarise(lite0(kd=(0.795, 0.805, 0.801), au=(0.78, 0.79, 0.785)))
    [fired] = decide(summary, RULE)
    w = fired.comparison.welch
    assert (fired.fired, round(w.gap_pt, 2), round(w.ci_low_pt, 2), w.direction) == (CANNOT_TELL, -0.47, -1.6,
                                                                                      "within")


def test_a_student_above_the_pretrained_model_beyond_seed_noise_holds_too():
    [fired] = decide(summarise(lite0(kd=(0.83, 0.835, 0.832), au=(0.78, 0.79, 0.785))), RULE)
    assert (fired.fired, fired.comparison.welch.direction) == (HOLDS, "higher")


def test_the_claim_fails_when_the_best_student_is_lower_beyond_seed_noise_by_more_than_the_margin():
    summary = summarise(lite0(kd=(0.75, 0.752, 0.751), au=(0.74, 0.745, 0.742)))
    [fired] = decide(summary, RULE)
    w = fired.comparison.welch
    assert (fired.fired, round(w.gap_pt, 2), w.direction) == (FAILS, -5.4, "lower") and w.p_holm < 0.05
    [line] = render.decision_lines(summary, RULE)
    assert line.startswith(PREFIX + "(2) fired for efficientnet_lite0: efficientnet_lite0_kd_s{0,1,2} −5.40 points")
    assert line.endswith(f"(95% interval {render.interval(w.ci_low_pt, w.ci_high_pt)}; Holm p = 0.006): lower "
                         f"beyond seed noise; the claim fails at this setting.")


def test_these_seeds_cannot_tell_a_gap_beyond_the_margin_within_seed_noise_and_say_what_they_detect():
    summary = summarise(lite0(kd=(0.76, 0.80, 0.78), au=(0.70, 0.71, 0.705)))
    [fired] = decide(summary, RULE)
    w = fired.comparison.welch
    assert (fired.fired, round(w.gap_pt, 2), w.direction) == (CANNOT_TELL, -2.5, "within")
    assert fired.detectable_pt == w.mde_pt and w.mde_pt > 10
    [line] = render.decision_lines(summary, RULE)
    assert line.endswith(f"{render.undetected(w.mde_pt)}; these seeds cannot tell whether the claim holds at "
                         f"this setting.")


def test_a_gap_lower_beyond_seed_noise_but_inside_the_margin_holds():
    summary = summarise(lite0(kd=(0.7965, 0.7975, 0.797), au=(0.70, 0.71, 0.705), pretrained=(0.8035, 0.8045, 0.804)))
    [fired] = decide(summary, RULE)
    w = fired.comparison.welch
    assert (fired.fired, round(w.gap_pt, 2), w.direction) == (HOLDS, -0.7, "lower") and w.ci_low_pt > -1
    [line] = render.decision_lines(summary, RULE)
    assert line.endswith("lower beyond seed noise; the claim holds at this setting (lower, but by less than the "
                         "margin).")


def test_these_seeds_cannot_tell_a_gap_lower_beyond_seed_noise_whose_interval_straddles_the_margin():
    summary = summarise(lite0(kd=(0.7935, 0.7945, 0.794), au=(0.70, 0.71, 0.705), pretrained=(0.8035, 0.8045, 0.804)))
    [fired] = decide(summary, RULE)
    w = fired.comparison.welch
    assert (fired.fired, round(w.gap_pt, 2), w.direction) == (CANNOT_TELL, -1.0, "lower")
    assert w.ci_low_pt < -1 < w.ci_high_pt
    [line] = render.decision_lines(summary, RULE)
    assert line.endswith(f"lower beyond seed noise; these seeds cannot tell whether the claim holds at this setting "
                         f"(they detect a gap of {w.mde_pt:.1f} points).")


@pytest.mark.parametrize("within_pt, fired", [(10.0, HOLDS), (2.0, CANNOT_TELL), (0.0, CANNOT_TELL)])
def test_the_margin_decides_between_the_outcomes(within_pt, fired):
    # kd −2.50 within seed noise: above a 10-point margin it holds; at or below −2 and −0 these seeds cannot tell
    summary = summarise(lite0(kd=(0.76, 0.80, 0.78), au=(0.70, 0.71, 0.705)))
    assert [o.fired for o in decide(summary, {"claim": "pre-training", "within_pt": within_pt})] == [fired]


def test_one_line_per_student_group():
    rows = lite0(kd=(0.802, 0.804, 0.803), au=(0.78, 0.79, 0.785), pretrained=(0.804, 0.806, 0.805)) + lite0(
        kd=(0.75, 0.752, 0.751), au=(0.74, 0.745, 0.742), student="mobilenet_v2")
    lines = render.decision_lines(summarise(rows), RULE)
    assert [line.split(": ")[1] for line in lines] == ["(1) fired for efficientnet_lite0", "(2) fired for mobilenet_v2"]


def test_comparisons_of_runs_recorded_unalike_are_skipped_and_counted():
    # kd is the best, but its seeds were recorded by two code versions: the rule reads align_uniform's instead
    rows = lite0(kd=(0.795, 0.805, 0.801), au=(0.78, 0.79, 0.785))
    rows = [dict(r, code="bbbbbbb" if r["run"] == "efficientnet_lite0_kd_s2" else "aaaaaaa") for r in rows]
    summary = summarise(rows)
    [fired] = decide(summary, RULE)
    # align_uniform −2.00 (95% interval −3.13 to −0.87): lower beyond noise, but the interval reaches above −1
    assert (fired.fired, fired.comparison.a) == (CANNOT_TELL, "efficientnet_lite0_align_uniform_s{0,1,2}")
    lines = render.decision_lines(summary, RULE)
    assert len(lines) == 2 and lines[1] == (
        "Left out of the decision rule: 1 pre-training comparison of runs recorded by more than one code version or "
        "precision († in the claims table).")
    every = [dict(r, code=r["run"][-2:]) for r in rows]  # every seed its own code: nothing is alike
    assert decide(summarise(every), RULE) == [] and render.decision_lines(summarise(every), RULE) == [
        PREFIX + "no outcome fired: no pre-training comparison of runs recorded alike has two seeds or more on both "
                 "sides.",
        "Left out of the decision rule: 2 pre-training comparisons of runs recorded by more than one code version or "
        "precision († in the claims table)."]


def test_a_study_without_a_rule_gets_nothing_and_one_seed_fires_nothing():
    summary = summarise(lite0(kd=(0.795, 0.805, 0.801), au=(0.78, 0.79, 0.785)))
    assert decide(summary, None) == [] and render.decision_lines(summary, None) == []
    one_seed = summarise(lite0(kd=(0.80,), au=(0.78,)))
    assert render.decision_lines(one_seed, RULE) == [
        PREFIX + "no outcome fired: no pre-training comparison of runs recorded alike has two seeds or more on both "
                 "sides."]


def test_the_ideal_images_claim_reads_the_best_student_on_generated_images_against_as_many_ideal_ones():
    def on(images: str, accs: tuple[float, ...], distiller: str) -> list[dict]:
        return seeded(f"{distiller}_{images}", "distill", accs, student=LITE0, distiller=distiller,
                      teacher_run="lite2_ft", n_real=600, n_synthetic=600, synset_size="1x", synthetic_run=images)
    rows = [*on("ddpm", (0.759, 0.76, 0.761), "kd"), *on("ideal", (0.799, 0.80, 0.801), "kd"),
            *on("ddpm", (0.70, 0.71, 0.705), "crd"), *on("ideal", (0.79, 0.80, 0.795), "crd")]
    generated = [{"run": "ddpm", "stage": "generate", "generator": "ddpm"},
                 {"run": "ideal", "stage": "generate", "generator": "holdout"}]
    [fired] = decide(summarise(rows, generated), {"claim": "ideal images", "within_pt": 1.0})
    assert (fired.fired, fired.comparison.a, fired.comparison.b, round(fired.comparison.welch.gap_pt, 2)) == (
        FAILS, "kd_ddpm_s{0,1,2}", "kd_ideal_s{0,1,2}", -4.0)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_run(folder: Path, stage: str, params: dict, **metrics) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "done", "stage": stage, "params": params, **metrics}))
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def test_dapt_report_and_the_docs_block_state_the_rule_the_report_run_recorded(project):
    study = project / "runs" / "s"
    setting = {"epochs": 240, "train_subset": 600, "batch_size": 64, "image_size": 48}
    for seed, (kd, au, ft) in enumerate(zip((0.795, 0.805, 0.801), (0.78, 0.79, 0.785), (0.800, 0.810, 0.805))):
        for distiller, acc in (("kd", kd), ("align_uniform", au)):
            write_run(study / f"{distiller}_s{seed}", "distill",
                      {**setting, "student": LITE0, "distiller": distiller, "seed": seed}, test_acc=acc)
        write_run(study / f"ft_s{seed}", "teacher", {**setting, "model": LITE0, "init": "ft", "seed": seed},
                  test_acc=ft)
    [expected] = render.decision_lines(Summary.read(study), RULE)
    assert expected.startswith(PREFIX + "(3) fired for efficientnet_lite0: kd_s{0,1,2} −0.47 points against ft_s")
    assert "Decision rule" not in results.study_text(study) + results.block("runs/s")  # no report run, no rule
    write_run(study / "report", "report", {"paper_epochs": 250, "study_decision": RULE})
    text, block = results.study_text(study), results.block("runs/s")
    assert text.index(expected) < text.index("## Configurations")
    assert block.index(f"- {expected}") < block.index("| configuration |")


TEACHER = "{stage: teacher, name: t, model: resnet18, init: fr, dataset: digits}"


def study_file(tmp_path: Path, decision: str) -> Path:
    path = tmp_path / "params" / "s.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"study: s\n{decision}runs:\n  - {TEACHER}\n  - {{stage: report, name: report}}\n")
    return path


def test_dapt_run_hands_the_rule_to_the_report_run_only(project):
    study = load_study(study_file(project, "decision: {claim: pre-training, within_pt: 1}\n"), check_data=False)
    report = study.get("report")
    assert report.cfg.study_decision == RULE and report.injected["study_decision"] == RULE
    assert isinstance(report.cfg.study_decision["within_pt"], float)  # as the notebook and params.yaml hold it
    assert not hasattr(study.get("t").cfg, "study_decision")
    plain = load_study(study_file(project, ""), check_data=False).get("report")
    assert plain.cfg.study_decision is None and "study_decision" not in plain.injected


def test_a_report_recorded_before_its_study_stated_a_rule_is_not_a_changed_run(project):
    report = load_study(study_file(project, "decision: {claim: pre-training, within_pt: 1.0}\n"),
                        check_data=False).get("report")
    recorded = {k: v for k, v in report.params.items() if k != "study_decision"}
    write_run(report.folder, "report", recorded)
    (report.folder / "notebook.ipynb").write_text("{}")
    state = run_state(report)
    assert (state.status, state.same_params, state.changed) == ("done", True, [])


def test_the_committed_fashion_long_states_its_descriptions_rule(monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(REPO))
    report = load_study(REPO / "params" / "fashion_long.yaml", check_data=False).get("report")
    description = report.cfg.study_description
    assert "best distilled Lite0 (kd or align_uniform, highest mean) against pre-trained Lite0" in description
    assert "if the 95% interval of its gap lies above -1 point" in description
    assert report.cfg.study_decision == {"claim": "pre-training", "within_pt": 1.0}


def test_the_report_stage_checks_a_rule_handed_to_its_notebook():
    with pytest.raises(config.ConfigError, match="decision: claim 'pre_training' is not one of: pre-training, ideal"):
        config.validate(config.ReportConfig, {"study_decision": {"claim": "pre_training", "within_pt": 1.0}})
    with pytest.raises(config.ConfigError, match="paper_epochs=0 must be >= 1"):  # its ranges, now checked too
        config.validate(config.ReportConfig, {"paper_epochs": 0})


def test_the_decidable_claims_are_claims_the_comparisons_make():
    assert set(DECIDABLE) < set(CLAIMS)
