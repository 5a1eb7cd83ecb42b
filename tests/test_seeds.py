"""Seeds: runs grouped into configurations (mean ± sample std), the seed-noise rule (Welch's t test; its
interval, Holm and detectable gap are tests/test_stats.py's), the plateau rule and the teacher's headroom,
each checked against independently computed values, and the figures and the report notebook built from them."""
from __future__ import annotations

import json
import math
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from scipy import stats

from dapt.analysis import budget, compare, render, rows as report, configurations as seeds
from dapt.analysis.summary import Summary
from dapt.plots import seeds as seed_plots

REPO = Path(__file__).resolve().parents[1]
BASE = {"dataset": "digits", "image_size": 32, "epochs": 3, "train_subset": 600, "eval_subset": 100,
        "batch_size": 128, "lr": 2.0e-3, "seed": 0, "wandb": "disabled", "resume": False}


def curve(*accs: float) -> list[dict]:
    return [{"epoch": i + 1, "val_acc": a, "train_acc": a - 0.05} for i, a in enumerate(accs)]


def write_run(study: Path, name: str, stage: str, acc: float | None, history: list[dict] | None = None,
              extra: dict | None = None, **params) -> None:
    """A run folder with a metrics.json as the stages write it: params (run_dir included), history, results
    (and ``extra`` metrics)."""
    folder = study / name
    folder.mkdir(parents=True)
    params = {**BASE, "run_dir": f"runs/{study.name}/{name}", **params}
    metrics = {"status": "done" if acc is not None else "failed", "stage": stage, "params": params,
               "history": history if history is not None else curve(0.5, 0.6, acc or 0.6),
               "test_acc": acc, "test_images": 1000, "val_images": 100, "val_source": "training images outside "
               "train_subset", "image_size": params["image_size"]}
    if stage == "teacher":
        metrics.update(model=params["model"], init=params["init"])
    else:
        metrics.update(student=params["student"], distiller=params["distiller"])
        if params.get("teacher"):
            metrics.update(teacher_run=params["teacher"], teacher_init=params.pop("teacher_init", "ft"),
                           teacher_model="resnet18", agreement=acc + 0.01 if acc else None)
    metrics.update(extra or {})
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def student(study: Path, name: str, distiller: str, acc: float | None, seed: int, **params) -> None:
    write_run(study, name, "distill", acc, seed=seed, student="mobilenet_v2", distiller=distiller,
              teacher=f"runs/{study.name}/teacher", **params)


KD = [0.71, 0.74, 0.725]
NONE = [0.650, 0.660, 0.655]
CRD = [0.66, 0.645, 0.67]


@pytest.fixture
def study(tmp_path):
    """Three seeds of a teacher's kd, crd and none students and of a pre-trained, fine-tuned student architecture."""
    root = tmp_path / "three"
    write_run(root, "teacher", "teacher", 0.90, model="resnet18", init="ft")
    for seed in range(3):
        student(root, f"kd_seed{seed}", "kd", KD[seed], seed)
        student(root, f"none_seed{seed}", "none", NONE[seed], seed)
        student(root, f"crd_seed{seed}", "crd", CRD[seed], seed)
        write_run(root, f"mnv2_ft_seed{seed}", "teacher", [0.80, 0.81, 0.79][seed], seed=seed,
                  model="mobilenet_v2", init="ft")
    return root


def by_label(configs: list[dict]) -> dict[str, dict]:
    return {c["run"]: c for c in configs}


def test_configurations_give_mean_and_sample_std_over_seeds(study):
    configs = by_label(seeds.configurations(report.collect(study)))
    assert set(configs) == {"teacher", "kd_seed{0,1,2}", "none_seed{0,1,2}", "crd_seed{0,1,2}", "mnv2_ft_seed{0,1,2}"}
    kd = configs["kd_seed{0,1,2}"]
    assert kd["runs"] == ["kd_seed0", "kd_seed1", "kd_seed2"] and kd["seeds"] == [0, 1, 2] and kd["n"] == 3
    assert kd["test_acc"] == pytest.approx(np.mean(KD)) and kd["test_acc_std"] == pytest.approx(np.std(KD, ddof=1))
    assert kd["agreement"] == pytest.approx(np.mean(KD) + 0.01)
    # the seed-mean curve: epoch 3 is the mean of the seeds' last accuracies
    assert [h["epoch"] for h in kd["history"]] == [1, 2, 3]
    assert kd["history"][2]["val_acc"] == pytest.approx(np.mean(KD))
    cell = render.value_cell(kd, "test_acc")
    assert cell == f"{100 * np.mean(KD):.2f} ± {100 * np.std(KD, ddof=1):.2f} (n=3)" == "72.50 ± 1.50 (n=3)"
    table = render.configuration_table(list(configs.values()))
    assert "| kd_seed{0,1,2} | 0, 1, 2 | mobilenet_v2 |" in table and "72.50 ± 1.50 (n=3)" in table


def test_a_single_seed_shows_its_value_and_n1_without_spread(study):
    teacher = by_label(seeds.configurations(report.collect(study)))["teacher"]
    assert teacher["n"] == 1 and teacher["test_acc_std"] is None
    assert render.value_cell(teacher, "test_acc") == "90.00 (n=1)"


def test_grouping_ignores_seed_and_bookkeeping_but_not_other_keys(tmp_path):
    root = tmp_path / "names"
    # names say nothing: grouping is by parameters
    student(root, "alpha", "kd", 0.70, 0, wandb="offline")
    student(root, "beta", "kd", 0.72, 1, resume=True, data_root="elsewhere")
    student(root, "gamma", "kd", 0.74, 2, lr=1.0e-3)  # another learning rate: another configuration
    student(root, "delta", "kd", 0.76, 3, epochs=4)
    configs = seeds.configurations(report.collect(root))
    assert sorted(c["runs"] for c in configs) == [["alpha", "beta"], ["delta"], ["gamma"]]
    assert by_label(configs)["{alpha,beta}"]["n"] == 2


def test_students_of_per_seed_teachers_are_one_configuration(tmp_path):
    root = tmp_path / "chain"
    for seed in (0, 1):
        write_run(root, f"t{seed}", "teacher", 0.9, seed=seed, model="resnet18", init="ft")
        write_run(root, f"s{seed}", "distill", 0.7 + seed / 100, seed=seed, student="mobilenet_v2", distiller="kd",
                  teacher=f"runs/chain/t{seed}")
    write_run(root, "t_lp", "teacher", 0.8, model="resnet18", init="lp")
    write_run(root, "s_lp", "distill", 0.69, student="mobilenet_v2", distiller="kd", teacher="runs/chain/t_lp")
    configs = by_label(seeds.configurations(report.collect(root)))
    assert configs["s{0,1}"]["runs"] == ["s0", "s1"] and configs["t{0,1}"]["n"] == 2
    assert configs["s_lp"]["n"] == 1  # its teacher is another configuration


@pytest.mark.parametrize("a, b", [([0.70, 0.72, 0.71], [0.74, 0.75, 0.77]), ([0.70, 0.73, 0.71], [0.71, 0.72, 0.74]),
                                  ([0.70, 0.72], [0.60, 0.61, 0.65, 0.62])])
def test_welch_matches_the_textbook_test(a, b):
    got = compare.welch(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    assert got.t == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(va + vb))
    assert got.t == pytest.approx(reference.statistic) and got.p == pytest.approx(reference.pvalue)
    assert got.gap_pt == pytest.approx(100 * (np.mean(a) - np.mean(b)))
    assert got.verdict == ("beyond" if reference.pvalue < 0.05 else "within")


def test_seed_noise_rule_on_hand_made_cases():
    clear = compare.welch([0.80, 0.81, 0.805], [0.70, 0.71, 0.705])  # 10 points apart, 0.5 points of spread
    assert (clear.verdict, clear.direction) == ("beyond", "higher") and clear.p < 0.001
    noise = compare.welch([0.70, 0.73, 0.71], [0.71, 0.72, 0.74])  # 1 point apart, ~1.5 points of spread
    assert (noise.verdict, noise.direction) == ("within", "within") and noise.p > 0.3
    one = compare.welch([0.80], [0.70, 0.71, 0.72])
    assert one.verdict == "unknown" and one.p is None and one.gap_pt == pytest.approx(9.0)
    assert compare.welch([0.7, 0.7], [0.7, 0.7]).verdict == "within"
    assert compare.welch([0.6, 0.6], [0.7, 0.7]).direction == "lower"


def test_plateau_rule_on_hand_made_histories():
    rising = budget.plateau(curve(0.50, 0.60, 0.70))  # E = 3: the last third is one epoch
    assert rising.status == "still improving" and rising.gain_pt == pytest.approx(10.0)
    assert (rising.from_epoch, rising.epochs, rising.best_epoch) == (2, 3, 3)
    flat = budget.plateau(curve(0.50, 0.70, 0.705))
    assert flat.status == "plateaued" and flat.gain_pt == pytest.approx(0.5)
    four = budget.plateau(curve(0.5, 0.6, 0.7, 0.71))  # k = 2: epochs 2-4, slope (0.71 - 0.6) / 2 exactly
    assert four.from_epoch == 2 and four.gain_pt == pytest.approx(11.0)
    noisy = [0.5, 0.6, 0.65, 0.7, 0.72, 0.73, 0.745, 0.73, 0.74]  # k = 3: a line through epochs 6-9
    slope = np.polyfit([6, 7, 8, 9], noisy[5:], 1)[0]
    long = budget.plateau(curve(*noisy))
    assert long.gain_pt == pytest.approx(100 * 3 * slope) and long.status == "plateaued"
    assert long.best_epoch == 7 and long.train_acc == pytest.approx(0.74 - 0.05)
    assert budget.plateau(curve(0.5)).status == "unknown" and budget.plateau([]).status == "unknown"


def test_plateau_rule_counts_epochs_not_evaluations():
    # eval_every 10 over 30 epochs: the last third is epochs 20-30, so the gain is a_30 - a_20, not a tenth of it
    sparse = [{"epoch": e, "val_acc": a} for e, a in ((10, 0.62), (20, 0.70), (30, 0.74))]
    got = budget.plateau(sparse)
    assert (got.from_epoch, got.epochs) == (20, 30)
    assert got.gain_pt == pytest.approx(4.0) and got.status == "still improving"
    # evaluated every 4th epoch of 30: k = 10, the evaluations at epochs 20, 24, 28 and 30 carry the line
    every4 = [{"epoch": e, "val_acc": 0.5 + 0.0005 * e} for e in (4, 8, 12, 16, 20, 24, 28, 30)]
    got = budget.plateau(every4)
    assert got.from_epoch == 20 and got.gain_pt == pytest.approx(0.5) and got.status == "plateaued"


def test_comparisons_agree_with_scipy_on_the_aggregated_numbers(study):
    summary = Summary.read(study)
    assert summary.seed_counts == [3]
    kd_vs_none = stats.ttest_ind(KD, NONE, equal_var=False)
    crd_vs_none = stats.ttest_ind(CRD, NONE, equal_var=False)
    assert kd_vs_none.pvalue < 0.05 < crd_vs_none.pvalue  # the fixture has one clear gain and one within noise
    comps = {(c.claim, c.a): c for c in summary.comparisons}
    kd, crd = comps["no teacher", "kd_seed{0,1,2}"], comps["no teacher", "crd_seed{0,1,2}"]
    assert kd.b == crd.b == "none_seed{0,1,2}"
    assert (kd.welch.p, kd.welch.direction) == (pytest.approx(kd_vs_none.pvalue), "higher")
    assert (crd.welch.p, crd.welch.direction) == (pytest.approx(crd_vs_none.pvalue), "within")
    assert (kd.welch.mean_a, kd.welch.std_a, kd.welch.n_a) == (pytest.approx(np.mean(KD)),
                                                               pytest.approx(np.std(KD, ddof=1)), 3)
    assert kd.welch.gap_pt == pytest.approx(100 * (np.mean(KD) - np.mean(NONE)))
    pretraining = comps["pre-training", "kd_seed{0,1,2}"]
    assert pretraining.b == "mnv2_ft_seed{0,1,2}" and pretraining.welch.direction == "lower"
    assert pretraining.welch.p == pytest.approx(stats.ttest_ind(KD, [0.80, 0.81, 0.79], equal_var=False).pvalue)
    # judged among the study's four comparisons: kd vs none is the third smallest p, so Holm doubles it
    ranked = sorted(c.welch.p for c in summary.comparisons)
    assert ranked.index(kd.welch.p) == 2 and kd.welch.p_holm == pytest.approx(max(4 * ranked[0], 3 * ranked[1],
                                                                                  2 * ranked[2]))
    # the claims table carries the same numbers
    low, high = (100 * v for v in kd_vs_none.confidence_interval())
    assert (f"| no teacher | mobilenet_v2 | kd_seed{{0,1,2}}: 72.50 ± 1.50 (n=3) | none_seed{{0,1,2}}: 65.50 ± 0.50 "
            f"(n=3) | +7.00 | {render.points(low)} to {render.points(high)} | {kd_vs_none.pvalue:.3f} | "
            f"{kd.welch.p_holm:.3f} | higher beyond seed noise |") in render.claims_table(summary.comparisons)


def test_one_seed_never_claims_a_finding(tmp_path):
    root = tmp_path / "single"
    student(root, "kd", "kd", 0.80, 0)
    student(root, "none", "none", 0.70, 0)
    summary = Summary.read(root)
    [c] = summary.comparisons
    assert (c.welch.verdict, c.welch.p, round(c.welch.gap_pt, 2)) == ("unknown", None, 10.0)
    assert summary.seed_counts == [1]


def test_plateaus_from_the_histories(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    for seed in range(2):  # still gaining 10 points in its last epoch
        student(short, f"kd{seed}", "kd", 0.70, seed, history=curve(0.5, 0.6, 0.7))
        student(short, f"none{seed}", "none", 0.65, seed, history=curve(0.5, 0.6, 0.65))
    summary = Summary.read(short)
    assert summary.still_improving() == ["kd{0,1}", "none{0,1}"] == summary.judged_students()
    assert {run: round(p.gain_pt, 2) for run, p in summary.plateaus.items()} == {"kd{0,1}": 10.0, "none{0,1}": 5.0}
    flat = curve(0.5, 0.6, 0.65, 0.695, 0.7, 0.7)  # k = 2: a line through epochs 4-6 rises 0.5 points
    for seed in range(2):
        student(long, f"kd{seed}", "kd", 0.70, seed, history=flat)
    summary = Summary.read(long)
    assert summary.still_improving() == [] and summary.judged_students() == ["kd{0,1}"]
    assert "| kd{0,1} | 2 | 6 | 4 | validation | 69.50 | 70.00 | +0.50 | 5 | 65.00 | plateaued |" in \
        render.plateau_table(summary)


def test_teacher_init_comparisons_hold_the_student_fixed(tmp_path):
    root = tmp_path / "inits"
    accs = {"ft": [0.80, 0.81], "lp": [0.76, 0.78], "fr": [0.70, 0.74]}
    for init, values in accs.items():
        write_run(root, f"t_{init}", "teacher", 0.9, model="resnet18", init=init)
        for seed, acc in enumerate(values):
            write_run(root, f"au_{init}_{seed}", "distill", acc, seed=seed, student="mobilenet_v2",
                      distiller="align_uniform", teacher=f"runs/inits/t_{init}", teacher_init=init)
    write_run(root, "kd_lp", "distill", 0.75, student="mobilenet_v2", distiller="kd", teacher="runs/inits/t_lp",
              teacher_init="lp")  # another distiller: not part of the align_uniform comparison
    comps = [c for c in Summary.read(root).comparisons if c.claim == "teacher init"]
    assert [(c.a, c.b) for c in comps] == [("au_ft_{0,1}", "au_lp_{0,1}"), ("au_ft_{0,1}", "au_fr_{0,1}"),
                                           ("au_lp_{0,1}", "au_fr_{0,1}")]
    assert comps[0].welch.p == pytest.approx(stats.ttest_ind(accs["ft"], accs["lp"], equal_var=False).pvalue)
    assert comps[0].welch.gap_pt == pytest.approx(3.5)


def test_headroom_over_seeds_of_per_seed_teachers(tmp_path):
    """The teacher's lead from the seed means, the teacher named by its configuration, with Welch's interval
    between the per-seed teachers and the pre-trained seeds."""
    root = tmp_path / "margin"
    on_students = [0.88, 0.86, 0.87]  # each seed's teacher on its student's test images
    pretrained = [0.80, 0.81, 0.79]
    for seed in range(3):
        write_run(root, f"t_seed{seed}", "teacher", 0.90, seed=seed, model="resnet18", init="ft")
        write_run(root, f"mnv2_ft_seed{seed}", "teacher", pretrained[seed], seed=seed, model="mobilenet_v2", init="ft")
        for distiller, accs in (("kd", KD), ("crd", CRD)):
            write_run(root, f"{distiller}_seed{seed}", "distill", accs[seed], seed=seed, student="mobilenet_v2",
                      distiller=distiller, teacher=f"runs/margin/t_seed{seed}",
                      extra={"teacher_test_acc": on_students[seed], "teacher_run_test_acc": 0.90})
    [h] = Summary.read(root).headroom
    assert (h.student, h.teacher, h.teacher_n, h.pretrained) == ("kd_seed{0,1,2}", "t_seed{0,1,2}", 3,
                                                                 "mnv2_ft_seed{0,1,2}")
    # T = 87.00 (each seed's teacher on its student's images), P = 80.00: a lead of 7 points
    assert (h.teacher_acc, h.lead_pt, h.interval) == (pytest.approx(0.87), pytest.approx(7.0), "Welch")
    low, high = stats.ttest_ind(on_students, pretrained, equal_var=False).confidence_interval()
    assert (h.low_pt, h.high_pt) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert f"+7.00 points against the pre-trained mnv2_ft_seed{{0,1,2}} (95% interval " \
           f"{render.interval(h.low_pt, h.high_pt)})" in render.headroom_line(h)


def test_figures_show_every_seed_and_a_panel_per_student(study):
    configs = seeds.configurations(report.collect(study))
    fig = seed_plots.seed_spread(configs)
    dots = [p for c in fig.axes[0].collections if isinstance(c, PathCollection) for p in c.get_offsets().tolist()]
    assert len(dots) == 3 * 4  # three seeds of four configurations; the one-seed teacher has no spread
    for row in {y for _, y in dots}:  # each seed against its configuration's mean
        assert sum(x for x, y in dots if y == row) == pytest.approx(0, abs=1e-9)
    curves = seed_plots.accuracy_curves(configs)
    titles = [ax.get_title() for ax in curves.axes if ax.get_title()]
    assert titles == ["student mobilenet_v2", "teacher-stage runs"]
    assert len(curves.axes[0].get_lines()) == 3  # kd, crd and the no-teacher baseline: one mean line each
    assert curves.axes[0].get_ylabel() == "validation accuracy (%)"
    # 600 images in batches of 128: 4 steps an epoch, so epochs 1-3 are drawn at steps 4, 8, 12
    assert curves.axes[0].get_xlabel() == "training steps (batches)"
    assert curves.axes[0].get_lines()[0].get_xdata().tolist() == [4, 8, 12]
    assert "on validation (100 training images outside train_subset)" in curves.texts[0].get_text()


REPORT_ONLY = """
study: seeded
decision: {claim: pre-training, within_pt: 1.0}
runs:
  - {stage: report, name: report}
"""


@pytest.mark.slow
def test_report_notebook_over_a_two_seed_study(tmp_path, monkeypatch):
    """papermill executes the real report notebook over a study whose runs have two seeds each."""
    from dapt.cli import main
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "seeded.yaml").write_text(textwrap.dedent(REPORT_ONLY))
    study_dir = tmp_path / "runs" / "seeded"
    write_run(study_dir, "teacher", "teacher", 0.90, model="resnet18", init="ft")
    write_run(study_dir, "mnv2_ft", "teacher", 0.70, model="mobilenet_v2", init="ft")
    for seed in range(2):
        student(study_dir, f"kd_s{seed}", "kd", KD[seed], seed, extra={"teacher_test_acc": 0.88})
        student(study_dir, f"none_s{seed}", "none", NONE[seed], seed)
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "params/seeded.yaml", "--quiet"]) == 0
    folder = study_dir / "report"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done"
    [kd] = [c for c in metrics["comparisons"] if c["a_run"] == "kd_s{0,1}" and c["claim"] == "no teacher"]
    assert kd["n_a"] == kd["n_b"] == 2 and kd["p"] == pytest.approx(stats.ttest_ind(KD[:2], NONE[:2], equal_var=False).pvalue)
    outputs = json.dumps([c.get("outputs", []) for c in json.loads((folder / "notebook.ipynb").read_text())["cells"]],
                         ensure_ascii=False)
    assert "72.50 ± 2.12 (n=2)" in outputs and "Seed-noise rule" in outputs and "Plateau rule" in outputs
    [lead] = metrics["headroom"]  # T = 88 on the students' images, P = 70 over one run: no interval
    assert (lead["student"], lead["teacher"], lead["pretrained"]) == ("kd_s{0,1}", "teacher", "mnv2_ft")
    assert lead["lead_pt"] == pytest.approx(18.0) and lead["interval"] is None
    assert (metrics["budget"]["paper_epochs"], metrics["budget"]["short_epochs"]) == (250, 50)
    assert metrics["verdict"] and all(line in outputs for line in metrics["verdict"])
    # the study's decision rule reached the notebook as a mapping; one pre-trained run leaves it nothing to read
    assert metrics["params"]["study_decision"] == {"claim": "pre-training", "within_pt": 1.0}
    assert metrics["decision"] == ["Decision rule (pre-training, within 1 point; written before the study ran): no "
                                   "outcome fired: no pre-training comparison of runs recorded alike has two seeds or "
                                   "more on both sides."]
    assert metrics["decision"][0] in outputs
    assert {"seed_spread.png", "accuracy_curves.png"} <= {p.name for p in (folder / "figures").iterdir()}
