"""The report's conclusions as sentences, computed from the study's configurations (``dapt.seeds``) and
their comparisons (``dapt.compare``) so they cannot contradict the tables: each distiller against no
teacher and against pre-training, the teacher margin the latter needs (``dapt.margin``), the teacher's init,
synthetic images, and what the budget can show.

Each gap is judged by ``compare.RULE`` (Welch's t test on the seeds, p < 0.05); with one seed the
sentence says the spread is unknown instead of calling a gap a finding. Whether the students had
converged is ``budget.RULE``.
"""
from __future__ import annotations

from typing import Any

from dapt.analysis import budget, margin
from dapt.analysis.compare import comparisons, group_label, judged_text, mean_text, percent_text, signed_points
from dapt.analysis.rows import is_synthetic, real_images
from dapt.analysis.configurations import configurations

SHORT_BUDGET_EPOCHS = 50  # fewer epochs than this is a short budget
PAPER_EPOCHS = 250


def _span(values: list) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _spread_note(comps: list[dict[str, Any]]) -> str:
    unknown = [c for c in comps if c["verdict"] == "unknown"]
    if not unknown:
        return ""
    which = ("this gap exceeds" if len(comps) == 1 else "these gaps exceed" if len(unknown) == len(comps)
             else f"the gaps of {', '.join(c['a_run'] for c in unknown)} exceed")
    sides = "One seed each" if all(c["n_a"] == c["n_b"] == 1 for c in unknown) else "One seed on at least one side"
    return f" {sides}, so whether {which} the seed spread is unknown: not a finding until repeated over seeds."


def _missing(rows: list[dict[str, Any]]) -> str:
    missing = [name for r in rows for name in r.get("missing", [])]
    return (f" ({len(missing)} run{'s' if len(missing) > 1 else ''} without a test accuracy, failed or "
            f"unfinished: {', '.join(missing)}.)" if missing else "")


def generated_sentence(row: dict[str, Any]) -> str:
    """What a generate run made and how much of it its teacher recognises."""
    made = f"{int(row['n_images']):,} images" if isinstance(row.get("n_images"), (int, float)) else "no images yet"
    text = f"Synthetic set {row['run']}: {made} from {row.get('generator')}"
    acc = row.get("teacher_acc_on_synthetic")
    if isinstance(acc, (int, float)):
        text += (f"; the teacher {row.get('teacher_run')} classifies {percent_text(acc)} of them as the class they "
                 f"were made for")
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


def _against_reference(label: str, comps: list[dict[str, Any]], reference: str) -> str:
    base = comps[0]["b"]
    items = "; ".join(f"{c['a_name']} ({c['a_run']}: {mean_text(c['a'])}) {signed_points(c['gap_pt'])}"
                      f"{judged_text(c)}" for c in comps)
    sizes = {c["a"].get("image_size") for c in comps} - {None}
    note = (f" (the students ran at {'/'.join(map(str, sorted(sizes)))} px, {base['run']} at "
            f"{base.get('image_size')} px)" if sizes and sizes != {base.get("image_size")} else "")
    own = "; own run" if base.get("stage") == "teacher" else ""
    return (f"{label}, against {reference} ({base['run']}: {mean_text(base)}{own}){note}: {items}."
            f"{_spread_note(comps)}")


def _no_pretraining(label: str, arch: str, real: int | None, configs: list[dict[str, Any]]) -> str:
    pretrained = [c for c in configs if c.get("stage") == "teacher" and c.get("init") == "ft"
                  and c.get("model") == arch and real_images(c) == real]
    finished = [c for c in pretrained if c.get("test_acc") is not None]
    if finished:
        return (f"{label}: no distilled {arch} student has a test accuracy yet to compare with the pre-trained, "
                f"fine-tuned {finished[-1]['run']} ({mean_text(finished[-1])}; own run).")
    if pretrained:
        return (f"{label}: the pre-trained, fine-tuned run {', '.join(c['run'] for c in pretrained)} has no test "
                f"accuracy (failed or unfinished), so distillation is not yet compared with pre-training.")
    return (f"{label}: the study has no pre-trained, fine-tuned {arch} run (a teacher-stage run with init ft) on "
            f"the same training images, so whether distillation replaces pre-training is not tested for it.")


def _pair_text(label: str, c: dict[str, Any]) -> str:
    return (f"{label}, {c['a_name']} ({c['a_run']}: {mean_text(c['a'])}) against {c['b_name']} ({c['b_run']}: "
            f"{mean_text(c['b'])}): {signed_points(c['gap_pt'])}{judged_text(c)}")


def _pair_sentence(label: str, c: dict[str, Any]) -> str:
    return f"{_pair_text(label, c)}.{_spread_note([c])}"


def _synthetic_sentence(label: str, c: dict[str, Any], same_steps: dict[str, Any] | None) -> str:
    text = _pair_text(label, c)
    ratio, epochs, real_epochs = c.get("step_ratio"), c["a"].get("epochs"), c["b"].get("epochs")
    if ratio and abs(ratio - 1) > 0.05:
        how = ("the same epochs over a larger set" if epochs == real_epochs
               else f"{epochs} epochs over a larger set against {real_epochs}")
        text += f"; it also took {ratio:.1f}× the training steps ({how})"
    elif ratio:
        fewer = f"; {epochs} epochs over the larger set against {real_epochs}" if epochs != real_epochs else ""
        text += f"; both took as many training steps (±5%{fewer}), so the gap is not longer training"
    if same_steps is not None:
        text += (f"; against the real images alone trained for as many steps ({same_steps['b_run']}: "
                 f"{mean_text(same_steps['b'])}) it is {signed_points(same_steps['gap_pt'])}"
                 f"{judged_text(same_steps)}")
    mine, theirs = (c.get(k) or "none" for k in ("diffaug", "real_diffaug"))
    if mine != theirs:
        text += (f"; and DiffAugment {mine} against {theirs} for the real-only run, so the difference is not "
                 f"the synthetic images' alone")
    return text + "." + _spread_note([c] + ([same_steps] if same_steps else []))


def _seeds_sentence(configs: list[dict[str, Any]]) -> str:
    counts = sorted({c["n"] for c in configs if c.get("stage") == "distill" and c["n"]})
    if max(counts, default=1) == 1:
        return ("Every configuration has one seed, so no gap below can be told apart from seed-to-seed variation "
                "(repeat them with `grid: {seed: [0, 1, 2]}`).")
    return (f"Each configuration's accuracy is the mean over its seeds (n = {_span(counts)} per student configuration) "
            f"± their sample standard deviation; gaps are judged against that spread (Welch's t test, p < 0.05).")


def _can_show(configs: list[dict[str, Any]], comps: list[dict[str, Any]], plateau_rows: list[dict[str, Any]]) -> str:
    """What this study's budget can and cannot show, from its own numbers."""
    distill = [c for c in configs if c.get("stage") == "distill"]
    epochs = [int(c["epochs"]) for c in distill if isinstance(c.get("epochs"), (int, float))]
    when = f"after {_span(epochs)} epochs" if epochs else "at its budget"
    one_seed = all(c["n"] <= 1 for c in distill)
    can = f"which configuration was ahead {when} at these settings" + (" with this one seed" if one_seed else "")
    beyond = [c for c in comps if c["verdict"] == "beyond"]
    if beyond:
        can += f", and, for the {len(beyond)} gap{'s' if len(beyond) > 1 else ''} beyond seed noise, that it is not seed luck"
    cannot = []
    if any(r["status"] == "still improving" for r in plateau_rows if r.get("stage") == "distill"):
        cannot.append("which ends higher when trained to convergence (students still improving at their last epoch; "
                      f"the paper trains {PAPER_EPOCHS} epochs)")
    if one_seed:
        cannot.append("whether any gap exceeds the seed spread (one seed per configuration)")
    elif any(c["verdict"] == "within" for c in comps):
        cannot.append("a direction for the gaps within seed noise")
    if not any(c["claim"] == "pre-training" for c in comps):
        cannot.append("whether distillation replaces pre-training (no finished pre-trained, fine-tuned run of a student "
                      "architecture to compare with)")
    return (f"What this study can show: {can}. What it cannot: " + "; ".join(cannot) + "."
            if cannot else f"What this study can show: {can}.")


def sentences(rows: list[dict[str, Any]], generated: list[dict[str, Any]] = ()) -> list[str]:
    """The report's conclusions as sentences, computed from the rows (so they always match the tables).

    The rows (``report.collect``) are grouped into configurations (``seeds.configurations``). First which
    images the accuracies are on and how many seeds; the synthetic sets (``generated``: rows of
    ``report.collect_generated``); then, per student architecture and real training-set size, every
    distiller against no teacher and against the pre-trained, fine-tuned run, the teacher margin that
    comparison needs (``dapt.margin``: m ≥ g), the teacher's init, and real + synthetic images, each gap
    judged by ``compare.RULE``; last the budget (``budget.RULE``) and what the study can and cannot show.
    """
    configs = configurations(rows)
    distill = [c for c in configs if c.get("stage") == "distill"]
    if not distill:
        return ["No student run in this study yet, so there is nothing to conclude."]
    totals = {r.get("test_images") for r in rows if r.get("test_images") is not None}
    images = f"all {int(totals.pop()):,} test images" if len(totals) == 1 else "all test images"
    out = [f"Accuracies below are final accuracies on {images}, each run at its own image size.", _seeds_sentence(configs)]
    out.extend(generated_sentence(row) for row in generated)
    comps = comparisons(configs)
    several = len({real_images(c) for c in distill}) > 1
    for arch in dict.fromkeys(c.get("student") for c in distill):
        for real in dict.fromkeys(real_images(c) for c in distill if c.get("student") == arch):
            group = [c for c in distill if c.get("student") == arch and real_images(c) == real]
            label = group_label(group[0], several)
            mine = [c for c in comps if c["group"] == label]
            against_none = [c for c in mine if c["claim"] == "no teacher"]
            real_only = [c for c in group if not is_synthetic(c)]
            if against_none:
                out.append(_against_reference(label, against_none, "no teacher") + _missing(real_only))
            elif real_only:
                out.append(_no_baseline(label, real_only))
            pretraining = [c for c in mine if c["claim"] == "pre-training"]
            out.append(_against_reference(label, pretraining, "the pre-trained, fine-tuned model")
                       if pretraining else _no_pretraining(label, str(arch), real, configs))
            out.extend(margin.sentence(label, m) for m in margin.teacher_margins(pretraining, configs))
            out.extend(_pair_sentence(label, c) for c in mine if c["claim"] == "teacher init")
            for c in (c for c in mine if c["claim"] == "synthetic"):
                same = next((s for s in mine if s["claim"] == "synthetic vs same steps" and s["a_run"] == c["a_run"]), None)
                out.append(_synthetic_sentence(label, c, same))
    plateau_rows = budget.plateaus(configs)
    out.extend([_budget_sentence(distill), budget.sentence(plateau_rows), _can_show(configs, comps, plateau_rows)])
    return out


def _no_baseline(label: str, real_only: list[dict[str, Any]]) -> str:
    distilled = [c for c in real_only if c.get("distiller") != "none" and c.get("test_acc") is not None]
    if not distilled:
        return (f"{label}: no distilled student has a test accuracy yet, so no distiller can be judged."
                f"{_missing(real_only)}")
    return (f"{label}: there is no finished no-teacher (`none`) baseline trained as long to measure the distillers "
            f"({', '.join(c['run'] for c in distilled)}) against.{_missing(real_only)}")
