"""The report's conclusions as sentences, computed from the study's rows so they cannot contradict
its table: the gain of distillation over training from scratch, distillation against pre-training,
and whether the budget tests the paper's setting or only itself."""
from __future__ import annotations

from typing import Any

from .report import is_synthetic, pretraining_gap, real_images, synthetic_gains

SHORT_BUDGET_EPOCHS = 50  # fewer epochs than this is a short budget
# Single-seed noise: in fashion_quick's setting the `none` students of seeds 0, 1, 2 spread over 1.8
# (MobileNetV2) and 2.2 (EfficientNet-Lite0) points, so a one-seed gain below this is not a finding.
SEED_NOISE_POINTS = 2.0
PAPER_EPOCHS = 250


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return f"{abs(value):.2f} point" + ("" if f"{abs(value):.2f}" == "1.00" else "s")


def _span(values: list) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _gain_sentence(arch: str, mine: list[dict[str, Any]]) -> str:
    baselines = [r for r in mine if r.get("distiller") == "none" and r.get("test_acc") is not None]
    distilled = [r for r in mine if r.get("distiller") != "none" and r.get("test_acc") is not None]
    if baselines:  # a fair gain: the students trained as long as the baseline (not its longer controls)
        distilled = [r for r in distilled if r.get("epochs") == baselines[-1].get("epochs")] or distilled
    missing = [r["run"] for r in mine if r.get("test_acc") is None]
    note = (f" ({len(missing)} run{'s' if len(missing) > 1 else ''} without a test accuracy, failed or "
            f"unfinished: {', '.join(missing)}.)" if missing else "")
    if not distilled:
        return f"{arch}: no distilled student has a test accuracy yet, so no distiller can be judged.{note}"
    best = max(distilled, key=lambda r: r["test_acc"])
    if not baselines:
        return (f"{arch}: the best distiller is {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), "
                f"but there is no finished no-teacher (`none`) baseline to measure a gain against.{note}")
    base = baselines[-1]  # the one gains_over_scratch uses
    gain = 100 * (best["test_acc"] - base["test_acc"])
    if round(gain, 2) >= SEED_NOISE_POINTS:
        return (f"{arch}: the best distiller, {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), "
                f"beats the no-teacher baseline {base['run']} ({_pct(base['test_acc'])}) by "
                f"+{_points(gain)}.{note}")
    if round(gain, 2) > 0:
        return (f"{arch}: the best distiller, {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), is "
                f"ahead of the no-teacher baseline {base['run']} ({_pct(base['test_acc'])}) by +{_points(gain)}, "
                f"within single-seed noise (runs that differ only in their seed spread about "
                f"{SEED_NOISE_POINTS:.0f} points in this setting).{note}")
    where = "level with it" if round(gain, 2) == 0 else f"{_points(gain)} below it"
    return (f"{arch}: no distiller beats the no-teacher baseline {base['run']} ({_pct(base['test_acc'])}); "
            f"the best, {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), is {where}.{note}")


def _pretraining_sentence(label: str, arch: str, real: int | None, rows: list[dict[str, Any]],
                          gaps: dict[tuple, dict[str, Any]]) -> str:
    gap = gaps.get((arch, real))
    if gap is None:
        pretrained = [r for r in rows if r.get("stage") == "teacher" and r.get("init") == "ft"
                      and r.get("model") == arch and real_images(r) == real]
        finished = [r for r in pretrained if r.get("test_acc") is not None]
        if finished:
            return (f"{label}: no distilled {arch} student has a test accuracy yet to compare with the pre-trained, "
                    f"fine-tuned {finished[-1]['run']} ({_pct(finished[-1]['test_acc'])}, own run).")
        if pretrained:
            return (f"{label}: the pre-trained, fine-tuned run {', '.join(r['run'] for r in pretrained)} has no test "
                    f"accuracy (failed or unfinished), so distillation is not yet compared with pre-training.")
        return (f"{label}: the study has no pre-trained, fine-tuned {arch} run (a teacher-stage run with "
                f"init ft) on the same training images, so whether distillation replaces pre-training is not "
                f"tested for it.")
    sizes = ""
    if gap.get("best_image_size") != gap.get("pretrained_image_size"):
        sizes = (f" (note: the student ran at {gap.get('best_image_size')} px, the pre-trained model at "
                 f"{gap.get('pretrained_image_size')} px)")
    points = round(gap["gap_pt"], 2)
    relation = ("level with" if points == 0 else
                f"{_points(points)} {'above' if points > 0 else 'below'}")
    outcome = ("distillation from random init matched or passed pre-training here" if points >= 0 else
               "distillation from random init did not reach pre-training here")
    return (f"{label}: the best distilled student, {gap['best_run']} ({_pct(gap['best_acc'])}), is {relation} the "
            f"pre-trained, fine-tuned {gap['pretrained_run']} ({_pct(gap['pretrained_acc'])}, own run){sizes}: "
            f"{outcome}.")


def _synthetic_sentence(label: str, gain: dict[str, Any]) -> str:
    points = round(gain["gain_pt"], 2)
    mine, theirs = (gain.get(k) or "none" for k in ("diffaug", "real_diffaug"))
    if abs(points) < SEED_NOISE_POINTS:
        outcome = f"within single-seed noise (about {SEED_NOISE_POINTS:.0f} points), so no clear effect"
    elif mine != theirs or abs((gain.get("step_ratio") or 1) - 1) > 0.05:
        outcome = "beyond single-seed noise"  # the notes say what else differs: DiffAugment, steps
    else:
        outcome = f"beyond single-seed noise: the synthetic images {'helped' if points > 0 else 'hurt'}"
    sign = "+" if points > 0 else ("−" if points < 0 else "±")
    notes = (f"; it also took {gain['step_ratio']:.1f}× the training steps (the same epochs over a larger set)"
             if gain.get("step_ratio") and abs(gain["step_ratio"] - 1) > 0.05 else "")
    if "same_steps_run" in gain:
        extra = round(gain["same_steps_gain_pt"], 2)
        verdict = ("within single-seed noise" if abs(extra) < SEED_NOISE_POINTS else
                   "so the synthetic images, not the longer training, made the difference" if extra > 0 else
                   "so the longer training, not the synthetic images, made the difference")
        notes += (f"; the real images alone trained for as many steps ({gain['same_steps_run']}) reach "
                  f"{_pct(gain['same_steps_acc'])}, {'+' if extra > 0 else '−' if extra < 0 else '±'}"
                  f"{_points(extra)} for the synthetic run, {verdict}")
    if mine != theirs:
        notes += (f"; and DiffAugment {mine} against {theirs} for the real-only run, so the difference is not "
                  f"the synthetic images' alone")
    return (f"{label}, {gain['distiller']}: adding {gain['synthetic_images']:,} synthetic images "
            f"({gain['synset_size']}) gives {_pct(gain['acc'])} ({gain['run']}) against {_pct(gain['real_acc'])} on "
            f"the real images alone ({gain['real_run']}): {sign}{_points(points)}, {outcome}{notes}.")


def generated_sentence(row: dict[str, Any]) -> str:
    """What a generate run made and how much of it its teacher recognises."""
    made = f"{int(row['n_images']):,} images" if isinstance(row.get("n_images"), (int, float)) else "no images yet"
    text = f"Synthetic set {row['run']}: {made} from {row.get('generator')}"
    acc = row.get("teacher_acc_on_synthetic")
    if isinstance(acc, (int, float)):
        text += f"; the teacher {row.get('teacher_run')} classifies {_pct(acc)} of them as the class they were made for"
    return text + "."


def _budget_sentence(distill: list[dict[str, Any]]) -> str:
    epochs = [int(r["epochs"]) for r in distill if isinstance(r.get("epochs"), (int, float))]
    subsets = {r["train_subset"] for r in distill if "train_subset" in r}
    if not subsets:
        data = ""
    elif subsets == {None}:
        data = " on all training images"
    elif None in subsets:
        data = " on all or a subset of the training images"
    else:
        data = f" on a {_span(sorted(subsets))}-image training subset"
    if not epochs:
        return ("Budget: the students' epochs are not recorded, so it is unknown whether this is a short budget "
                f"or the paper's {PAPER_EPOCHS}-epoch setting.")
    trained = f"Budget: the students trained for {_span(epochs)} epoch{'s' if max(epochs) > 1 else ''}{data}"
    if max(epochs) < SHORT_BUDGET_EPOCHS:
        return (f"{trained}, a short budget (fewer than {SHORT_BUDGET_EPOCHS} epochs), so these comparisons test "
                f"that budget, not the paper's {PAPER_EPOCHS}-epoch setting.")
    if min(epochs) < SHORT_BUDGET_EPOCHS:
        return (f"{trained}: some have a short budget (fewer than {SHORT_BUDGET_EPOCHS} epochs) and some not, "
                f"so comparisons across them mix budgets, and the short runs do not test the paper's "
                f"{PAPER_EPOCHS}-epoch setting.")
    if min(epochs) >= PAPER_EPOCHS:
        return f"{trained}, as long as the paper's {PAPER_EPOCHS}-epoch setting."
    return (f"{trained}, not a short budget ({SHORT_BUDGET_EPOCHS} epochs or more) but below the paper's "
            f"{PAPER_EPOCHS}-epoch setting.")


def sentences(rows: list[dict[str, Any]], generated: list[dict[str, Any]] = ()) -> list[str]:
    """The report's conclusions as sentences, computed from the rows (so they always match the table).

    First which images the accuracies are on; then, per student architecture, the best distiller's
    gain over its ``none`` baseline and the best distilled student against the pre-trained, fine-tuned
    run of that architecture, each at one real training-set size, with what synthetic images
    (``generated``: rows of ``report.collect_generated``) changed; last, the training budget of the students.
    """
    distill = [r for r in rows if r.get("stage") == "distill"]
    if not distill:
        return ["No student run in this study yet, so there is nothing to conclude."]
    totals = {r.get("test_images") for r in rows if r.get("test_images") is not None}
    images = f"all {int(totals.pop()):,} test images" if len(totals) == 1 else "all test images"
    out = [f"Accuracies below are final accuracies on {images}, each run at its own image size."]
    out.extend(generated_sentence(row) for row in generated)
    gaps = {(g["student"], g["real_images"]): g for g in pretraining_gap(rows)}
    synthetic = synthetic_gains(rows)
    several_sizes = len({real_images(r) for r in distill}) > 1
    for arch in dict.fromkeys(r.get("student") for r in distill):
        mine = [r for r in distill if r.get("student") == arch]
        for real in dict.fromkeys(real_images(r) for r in mine):
            label = f"{arch} on {real:,} real images" if several_sizes and real is not None else str(arch)
            group = [r for r in mine if real_images(r) == real]
            real_only = [r for r in group if not is_synthetic(r)]
            if real_only:
                out.append(_gain_sentence(label, real_only))
            out.append(_pretraining_sentence(label, str(arch), real, rows, gaps))
            out.extend(_synthetic_sentence(label, g) for g in synthetic
                       if g["student"] == arch and g["real_images"] == real)
    out.append(_budget_sentence(distill))
    return out
