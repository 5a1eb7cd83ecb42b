"""A ``Summary`` as Markdown: its tables, a few answers for the top of a report and the outcome of the study's
decision rule (``decision``), one short sentence per claim, and a few lines on what the budget, the teacher and
the runs' provenance can and cannot show. Every number here is the summary's; nothing is computed but its
wording.

A gap within seed noise is never written as no effect: it reads "no gap larger than X points (these seeds)",
X the gap these seeds detect with 80% power at the level that bounds the verdict rule (``compare``).
Comparisons of runs recorded by other code or precisions (``Comparison.mixed_provenance``) are marked † in
the claims table and left out of every sentence, which says how many it left out."""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Optional

from dapt.analysis.budget import PLATEAU_POINTS
from dapt.analysis.compare import ALPHA, POWER, Comparison, Welch, best_of
from dapt.analysis.configurations import METRICS
from dapt.analysis.decision import CANNOT_TELL, FAILS, HOLDS, decide
from dapt.analysis.headroom import Headroom
from dapt.analysis.rows import COLUMNS, IDEAL, cell, markdown_table, real_images
from dapt.analysis.summary import Summary
from dapt.core.provenance import UNKNOWN, study_line

MIXED = "†"  # marks a comparison of runs recorded by more than one code version or precision
SEED_NOISE_RULE = (f"**Seed-noise rule**: a gap A − B, with its 95% interval (Welch–Satterthwaite), is beyond seed "
                   f"noise when Welch's p, Holm-adjusted over the study's m comparisons with a p, is below {ALPHA}; "
                   f"otherwise it reads \"no gap larger than X points\": X is the gap these seeds detect with "
                   f"{POWER:.0%} power at level {ALPHA}/m, which bounds Holm's. Not judged: one seed on a side. "
                   f"{MIXED}: runs of other code or precisions, left out of the sentences.")
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
VERDICTS = {"higher": "higher beyond seed noise", "lower": "lower beyond seed noise",
            "unknown": "not judged (one seed)"}  # by Welch.direction; "within" reads as its detectable gap


def points(value: float) -> str:
    """A gap in points, signed: ``+2.00``, ``−0.38`` (a true minus), ``+0.00``."""
    return f"{round(value, 2) + 0.0:+.2f}".replace("-", "−")


def accuracy(mean: float, std: Optional[float], n: int) -> str:
    """``73.12 ± 0.40 (n=3)`` (mean ± sample std over the seeds), ``73.12 (n=1)`` for one seed."""
    return (f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}") + f" (n={n})"


def p_value(p: Optional[float]) -> str:
    return "–" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def interval(low: Optional[float], high: Optional[float]) -> str:
    """An interval in points, ``−6.91 to −2.87``; ``–`` without one."""
    return "–" if low is None else f"{points(low)} to {points(high)}"


def undetected(mde_pt: float) -> str:
    """What a gap within seed noise says: its detectable gap ``mde_pt``, the true gap these seeds would find
    beyond noise 4 times in 5 (``compare``), never that there is none."""
    return f"no gap larger than {mde_pt:.1f} points (these seeds)"


def verdict_text(w: Welch) -> str:
    """``lower beyond seed noise``, ``no gap larger than 12.3 points (these seeds)`` or ``not judged (one
    seed)``."""
    return undetected(w.mde_pt) if w.direction == "within" else VERDICTS[w.direction]


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


def claims_table(comps: list[Comparison]) -> str:
    """One row per comparison: A and B with their accuracies, the gap and its 95% interval, Welch's raw and
    Holm-adjusted p and the verdict; a comparison of runs recorded by other code or precisions is marked, and
    a footnote under the table names what recorded them."""
    if not comps:
        return "No two configurations of this study make one of the comparisons."
    family = max((c.welch.family or 0 for c in comps), default=0)
    columns = [("claim", "claim"), ("group", "student"), ("a", "A: test acc %"), ("b", "B: test acc %"),
               ("gap", "A − B (points)"), ("ci", "95% interval"), ("p", "Welch p"),
               ("p_holm", f"Holm p (over {family})"), ("verdict", "verdict")]
    shown = [{"claim": c.claim, "group": c.group, "gap": points(c.welch.gap_pt),
              "ci": interval(c.welch.ci_low_pt, c.welch.ci_high_pt), "p": p_value(c.welch.p),
              "p_holm": p_value(c.welch.p_holm), "a": f"{c.a}: {accuracy(c.welch.mean_a, c.welch.std_a, c.welch.n_a)}",
              "b": f"{c.b}: {accuracy(c.welch.mean_b, c.welch.std_b, c.welch.n_b)}",
              "verdict": verdict_text(c.welch) + (f" {MIXED}" if c.mixed_provenance else "")} for c in comps]
    return "\n\n".join([markdown_table(shown, columns), *_mixed_footnotes(comps)])


def _mixed_footnotes(comps: list[Comparison]) -> list[str]:
    """Under the claims table, what recorded each side of each marked comparison (a side's precision labels
    apart by " / ": a label holds commas)."""
    marked = [c for c in comps if c.mixed_provenance]
    if not marked:
        return []
    return [f"{MIXED} Runs recorded by more than one code version or precision (counted in the Holm family, left "
            f"out of the sentences):\n" + bullets([
                f"{c.a} − {c.b}: code {', '.join(c.codes_a)} against {', '.join(c.codes_b)}; precision "
                f"{' / '.join(c.precisions_a)} against {' / '.join(c.precisions_b)}" for c in marked])]


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

def _alike(comps: list[Comparison]) -> list[Comparison]:
    """The comparisons a sentence may state: those of runs recorded alike."""
    return [c for c in comps if not c.mixed_provenance]


def _verdicts(comps: list[Comparison]) -> str:
    """``all 4 lower beyond seed noise``, ``both with no gap larger than 9.1 points (these seeds)``, ``1 higher
    beyond seed noise, 2 with no gap larger than 12.0 points (these seeds)``: for several within noise, the
    largest of their detectable gaps, which bounds each."""
    counts = Counter(c.welch.direction for c in comps)
    within = max((c.welch.mde_pt for c in comps if c.welch.direction == "within"), default=None)
    phrases = {**VERDICTS, "within": None if within is None else undetected(within)}
    if len(counts) == 1:
        [direction] = counts
        if direction == "unknown" or len(comps) == 1:
            return phrases[direction]
        every = "both" if len(comps) == 2 else f"all {len(comps)}"
        return f"{every} {'with ' * (direction == 'within')}{phrases[direction]}"
    return ", ".join(f"{counts[d]} {'with ' * (d == 'within')}{phrases[d]}"
                     for d in ("higher", "lower", "within", "unknown") if counts[d])


def _gap_span(comps: list[Comparison]) -> str:
    """The comparisons' gaps as ``−2.00`` (one) or ``−4.39 to +0.68`` (their range)."""
    return _points_span([c.welch.gap_pt for c in comps])


def _points_span(values: list[float]) -> str:
    """Values in points as ``−2.00`` (one) or ``−4.39 to +0.68`` (their range)."""
    return points(values[0]) if len(values) == 1 else interval(min(values), max(values))


def claim_sentence(comps: list[Comparison]) -> str:
    """One sentence for the comparisons of one claim in one student group: the gaps' range and the verdicts."""
    first = comps[0]
    notes = []
    if all(c.same_steps for c in comps):
        notes.append("at as many training steps")
    else:
        ratios = sorted({round(c.step_ratio, 1) for c in comps if c.step_ratio and not c.same_steps})
        if ratios:
            notes.append(f"at {' and '.join(f'{r:.1f}×' for r in ratios)} the training steps")
    if any(c.diffaug for c in comps):
        notes.append("with another DiffAugment than real only")
    extra = "".join(f", {note}" for note in notes)
    return f"{first.group}, {CLAIM_TITLES[first.claim]}: {_gap_span(comps)} points{extra}; {_verdicts(comps)}."


def claim_sentences(summary: Summary) -> list[str]:
    """One sentence per claim and student group, in the claims table's order, over the comparisons of runs
    recorded alike; then how many comparisons were left out for mixing code versions or precisions."""
    by_claim: dict[tuple[str, str], list[Comparison]] = {}
    for c in _alike(summary.comparisons):
        by_claim.setdefault((c.group, c.claim), []).append(c)
    left_out = len(summary.comparisons) - sum(map(len, by_claim.values()))
    return [claim_sentence(comps) for comps in by_claim.values()] + (
        [f"Left out of these sentences: {left_out} comparison{'s' * (left_out != 1)} of runs recorded by more than "
         f"one code version or precision ({MIXED} in the claims table)."] if left_out else [])


ANSWERS = (("pre-training", "best distilled student vs pre-trained, fine-tuned"),
           ("no teacher", "best distilled student vs no teacher"),
           ("ideal images", "best student on generated images vs as many ideal ones"),
           ("synthetic", "best student on real + synthetic images vs real only"),
           ("teacher init", "best student's teacher init vs another"),
           ("synthetic vs same steps", "best student on real + synthetic images vs real only at as many steps"))
MAX_ANSWERS = 5


def reading(c: Comparison) -> str:
    """A judged comparison as read: ``kd_s{0,1,2} −0.42 points against ft_s{0,1,2} (95% interval −1.20 to
    +0.36; Holm p = 0.412): no gap larger than 2.1 points (these seeds)``."""
    w = c.welch
    holm = f"Holm p {p_value(w.p_holm)}" if w.p_holm < 0.001 else f"Holm p = {p_value(w.p_holm)}"
    return (f"{c.a} {points(w.gap_pt)} points against {c.b} (95% interval {interval(w.ci_low_pt, w.ci_high_pt)}; "
            f"{holm}): {verdict_text(w)}")


def answer(c: Comparison, title: str) -> str:
    """One comparison as an answer: the gap, its interval, the Holm-adjusted p and the verdict."""
    return f"{c.group}, {title}: {reading(c)}."


def answers(summary: Summary) -> list[str]:
    """At most ``MAX_ANSWERS`` bullets for the top of a report, the headline first: per claim of ``ANSWERS``
    and student group, the comparison of its best A (``compare.best_of``: highest mean, among those judged of
    runs recorded alike)."""
    out = []
    for claim, title in ANSWERS:
        out += [answer(c, title) for c in best_of(summary.comparisons, claim).values()]
    return out[:MAX_ANSWERS]


OUTCOMES = {HOLDS: "the claim holds at this setting", FAILS: "the claim fails at this setting",
            CANNOT_TELL: "these seeds cannot tell whether the claim holds at this setting"}


def decision_lines(summary: Summary, decision: Optional[Mapping[str, Any]]) -> list[str]:
    """The study's decision rule (its params file's ``decision``; the module ``decision`` states the rule), per
    student group: the outcome that fired, numbered as the rule numbers them, on the comparison it read; when
    these seeds cannot tell, the gap they detect (a verdict within seed noise states it already). Then how many
    of the claim's comparisons it left out for mixing code versions or precisions. Nothing without a rule."""
    if not decision:
        return []
    claim, within = decision["claim"], decision["within_pt"]
    rule = f"Decision rule ({claim}, within {within:g} point{'s' * (within != 1)}; written before the study ran)"
    lines = []
    for o in decide(summary, decision):
        lower = o.comparison.welch.direction == "lower"
        detected = (f" (they detect a gap of {o.detectable_pt:.1f} points)" if o.fired == CANNOT_TELL and lower
                    else " (lower, but by less than the margin)" if o.fired == HOLDS and lower else "")
        lines.append(f"{rule}: ({o.fired}) fired for {o.comparison.group}: {reading(o.comparison)}; "
                     f"{OUTCOMES[o.fired]}{detected}.")
    if not lines:
        lines.append(f"{rule}: no outcome fired: no {claim} comparison of runs recorded alike has two seeds or more "
                     f"on both sides.")
    left_out = sum(c.mixed_provenance for c in summary.comparisons if c.claim == claim)
    if left_out:
        lines.append(f"Left out of the decision rule: {left_out} {claim} comparison{'s' * (left_out != 1)} of runs "
                     f"recorded by more than one code version or precision ({MIXED} in the claims table).")
    return lines


def _factor(config: dict[str, Any]) -> int:
    """Added images per real one, as trained on (``synset_size`` as recorded)."""
    return round(int(config.get("n_synthetic") or 0) / (real_images(config) or 1))


def ideal_lines(summary: Summary) -> list[str]:
    """What a study with ideal images (``generator: holdout``) asks of them, per student group: do the students
    on the most ideal images reach the pre-trained, fine-tuned model, and how far do generated images fall
    short of as many ideal ones (each beside what both add over the real images alone); over the comparisons
    of runs recorded alike."""
    configs = {c["run"]: c for c in summary.configurations}
    alike = _alike(summary.comparisons)
    lines = []
    reach: dict[str, list[Comparison]] = {}
    for c in alike:
        if c.claim == "pre-training" and configs[c.a].get("generator") == IDEAL:
            reach.setdefault(c.group, []).append(c)
    for group, comps in reach.items():
        most = max(_factor(configs[c.a]) for c in comps)
        top = [c for c in comps if _factor(configs[c.a]) == most]
        directions = Counter(c.welch.direction for c in top)
        who = f"the {len(top)} distilled random-init students score" if len(top) > 1 else \
            "the distilled random-init student scores"
        head = (f"Ideal images vs pre-training, {group}: with {most}x ideal images, {who} {_gap_span(top)} points "
                f"against the pre-trained, fine-tuned {top[0].b}; {_verdicts(top)}")
        if directions["higher"]:
            tail = ("so at this budget an ideal generator lets a distilled random-init student beat the "
                    "pre-trained one")
        elif directions["lower"] == len(top):
            tail = "so at this budget even an ideal generator does not let distillation reach pre-training"
        else:
            tail = ("so these seeds cannot tell whether at this budget an ideal generator lets distillation reach "
                    "pre-training")
        lines.append(f"{head}, {tail}.")
    gains = {c.a: c.welch.gap_pt for c in alike if c.claim == "synthetic"}
    shortfall: dict[str, list[Comparison]] = {}
    for c in alike:
        if c.claim == "ideal images":
            shortfall.setdefault(c.group, []).append(c)
    for group, comps in shortfall.items():
        added = "; ".join(f"{configs[c.a].get('distiller')}: {points(gains[c.a])} against {points(gains[c.b])}"
                          for c in comps if c.a in gains and c.b in gains)
        lines.append(f"Generated vs ideal images, {group}: the generated images score {_gap_span(comps)} points "
                     f"against as many ideal ones at as many steps; {_verdicts(comps)}"
                     + (f"; over the real images alone, generated ones add, against ideal ones, {added} points"
                        if added else "") + ".")
    return lines


def headroom_line(h: Headroom) -> str:
    """The teacher's lead over the pre-trained model, and what it bounds."""
    head = f"Headroom, {h.group}"
    if h.teacher_acc is None:
        return f"{head}: the teacher's accuracy is not recorded, so its lead over the pre-trained model is unknown."
    where = "on the students' test images" if h.teacher_on == "students" else "in its own run"
    if h.interval is None:
        spread = "no interval: one pre-trained run"
    elif h.interval == "Welch":
        spread = f"95% interval {interval(h.low_pt, h.high_pt)}"
    else:  # the teacher's own seed spread is unknown: the interval holds the pre-trained side's only
        spread = f"95% interval {interval(h.low_pt, h.high_pt)}, pre-trained seeds only: one teacher run"
    bound = ("a student that at best matches its teacher passes the pre-trained model by at most that"
             if h.lead_pt > 0 else "a student that at best matches its teacher does not pass the pre-trained model")
    mark = f" {MIXED} (the teacher's and the pre-trained runs recorded by other code or precisions)" \
        if h.mixed_provenance else ""
    return (f"{head}: teacher {h.teacher} scores {100 * h.teacher_acc:.2f}% {where}, {points(h.lead_pt)} points "
            f"against the pre-trained {h.pretrained} ({spread}); {bound}.{mark}")


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


def budget_line(summary: Summary) -> str:
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


def _not_judged(summary: Summary, runs: list[str]) -> str:
    """Why the plateau rule could not judge these configurations: the evaluated epochs their curves hold."""
    evaluations = {summary.plateaus[run].evaluations for run in runs}
    return {frozenset({1}): "one evaluated epoch", frozenset({0}): "no evaluated epoch"}.get(
        frozenset(evaluations), "fewer than two evaluated epochs")


def plateau_line(summary: Summary) -> str:
    """Every student configuration counted: those still improving (or plateaued), and those not judged, named."""
    total = len(summary.students)
    rising = summary.still_improving()
    judged = summary.judged_students()
    unjudged = [c["run"] for c in summary.students if c["run"] not in judged]
    teachers = summary.still_improving("teacher")
    after = f" Teacher-stage runs still improving: {', '.join(teachers)}." if teachers else ""
    configurations = f"student configuration{'s' * (total != 1)}"
    if not judged:
        who = f"none of the {total} {configurations} can" if total > 1 else f"the {configurations} cannot"
        return (f"Plateau: {who} be judged ({_not_judged(summary, unjudged)}): {', '.join(unjudged)}; convergence "
                f"is unknown." + after)
    if rising:
        span = _points_span([summary.plateaus[run].gain_pt for run in rising])
        state = f"still improving at their last epoch ({span} points over the last third)"
        count = len(rising)
    else:
        state, count = "plateaued", len(judged)
    share = f"all {total}" if count == total else f"{count} of {total}"
    flat = len(judged) - len(rising)
    others = f", {flat} plateaued" if rising and flat else ""
    others += f", {len(unjudged)} not judged ({_not_judged(summary, unjudged)}): {', '.join(unjudged)}" \
        if unjudged else ""
    consequence = ("gaps of those still improving may change with more epochs" if rising
                   else "the budget does not limit the comparisons of those judged")
    return f"Plateau: {share} {configurations} {state}{others}; {consequence}." + after


def headroom_lines(summary: Summary) -> list[str]:
    return [headroom_line(h) for h in summary.headroom]


def budget_lines(summary: Summary) -> list[str]:
    """What the study's budget and setting can and cannot show."""
    lines = [_accuracies_line(summary), budget_line(summary), plateau_line(summary)]
    untested: dict[str, list[str]] = {}
    for group, claim in summary.untested:
        untested.setdefault(claim, []).append(group)
    lines += [f"Not tested, {CLAIM_TITLES[claim]}: {', '.join(groups)} ({UNTESTED_REASONS[claim]})."
              for claim, groups in untested.items()]
    if summary.missing:
        lines.append(f"Without a test accuracy (failed or unfinished): {', '.join(summary.missing)}.")
    return lines


def provenance_lines(summary: Summary) -> list[str]:
    """Who recorded the study's runs: how many code versions and precisions, how many runs predate provenance
    records (``unknown``), and the libraries and devices (``dapt.core.provenance.study_line``)."""
    if not summary.rows:
        return []
    before = sum((r.get("code") or UNKNOWN) == UNKNOWN for r in summary.rows)
    if before == len(summary.rows):
        return [f"Provenance: {'all ' * (before > 1)}{before} run{'s' * (before != 1)} predate provenance records, "
                f"so like with like cannot be checked."]
    versions = len({r["code"] for r in summary.rows if (r.get("code") or UNKNOWN) != UNKNOWN})
    precisions = sorted({value for r in summary.rows for value in (r.get("model_precision"), r.get("teacher_precision"))
                         if value and value != UNKNOWN})
    counted = (f"{versions} code version{'s' * (versions != 1)} and {len(precisions)} "
               f"precision{'s' * (len(precisions) != 1)}" + (f" ({', '.join(precisions)})" if precisions else ""))
    who = study_line(r.get("provenance") for r in summary.rows).removeprefix("provenance: ")
    return [f"Provenance: {counted} recorded the {len(summary.rows)} runs: {who}."]


def prose(summary: Summary) -> list[str]:
    """Every sentence the report writes outside its tables and answers: one per claim, the ideal-images answers
    when the study has ideal images, the teacher's headroom, the budget lines, then the runs' provenance."""
    if not summary.students:
        return ["No student run in this study yet, so there is nothing to conclude."]
    return (claim_sentences(summary) + ideal_lines(summary) + headroom_lines(summary) + budget_lines(summary)
            + provenance_lines(summary))


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def verdict(summary: Summary) -> str:
    """The report's conclusions: its answers, the claims table, its sentences and the budget lines."""
    top = answers(summary)
    return "\n\n".join([*([bullets(top)] if top else []), claims_table(summary.comparisons), bullets(prose(summary))])
