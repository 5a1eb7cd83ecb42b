"""The report's statistics (``dapt.analysis.compare``, ``headroom``): Welch's 95% interval, Holm's adjusted p
and the gap detectable at 80% power, each against an independent computation on derived inputs, with their
degenerate cases (every seed identical, one seed on a side); like with like over the runs' provenance; and
the sentences and records built on them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from dapt.analysis import compare, render
from dapt.analysis.rows import collect
from dapt.analysis.summary import Summary

SAMPLES = [([0.70, 0.72, 0.71], [0.74, 0.75, 0.77]),
           ([0.70, 0.73, 0.71], [0.71, 0.72, 0.74]),
           ([0.70, 0.72], [0.60, 0.61, 0.65, 0.62]),
           ([0.75, 0.75, 0.75], [0.70, 0.72, 0.74]),  # no spread on one side: df = n_b − 1
           ([0.7612, 0.7577, 0.7731, 0.7702, 0.7655], [0.7519, 0.7633, 0.7488])]


# ---- the interval ------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy's note on a side with no spread
@pytest.mark.parametrize("a, b", SAMPLES)
def test_the_interval_is_welchs_as_scipy_computes_it(a, b):
    got = compare.welch(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    low, high = reference.confidence_interval(0.95)
    assert (got.ci_low_pt, got.ci_high_pt) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert got.df == pytest.approx(reference.df) and got.p == pytest.approx(reference.pvalue)
    assert got.se_pt == pytest.approx(100 * math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)))
    assert got.ci_low_pt < got.gap_pt < got.ci_high_pt


def test_every_seed_identical_makes_the_gap_exact():
    higher = compare.welch([0.7, 0.7, 0.7], [0.6, 0.6])
    assert (higher.ci_low_pt, higher.ci_high_pt) == (pytest.approx(10.0), pytest.approx(10.0))
    assert (higher.se_pt, higher.p, higher.mde_pt, higher.mde_nominal_pt, higher.direction) == (0.0, 0.0, 0.0, 0.0,
                                                                                              "higher")
    level = compare.welch([0.7, 0.7], [0.7, 0.7])
    assert (level.gap_pt, level.ci_low_pt, level.ci_high_pt, level.p, level.mde_pt) == (0.0, 0.0, 0.0, 1.0, 0.0)
    assert level.verdict == "within" and render.verdict_text(level) == "no gap larger than 0.0 points (these seeds)"


def test_one_seed_on_a_side_has_no_interval_p_or_detectable_gap():
    one = compare.welch([0.80], [0.70, 0.71, 0.72])
    assert one.gap_pt == pytest.approx(9.0) and one.verdict == "unknown"
    assert (one.se_pt, one.ci_low_pt, one.ci_high_pt, one.p, one.p_holm, one.family, one.mde_pt) == (None,) * 7
    assert render.verdict_text(one) == "not judged (one seed)"


# ---- Holm ----------------------------------------------------------------------------------------------

def holm_rejects(p_values: list[float], alpha: float) -> set[int]:
    """Holm's step-down procedure at ``alpha``, as the 1979 paper states it: walk the p values up from the
    smallest, rejecting the j-th (from 0) while it is at most alpha / (m − j); stop at the first that is not."""
    m = len(p_values)
    rejected = set()
    for j, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        if p_values[i] > alpha / (m - j):
            break
        rejected.add(i)
    return rejected


def holm_by_step_down(p_values: list[float]) -> list[float]:
    """Each hypothesis's adjusted p: the smallest level at which the step-down procedure rejects it (1 when
    it rejects it at no level below 1). The procedure only changes its answer where alpha crosses some
    (m − j)·p, so those are the levels to try."""
    m = len(p_values)
    levels = sorted({(m - j) * p for j, p in enumerate(sorted(p_values))} | {1.0})
    return [next((alpha for alpha in levels if alpha <= 1 and i in holm_rejects(p_values, alpha)), 1.0)
            for i in range(m)]


def test_holm_on_a_hand_derived_example():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to 0.06: monotone)
    assert compare.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert compare.holm([0.5, 0.6]) == [1.0, 1.0]  # 2 x 0.5 caps at 1, and the next may not be smaller
    assert compare.holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])
    assert compare.holm([0.03]) == [0.03] and compare.holm([]) == []


@pytest.mark.parametrize("m", [2, 5, 12, 38])
def test_holm_is_the_step_down_procedure(m):
    rng = np.random.default_rng(m)
    p_values = list(np.concatenate([rng.uniform(0, 0.01, m // 3), rng.uniform(0, 1, m - m // 3)]))
    assert compare.holm(p_values) == pytest.approx(holm_by_step_down(p_values))


def seeded(run: str, stage: str, accs: list[float], **fields) -> list[dict]:
    """A configuration's rows, one per seed: ``run_s<seed>``, with the params that make them one."""
    return [{"run": f"{run}_s{seed}", "stage": stage, "test_acc": acc, "image_size": 32, "test_images": 10000,
             "epochs": 3, "train_subset": 6000, "batch_size": 128, **fields,
             "params": {"name": run, "seed": seed}} for seed, acc in enumerate(accs)]


def students(student: str, accs: dict[str, list[float]], pretrained: list[float] | None = None) -> list[dict]:
    """Per distiller, the seeds of a ``student`` (``none``: no teacher), and the same architecture pre-trained."""
    rows = [r for distiller, values in accs.items()
            for r in seeded(f"{student}_{distiller}", "distill", values, student=student, distiller=distiller)]
    if pretrained:
        rows += seeded(f"{student}_ft", "teacher", pretrained, student=student, model=student, init="ft")
    return rows


def summarise(rows: list[dict]) -> Summary:
    return Summary.of(rows, paper_epochs=250, short_budget_epochs=50)


def test_the_verdict_is_holms_not_the_raw_p():
    # kd's raw p is about 0.02: beyond noise alone, not among four comparisons of which none is stronger
    rows = students("m", {"none": [0.70, 0.72, 0.71], "kd": [0.74, 0.75, 0.77], "crd": [0.70, 0.73, 0.71],
                          "srrl": [0.69, 0.72, 0.72], "dkd": [0.71, 0.70, 0.735]})
    comps = {c.a: c for c in summarise(rows).comparisons}
    kd = comps["m_kd_s{0,1,2}"].welch
    assert kd.p < compare.ALPHA and compare.welch([0.74, 0.75, 0.77], [0.70, 0.72, 0.71]).direction == "higher"
    raw = [c.welch.p for c in comps.values()]
    assert [c.welch.p_holm for c in comps.values()] == pytest.approx(holm_by_step_down(raw))
    assert {c.welch.family for c in comps.values()} == {4} and kd.p_holm >= compare.ALPHA
    assert kd.verdict == "within"
    assert render.verdict_text(kd) == f"no gap larger than {kd.mde_pt:.1f} points (these seeds)"
    [sentence] = render.claim_sentences(summarise(rows))
    assert sentence.endswith(f"all 4 with no gap larger than {max(c.welch.mde_pt for c in comps.values()):.1f} "
                             f"points (these seeds).") and "beyond" not in sentence


def test_the_family_is_every_comparison_with_a_p():
    rows = students("m", {"none": [0.70, 0.72, 0.71], "kd": [0.80, 0.81, 0.805], "crd": [0.75]},
                    pretrained=[0.85, 0.86, 0.84])
    comps = summarise(rows).comparisons
    judged = [c for c in comps if c.welch.p is not None]
    assert len(comps) == 4 and len(judged) == 2  # crd has one seed: not in the family
    assert [c.welch.p_holm for c in judged] == pytest.approx(compare.holm([c.welch.p for c in judged]))
    assert {c.welch.family for c in judged} == {2} and all(c.welch.mde_level == compare.ALPHA / 2 for c in judged)
    assert {(c.welch.verdict, c.welch.family) for c in comps if c.welch.p is None} == {("unknown", None)}
    table = render.claims_table(comps)
    assert table.count("| – | – | – | not judged (one seed) |") == 2 and "Holm p (over 2)" in table


def test_ties_in_a_family_stay_exact():
    rows = students("m", {"none": [0.70, 0.70, 0.70], "kd": [0.75, 0.75, 0.75], "crd": [0.70, 0.73, 0.71]})
    comps = {c.a: c.welch for c in summarise(rows).comparisons}
    tie = comps["m_kd_s{0,1,2}"]
    assert (tie.p, tie.p_holm, tie.mde_pt, tie.direction) == (0.0, 0.0, 0.0, "higher")
    assert (tie.ci_low_pt, tie.ci_high_pt) == (pytest.approx(5.0), pytest.approx(5.0))


# ---- the detectable gap ---------------------------------------------------------------------------------

def power_by_integration(gap: float, se: float, df: float, level: float) -> float:
    """P(|T'| > c) for T' = (Z + gap/se) / sqrt(V/df), Z normal and V chi-square(df): the noncentral t's
    definition, integrated over V with normal tails (no noncentral-t code)."""
    critical, shift = stats.t.isf(level / 2, df), gap / se

    def rejects_given(v: float) -> float:
        bound = critical * math.sqrt(v / df)
        return stats.norm.sf(bound - shift) + stats.norm.cdf(-bound - shift)

    return integrate.quad(lambda v: rejects_given(v) * stats.chi2.pdf(v, df), 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("a, b", SAMPLES)
@pytest.mark.parametrize("family", [1, 4, 38])
def test_the_detectable_gap_is_rejected_with_80_percent_power(a, b, family):
    tested = compare.welch(a, b)
    judged = compare.judged(tested, tested.p, family)
    level = compare.ALPHA / family
    assert judged.mde_level == level and judged.mde_nominal_pt == tested.mde_nominal_pt
    assert power_by_integration(judged.mde_pt, judged.se_pt, judged.df, level) == pytest.approx(0.8, abs=1e-4)
    assert compare.rejection_chance(judged.mde_pt, judged.se_pt, judged.df, level) == pytest.approx(0.8, abs=1e-6)
    assert power_by_integration(judged.mde_nominal_pt, judged.se_pt, judged.df, compare.ALPHA) == \
        pytest.approx(0.8, abs=1e-4)
    # a smaller gap is missed more often than 1 in 5
    assert power_by_integration(0.9 * judged.mde_pt, judged.se_pt, judged.df, level) < 0.8
    assert (judged.mde_pt > judged.mde_nominal_pt) == (family > 1)


def test_the_detectable_gap_in_the_normal_limit():
    # df → ∞, SE = 1, α = 0.05: z_{0.975} + z_{0.8} = 1.95996 + 0.84162 (the far tail adds ~1e-6)
    assert compare.detectable_gap(1.0, 1e7, 0.05) == pytest.approx(1.959964 + 0.841621, abs=1e-3)
    assert compare.detectable_gap(2.5, 1e7, 0.05) == pytest.approx(2.5 * compare.detectable_gap(1.0, 1e7, 0.05))
    # few degrees of freedom at a Bonferroni level: the bound grows, and stays exact
    wide = compare.detectable_gap(1.0, 2.0, 0.05 / 38)
    assert wide > 30 and compare.rejection_chance(wide, 1.0, 2.0, 0.05 / 38) == pytest.approx(0.8, abs=1e-6)
    assert compare.detectable_gap(0.0, None, 0.05) == 0.0


# ---- like with like ----------------------------------------------------------------------------------------

def provenance(commit: str, **precision: str) -> dict:
    return {"dapt": "0.1.0", "commit": commit * 40, "dirty": False, "torch": "2.14.1", "device": "cpu",
            "device_name": "Test CPU", "precision": precision}


def write_run(study: Path, name: str, stage: str, acc: float, seed: int, record: dict | None, **params) -> None:
    folder = study / name
    folder.mkdir(parents=True)
    metrics = {"status": "done", "stage": stage, "test_acc": acc, "test_images": 1000, "image_size": 32,
               "history": [], "params": {"image_size": 32, "epochs": 3, "train_subset": 600, "seed": seed,
                                         "run_dir": f"runs/{study.name}/{name}", **params}}
    if record is not None:
        metrics["provenance"] = record
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


KD, NONE, CRD, AU, PRETRAINED = [0.71, 0.72, 0.73], [0.70, 0.705, 0.69], [0.76, 0.75, 0.77], [0.60, 0.62, 0.61], \
    [0.80, 0.81, 0.79]


@pytest.fixture
def recorded(tmp_path):
    """Students recorded by code aaaaaaa at float32 but for crd's last seed (code bbbbbbb) and au's first
    (its teacher's outputs in bfloat16); the none baseline without a teacher; the pre-trained runs, whose
    record names their own model's precision under ``teacher``."""
    study = tmp_path / "recorded"
    for seed in range(3):
        write_run(study, f"ft_s{seed}", "teacher", PRETRAINED[seed], seed, provenance("a", teacher="float32"),
                  model="mnv2", init="ft")
        write_run(study, f"none_s{seed}", "distill", NONE[seed], seed, provenance("a", student="float32"),
                  student="mnv2", distiller="none")
        write_run(study, f"kd_s{seed}", "distill", KD[seed], seed,
                  provenance("a", student="float32", teacher="float32"), student="mnv2", distiller="kd")
        write_run(study, f"crd_s{seed}", "distill", CRD[seed], seed,
                  provenance("b" if seed == 2 else "a", student="float32", teacher="float32"), student="mnv2",
                  distiller="crd")
        write_run(study, f"au_s{seed}", "distill", AU[seed], seed,
                  provenance("a", student="float32", teacher="bfloat16" if seed == 0 else "float32"),
                  student="mnv2", distiller="align_uniform")
    # recorded before provenance, of another student: compared with nothing, counted in the provenance line
    write_run(study, "old", "distill", 0.5, 0, None, student="resnet18", distiller="kd")
    return study


def test_rows_and_configurations_carry_what_recorded_them(recorded):
    rows = {r["run"]: r for r in collect(recorded)}
    kd, pretrained, old = rows["kd_s0"], rows["ft_s0"], rows["old"]
    assert (kd["code"], kd["precision"], kd["model_precision"], kd["teacher_precision"]) == (
        "aaaaaaa", "student float32, teacher float32", "float32", "float32")
    assert (pretrained["precision"], pretrained["model_precision"], pretrained["teacher_precision"]) == (
        "teacher float32", "float32", None)
    assert (old["code"], old["precision"], old["model_precision"], old["provenance"]) == ("unknown",) * 3 + (None,)
    configs = {c["run"]: c for c in Summary.read(recorded).configurations}
    assert configs["crd_s{0,1,2}"]["codes"] == ["aaaaaaa", "bbbbbbb"]
    assert configs["au_s{0,1,2}"]["teacher_precisions"] == ["bfloat16", "float32"]
    assert configs["none_s{0,1,2}"]["teacher_precisions"] == [] and "provenance" not in configs["kd_s{0,1,2}"]


def test_comparisons_of_runs_recorded_unalike_are_marked_and_left_out_of_the_sentences(recorded):
    summary = Summary.read(recorded)
    mixed = {(c.claim, c.a): c.mixed_provenance for c in summary.comparisons}
    assert mixed == {("no teacher", "kd_s{0,1,2}"): False,  # a teacher precision on one side only: alike
                     ("no teacher", "crd_s{0,1,2}"): True,  # two code versions
                     ("no teacher", "au_s{0,1,2}"): True,  # teacher outputs in two precisions
                     ("pre-training", "kd_s{0,1,2}"): False,  # both models trained in float32
                     ("pre-training", "crd_s{0,1,2}"): True, ("pre-training", "au_s{0,1,2}"): True}
    # kept in the Holm family: six comparisons, every one with a p
    assert {c.welch.family for c in summary.comparisons} == {6}
    table = render.claims_table(summary.comparisons)
    assert sum(line.endswith(f"{render.MIXED} |") for line in table.splitlines()) == 4
    assert "\n- crd_s{0,1,2} − none_s{0,1,2}: code aaaaaaa, bbbbbbb against aaaaaaa; precision student float32, " \
           "teacher float32 against student float32\n" in table
    assert "\n- au_s{0,1,2} − ft_s{0,1,2}: code aaaaaaa against aaaaaaa; precision student float32, teacher " \
           "bfloat16 / student float32, teacher float32 against teacher float32\n" in table
    sentences = render.claim_sentences(summary)
    kd_gap = render.points(100 * (np.mean(KD) - np.mean(NONE)))
    assert sentences[0].startswith(f"mnv2, distilled vs no teacher: {kd_gap} points; ")
    assert sentences[-1] == ("Left out of these sentences: 4 comparisons of runs recorded by more than one code "
                             "version or precision († in the claims table).")
    assert not any("crd" in line or "au_s" in line for line in render.answers(summary))
    record = summary.record()
    [crd] = [c for c in record["comparisons"] if (c["claim"], c["a_run"]) == ("no teacher", "crd_s{0,1,2}")]
    assert (crd["mixed_provenance"], crd["codes_a"], crd["codes_b"]) == (True, "aaaaaaa; bbbbbbb", "aaaaaaa")


def test_provenance_lines_count_code_versions_precisions_and_older_runs(recorded):
    [line] = render.provenance_lines(Summary.read(recorded))
    assert line == ("Provenance: 2 code versions and 2 precisions (bfloat16, float32) recorded the 16 runs: "
                    "14 runs at aaaaaaa, 1 run at bbbbbbb; 1 run recorded before provenance (unknown); torch 2.14.1; "
                    "cpu (Test CPU).")
    older = students("m", {"none": [0.7, 0.71], "kd": [0.72, 0.73]})
    assert render.provenance_lines(summarise(older)) == [
        "Provenance: all 4 runs predate provenance records, so like with like cannot be checked."]


# ---- headroom ------------------------------------------------------------------------------------------------

def with_teacher(rows: list[dict], teacher: str, on_students: list[float], per_seed: bool = False) -> list[dict]:
    """The rows, each distilled student of ``teacher`` (``<teacher>_s<seed>`` when ``per_seed``) scoring
    ``on_students[seed]`` on its test images."""
    out = []
    for row in rows:
        if row["stage"] == "distill" and row["distiller"] != "none":
            seed = row["params"]["seed"]
            row = dict(row, teacher_run=f"{teacher}_s{seed}" if per_seed else teacher,
                       teacher_test_acc=on_students[seed])
        out.append(row)
    return out


def test_headroom_of_one_teacher_run_is_a_one_sample_interval_on_the_pretrained_seeds():
    rows = with_teacher(students("m", {"kd": [0.74, 0.75, 0.77], "crd": [0.71, 0.72, 0.70]},
                                 pretrained=[0.80, 0.81, 0.795]), "big", [0.85] * 3)
    [h] = summarise(rows).headroom
    assert (h.student, h.teacher, h.teacher_n, h.interval) == ("m_kd_s{0,1,2}", "big", 1, "one-sample t")
    assert h.lead_pt == pytest.approx(100 * (0.85 - np.mean([0.80, 0.81, 0.795])))
    low, high = stats.ttest_1samp([0.80, 0.81, 0.795], 0.85).confidence_interval()  # of the pre-trained mean
    assert (h.low_pt, h.high_pt) == (pytest.approx(100 * (0.85 - high)), pytest.approx(100 * (0.85 - low)))
    line = render.headroom_line(h)
    assert line == (f"Headroom, m: teacher big scores 85.00% on the students' test images, {render.points(h.lead_pt)} "
                    f"points against the pre-trained m_ft_s{{0,1,2}} (95% interval "
                    f"{render.interval(h.low_pt, h.high_pt)}, pre-trained seeds only: one teacher run); a student "
                    f"that at best matches its teacher passes the pre-trained model by at most that.")
    assert line in render.prose(summarise(rows))


def test_headroom_of_per_seed_teachers_is_welchs_interval():
    on_students = [0.86, 0.84, 0.85]
    teachers = seeded("big", "teacher", [0.9, 0.9, 0.9], student="big", model="big", init="ft")
    rows = with_teacher(students("m", {"kd": [0.74, 0.75, 0.77]}, pretrained=[0.80, 0.81, 0.795]), "big",
                        on_students, per_seed=True)
    [h] = summarise(teachers + rows).headroom
    assert (h.teacher, h.teacher_n, h.interval) == ("big_s{0,1,2}", 3, "Welch")
    low, high = stats.ttest_ind(on_students, [0.80, 0.81, 0.795], equal_var=False).confidence_interval()
    assert h.lead_pt == pytest.approx(100 * (np.mean(on_students) - np.mean([0.80, 0.81, 0.795])))
    assert (h.low_pt, h.high_pt) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert f"95% interval {render.interval(h.low_pt, h.high_pt)})" in render.headroom_line(h)


def test_headroom_between_runs_recorded_unalike_is_marked():
    teachers = seeded("big", "teacher", [0.9, 0.9, 0.9], student="big", model="big", init="ft", code="bbbbbbb",
                      model_precision="float32")
    rows = with_teacher(students("m", {"kd": [0.74, 0.75, 0.77]}, pretrained=[0.80, 0.81, 0.795]), "big",
                        [0.86, 0.84, 0.85], per_seed=True)
    rows = [dict(r, code="aaaaaaa", model_precision="float32") for r in rows]
    [h] = summarise(teachers + rows).headroom
    assert h.mixed_provenance and render.headroom_line(h).endswith(
        "† (the teacher's and the pre-trained runs recorded by other code or precisions)")
    [alike] = summarise([dict(r, code="bbbbbbb") for r in teachers] + [dict(r, code="bbbbbbb") for r in rows]).headroom
    assert not alike.mixed_provenance and "†" not in render.headroom_line(alike)


def test_headroom_without_pretrained_seeds_or_spread():
    one = with_teacher(students("m", {"kd": [0.74, 0.75]}, pretrained=[0.80]), "big", [0.83, 0.83])
    [h] = summarise(one).headroom
    assert (h.lead_pt, h.low_pt, h.interval) == (pytest.approx(3.0), None, None)
    assert "(no interval: one pre-trained run)" in render.headroom_line(h)
    flat = with_teacher(students("m", {"kd": [0.74, 0.75]}, pretrained=[0.80, 0.80]), "big", [0.78, 0.78])
    [h] = summarise(flat).headroom
    assert (h.low_pt, h.high_pt) == (pytest.approx(-2.0), pytest.approx(-2.0))
    assert render.headroom_line(h).endswith("a student that at best matches its teacher does not pass the "
                                            "pre-trained model.")


# ---- what the report writes on them -------------------------------------------------------------------------

def test_answers_are_at_most_five_headline_first_with_interval_and_holm_p():
    rows = []
    for student in ("a", "b", "c"):
        rows += students(student, {"none": [0.70, 0.72, 0.71], "kd": [0.74, 0.75, 0.77], "crd": [0.70, 0.73, 0.71]},
                         pretrained=[0.80, 0.81, 0.795])
    summary = summarise(rows)
    lines = render.answers(summary)
    assert len(lines) == 5
    assert [line.split(":")[0] for line in lines] == [
        *(f"{s}, best distilled student vs pre-trained, fine-tuned" for s in "abc"),
        *(f"{s}, best distilled student vs no teacher" for s in "ab")]
    best = next(c for c in summary.comparisons if (c.claim, c.a) == ("pre-training", "a_kd_s{0,1,2}"))
    w = best.welch
    holm = "Holm p < 0.001" if w.p_holm < 0.001 else f"Holm p = {w.p_holm:.3f}"
    assert lines[0] == (f"a, best distilled student vs pre-trained, fine-tuned: a_kd_s{{0,1,2}} "
                        f"{render.points(w.gap_pt)} points against a_ft_s{{0,1,2}} (95% interval "
                        f"{render.interval(w.ci_low_pt, w.ci_high_pt)}; {holm}): {render.verdict_text(w)}.")
    assert render.verdict(summary).startswith(render.bullets(lines))


def test_no_sentence_calls_a_gap_within_noise_no_effect():
    rows = students("m", {"none": [0.70, 0.72, 0.71], "kd": [0.70, 0.73, 0.71]}, pretrained=[0.71, 0.72, 0.74])
    summary = summarise(rows)
    text = "\n".join(render.prose(summary) + render.answers(summary)) + render.claims_table(summary.comparisons)
    assert "no gap larger than" in text
    assert not any(words in text for words in ("no effect", "within seed noise", "level with", "equal"))


def history(*accs: float, train: tuple[float, ...] = ()) -> list[dict]:
    return [{"epoch": i + 1, "val_acc": a, **({"train_acc": train[i]} if train else {})} for i, a in enumerate(accs)]


def test_the_plateau_line_counts_every_student_and_names_those_it_cannot_judge():
    rising, flat = history(0.5, 0.6, 0.7), history(0.69, 0.70, 0.70)
    once = [{"epoch": 1, "train_acc": 0.8}, {"epoch": 2, "train_acc": 0.85},
            {"epoch": 3, "val_acc": 0.7, "train_acc": 0.9}]  # evaluated at the last epoch only
    rows = [*seeded("up", "distill", [0.7, 0.7], student="m", distiller="kd", history=rising),
            *seeded("flat", "distill", [0.7, 0.7], student="m", distiller="crd", history=flat),
            *seeded("once", "distill", [0.7, 0.7], student="m", distiller="srrl", history=once),
            *seeded("once_more", "distill", [0.7, 0.7], student="m", distiller="dkd", history=once)]
    summary = summarise(rows)
    plateau = next(line for line in render.budget_lines(summary) if line.startswith("Plateau"))
    assert plateau == ("Plateau: 1 of 4 student configurations still improving at their last epoch (+10.00 points "
                       "over the last third), 1 plateaued, 2 not judged (one evaluated epoch): once_s{0,1}, "
                       "once_more_s{0,1}; gaps of those still improving may change with more epochs.")
    # the last epoch's training accuracy, judged or not
    assert "| once_s{0,1} | 2 | 3 | – | validation | – | – | – | – | 90.00 | unknown |" in \
        render.plateau_table(summary)
    unjudged = summarise(rows[4:])
    assert render.budget_lines(unjudged)[2] == ("Plateau: none of the 2 student configurations can be judged (one "
                                                "evaluated epoch): once_s{0,1}, once_more_s{0,1}; convergence is "
                                                "unknown.")


def test_the_record_has_every_new_column_flat():
    rows = students("m", {"none": [0.70, 0.72, 0.71], "kd": [0.74, 0.75, 0.77]}, pretrained=[0.80, 0.81, 0.795])
    record = summarise(rows).record()
    for row in record["configurations"] + record["comparisons"]:
        assert not any(isinstance(value, (dict, list, tuple, set)) for value in row.values()), row
    comparison = record["comparisons"][0]
    assert {"gap_pt", "se_pt", "ci_low_pt", "ci_high_pt", "p", "p_holm", "family", "mde_pt", "mde_level",
            "mde_nominal_pt", "verdict", "direction", "mixed_provenance", "codes_a", "codes_b", "precisions_a",
            "precisions_b"} <= set(comparison)
    assert {"codes", "precisions"} <= set(record["configurations"][0])
    assert "teacher_margins" not in record and record["headroom"][0]["lead_pt"] is None  # no teacher recorded
