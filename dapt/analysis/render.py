"""A ``Summary`` as Markdown: its tables, one short sentence per claim, and a few lines on what the
budget can and cannot show. Every number here is the summary's; nothing is computed but its wording."""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from dapt.analysis.budget import PLATEAU_POINTS
from dapt.analysis.compare import ALPHA, IDEAL, Comparison
from dapt.analysis.configurations import METRICS
from dapt.analysis.margin import TeacherMargin
from dapt.analysis.rows import COLUMNS, cell, markdown_table, real_images
from dapt.analysis.summary import Summary

SEED_NOISE_RULE = (f"**Seed-noise rule**: a gap is beyond seed noise when Welch's two-sided t test on the seeds' "
                   f"test accuracies gives p < {ALPHA} (each comparison on its own); a gap within it is not evidence "
                   f"of equality; with one seed on a side the spread is unknown.")
PLATEAU_RULE = (f"**Plateau rule**: a configuration whose per-epoch accuracy on its validation images (in runs "
                f"recorded before them, a test subset; seed mean, least-squares line over "
                f"the last third of its epochs) still rose by {PLATEAU_POINTS:.0f} point or more had not converged: "
                f"comparing it tests the budget, not the claim.")
CLAIM_TITLES = {"no teacher": "distilled vs no teacher", "pre-training": "distilled vs pre-trained, fine-tuned",
                "teacher init": "one teacher init vs another (ft, lp, fr)", "synthetic": "real + synthetic vs real only",
                "synthetic vs same steps": "real + synthetic vs real only at as many steps",
                "ideal images": "generated vs ideal images (as many, at as many steps)"}
UNTESTED_REASONS = {"no teacher": "no `none` baseline of the same setting and epochs",
                    "pre-training": "no pre-trained, fine-tuned run of that architecture on those images"}
VERDICTS = {"higher": "higher beyond seed noise", "lower": "lower beyond seed noise", "within": "within seed noise",
            "unknown": "not judged (one seed)"}  # by Welch.direction


def points(value: float) -> str:
    """A gap in points, signed: ``+2.00``, ``−0.38`` (a true minus), ``+0.00``."""
    return f"{round(value, 2) + 0.0:+.2f}".replace("-", "−")


def accuracy(mean: float, std: Optional[float], n: int) -> str:
    """``73.12 ± 0.40 (n=3)`` (mean ± sample std over the seeds), ``73.12 (n=1)`` for one seed."""
    return (f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}") + f" (n={n})"


def p_value(p: Optional[float]) -> str:
    return "–" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


# ---- tables ----------------------------------------------------------------------------------------

def value_cell(row: dict[str, Any], key: str) -> str:
    """``73.12 ± 0.45 (n=3)`` for the test accuracy, ``75.25 ± 0.30`` for another metric (its own n added
    when it differs), ``73.12 (n=1)`` for a single seed: the mean and sample std, in the table's units."""
    values = row.get(f"{key}_values") or []
    if not values:
        return "–"
    text = cell(key, row[key])
    if row.get(f"{key}_std") is not None:
        text += " ± " + cell(key, row[f"{key}_std"])
    if key == "test_acc" or len(values) != row.get("n"):
        text += f" (n={len(values)})"
    return text


CONFIG_COLUMNS = [("run", "configuration"), ("seeds", "seeds"),
                  *[(k, t.replace("at px)", "at px; mean ± std over seeds)")) for k, t in COLUMNS
                    if k not in ("run", "status", "wall_time_s")],
                  ("wall_time_s", "time s (mean)"), ("status", "status")]
BLOCK_COLUMNS = [("run", "configuration"), ("seeds", "seeds"), ("student", "student"), ("image_size", "px"),
                 ("teacher", "teacher (init, px)"), ("distiller", "distiller"), ("data", "training images"),
                 ("epochs", "epochs"), ("test_acc", "test acc % (all test images; mean ± std over seeds)"),
                 ("agreement", "agreement % with the teacher")]


def configuration_table(configs: list[dict[str, Any]], columns: list[tuple[str, str]] = CONFIG_COLUMNS) -> str:
    """The per-configuration table: every metric as mean ± sample std over the seeds."""
    shown = []
    for row in configs:
        cells = dict(row, seeds=", ".join("–" if s is None else str(s) for s in row.get("seeds", [])))
        cells.update({key: value_cell(row, key) for key in METRICS if key != "wall_time_s"})
        shown.append(cells)
    return markdown_table(shown, columns)


CLAIM_COLUMNS = [("claim", "claim"), ("group", "student"), ("a", "A: test acc %"), ("b", "B: test acc %"),
                 ("gap", "A − B (points)"), ("p", "Welch p"), ("verdict", "verdict")]


def claims_table(comps: list[Comparison]) -> str:
    """One row per comparison: A and B with their accuracies, the gap, Welch's p and the verdict."""
    if not comps:
        return "No two configurations of this study make one of the comparisons."
    shown = [{"claim": c.claim, "group": c.group, "gap": points(c.welch.gap_pt), "p": p_value(c.welch.p),
              "a": f"{c.a}: {accuracy(c.welch.mean_a, c.welch.std_a, c.welch.n_a)}",
              "b": f"{c.b}: {accuracy(c.welch.mean_b, c.welch.std_b, c.welch.n_b)}",
              "verdict": VERDICTS[c.welch.direction]} for c in comps]
    return markdown_table(shown, CLAIM_COLUMNS)


PLATEAU_COLUMNS = [("run", "configuration"), ("n", "seeds"), ("epochs", "epochs"), ("from_epoch", "from epoch"),
                   ("on", "per-epoch images"), ("from_acc", "acc % at that epoch"),
                   ("last_acc", "acc % at the last epoch"),
                   ("gain_pt", "gain since (points, least-squares)"), ("best_epoch", "best epoch"),
                   ("train_acc", "train acc % at the last epoch"), ("status", "verdict")]


def plateau_table(summary: Summary) -> str:
    seeds = {c["run"]: len(c.get("histories") or {}) for c in summary.configurations}
    shown = [{**vars(p), "run": run, "n": seeds[run], "gain_pt": None if p.gain_pt is None else points(p.gain_pt),
              **{k: None if getattr(p, k) is None else f"{100 * getattr(p, k):.2f}"
                 for k in ("from_acc", "last_acc", "train_acc")}} for run, p in summary.plateaus.items()]
    return markdown_table(shown, PLATEAU_COLUMNS)


# ---- sentences ---------------------------------------------------------------------------------------

def _verdicts(comps: list[Comparison]) -> str:
    """``all 4 lower beyond seed noise``, ``both within seed noise``, ``1 higher beyond seed noise, 2 within
    seed noise``."""
    counts = Counter(c.welch.direction for c in comps)
    if len(counts) == 1:
        [direction] = counts
        if direction == "unknown":
            return VERDICTS[direction]
        every = {1: "", 2: "both "}.get(len(comps), f"all {len(comps)} ")
        return every + VERDICTS[direction]
    return ", ".join(f"{counts[d]} {VERDICTS[d]}" for d in VERDICTS if counts[d])


def _gap_span(comps: list[Comparison]) -> str:
    """The comparisons' gaps as ``−2.00`` (one) or ``−4.39 to +0.68`` (their range)."""
    gaps = sorted(c.welch.gap_pt for c in comps)
    return points(gaps[0]) if len(gaps) == 1 else f"{points(gaps[0])} to {points(gaps[-1])}"


def claim_sentence(comps: list[Comparison]) -> str:
    """One sentence for the comparisons of one claim in one student group: verdicts and the gaps' range."""
    first = comps[0]
    notes = []
    if comps and all(c.same_steps for c in comps):
        notes.append("at as many training steps")
    else:
        ratios = sorted({round(c.step_ratio, 1) for c in comps if c.step_ratio and not c.same_steps})
        if ratios:
            notes.append(f"at {' and '.join(f'{r:.1f}×' for r in ratios)} the training steps")
    if any(c.diffaug for c in comps):
        notes.append("with another DiffAugment than real only")
    extra = "".join(f", {note}" for note in notes)
    return f"{first.group}, {CLAIM_TITLES[first.claim]}: {_verdicts(comps)}, {_gap_span(comps)} points{extra}."


def claim_sentences(summary: Summary) -> list[str]:
    """One sentence per claim and student group, in the claims table's order."""
    by_claim: dict[tuple[str, str], list[Comparison]] = {}
    for c in summary.comparisons:
        by_claim.setdefault((c.group, c.claim), []).append(c)
    return [claim_sentence(comps) for comps in by_claim.values()]


def _factor(config: dict[str, Any]) -> int:
    """Added images per real one, as trained on (``synset_size`` as recorded)."""
    return round(int(config.get("n_synthetic") or 0) / (real_images(config) or 1))


def ideal_lines(summary: Summary) -> list[str]:
    """What a study with ideal images (``generator: holdout``) asks of them, per student group: do the students
    on the most ideal images reach the pre-trained, fine-tuned model, and how far do generated images fall
    short of as many ideal ones (each beside what both add over the real images alone)."""
    configs = {c["run"]: c for c in summary.configurations}
    lines = []
    reach: dict[str, list[Comparison]] = {}
    for c in summary.comparisons:
        if c.claim == "pre-training" and configs[c.a].get("generator") == IDEAL:
            reach.setdefault(c.group, []).append(c)
    for group, comps in reach.items():
        most = max(_factor(configs[c.a]) for c in comps)
        top = [c for c in comps if _factor(configs[c.a]) == most]
        directions = Counter(c.welch.direction for c in top)
        who = f"the {len(top)} distilled random-init students score" if len(top) > 1 else \
            "the distilled random-init student scores"
        head = (f"Ideal images vs pre-training, {group}: with {most}x ideal images, {who} {_gap_span(top)} points "
                f"against the pre-trained, fine-tuned {top[0].b} ({_verdicts(top)})")
        if directions["higher"]:
            tail = ("so at this budget an ideal generator lets a distilled random-init student beat the "
                    "pre-trained one")
        elif directions["lower"] == len(top):
            tail = "so at this budget even an ideal generator does not let distillation reach pre-training"
        else:
            tail = ("so at this budget an ideal generator brings a distilled random-init student level with the "
                    "pre-trained one as far as these seeds can tell (within seed noise is not evidence of equality)")
        lines.append(f"{head}: {tail}.")
    gains = {c.a: c.welch.gap_pt for c in summary.comparisons if c.claim == "synthetic"}
    shortfall: dict[str, list[Comparison]] = {}
    for c in summary.comparisons:
        if c.claim == "ideal images":
            shortfall.setdefault(c.group, []).append(c)
    for group, comps in shortfall.items():
        added = "; ".join(f"{configs[c.a].get('distiller')}: {points(gains[c.a])} against {points(gains[c.b])}"
                          for c in comps if c.a in gains and c.b in gains)
        lines.append(f"Generated vs ideal images, {group}: the generated images score {_gap_span(comps)} points "
                     f"against as many ideal ones at as many steps ({_verdicts(comps)})"
                     + (f"; over the real images alone, generated ones add, against ideal ones, {added} points"
                        if added else "") + ".")
    return lines


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _accuracies_line(summary: Summary) -> str:
    images = f"all {summary.test_images:,} test images" if summary.test_images else "all test images"
    counts = summary.seed_counts
    if max(counts, default=1) == 1:
        return (f"Accuracies: final, on {images}, one seed per configuration, so no gap can be told apart from "
                f"seed-to-seed variation.")
    return f"Accuracies: final, on {images}; mean ± sample std over {_span(counts)} seeds per student configuration."


def _budget_line(summary: Summary) -> str:
    b = summary.budget
    if b.epochs is None:
        return "Budget: the students' epochs are not recorded."
    trained = f"Budget: the students trained {_span(list(b.epochs))} epochs"
    return trained + {
        "short": f", a short budget (under {b.short_epochs}; the paper trains {b.paper_epochs}): the table ranks "
                 f"the methods at this budget, not at convergence.",
        "mixed": f", some under {b.short_epochs} (a short budget) and some not: comparisons across them mix budgets.",
        "paper": f", the paper's {b.paper_epochs}-epoch setting.",
        "between": f", not a short budget ({b.short_epochs} or more) but under the paper's {b.paper_epochs}.",
        "unknown": ".",
    }[b.kind]


def _plateau_line(summary: Summary) -> str:
    judged, rising = summary.judged_students(), summary.still_improving()
    teachers = summary.still_improving("teacher")
    after = f" Teacher-stage runs still improving: {', '.join(teachers)}." if teachers else ""
    if not judged:
        return "Plateau: no student configuration has two or more epochs of history, so convergence is unknown." + after
    if not rising:
        return (f"Plateau: all {len(judged)} student configurations with a curve had plateaued, so the budget does "
                f"not limit their comparisons." + after)
    gains = sorted(summary.plateaus[run].gain_pt for run in rising)
    span = points(gains[0]) if len(gains) == 1 else f"{points(gains[0])} to {points(gains[-1])}"
    share = f"all {len(judged)}" if len(rising) == len(judged) else f"{len(rising)} of {len(judged)}"
    return (f"Plateau: {share} student configurations were still improving at their last epoch "
            f"({span} points over the last third), so their gaps may change with more epochs." + after)


def margin_line(m: TeacherMargin) -> str:
    """The teacher margin the pre-training claim needs (m ≥ g), and whether this setting has it."""
    head = f"Teacher margin, {m.group}"
    if m.teacher_acc is None:
        return f"{head}: the teacher's accuracy is not recorded, so m and g are unknown."
    where = "on the students' test images" if m.teacher_on == "students" else "in its own run"
    text = (f"{head}: teacher {m.teacher} scores {100 * m.teacher_acc:.2f}% {where}, m = {points(m.margin_pt)} points "
            f"above the pre-trained model and g = {points(m.gap_pt)} above the best student ({m.comparison.a}); "
            f"the claim needs m ≥ g: {'met' if m.holds else 'not met'}")
    return text + ("." if m.holds or m.margin_pt > 0 else ", the teacher not even ahead of the pre-trained model.")


def budget_lines(summary: Summary) -> list[str]:
    """What the study's budget and setting can and cannot show."""
    lines = [_accuracies_line(summary), _budget_line(summary), _plateau_line(summary)]
    lines += [margin_line(m) for m in summary.margins]
    untested: dict[str, list[str]] = {}
    for group, claim in summary.untested:
        untested.setdefault(claim, []).append(group)
    lines += [f"Not tested, {CLAIM_TITLES[claim]}: {', '.join(groups)} ({UNTESTED_REASONS[claim]})."
              for claim, groups in untested.items()]
    if summary.missing:
        lines.append(f"Without a test accuracy (failed or unfinished): {', '.join(summary.missing)}.")
    return lines


def prose(summary: Summary) -> list[str]:
    """Every sentence the report writes outside its tables: one per claim, the ideal-images answers when the study
    has ideal images, then the budget lines."""
    if not summary.students:
        return ["No student run in this study yet, so there is nothing to conclude."]
    return claim_sentences(summary) + ideal_lines(summary) + budget_lines(summary)


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def verdict(summary: Summary) -> str:
    """The report's conclusions: the claims table, its sentences and the budget lines."""
    return "\n\n".join([claims_table(summary.comparisons), bullets(prose(summary))])
