"""How far a distilled student could pass pre-training at best: its teacher's lead over the pre-trained model.

The claim (Farhat & Chen 2024): a random-init student distilled from a teacher is at least as accurate as
the same architecture pre-trained and fine-tuned. A student that mimics its teacher at best matches it, so
it can pass the pre-trained model by at most the teacher's lead over it. With :math:`T` the teacher's test
accuracy on the students' test images (its own run's when that is not recorded) and :math:`\\bar P` the
pre-trained, fine-tuned model's mean over its :math:`n_P` seeds, the **lead** is :math:`T - \\bar P` in points,
with a 95% interval:

- the teacher one run (its own seed spread unknown, :math:`T` taken as it is): a one-sample t interval on the
  pre-trained seeds, :math:`T - \\bar P \\pm t_{n_P-1,\\,0.975}\\, s_P/\\sqrt{n_P}`;
- the teacher over seeds too (per-seed teachers: one value per student seed): Welch's interval between the
  two (``compare``, Welch 1947; Satterthwaite 1946);
- the pre-trained model one run: no interval.

The lead bounds the claim; it is not the claim: whether a student passes pre-training is its own
comparison (``compare``), and this module never restates it. Like a comparison, a lead between runs recorded
by more than one code version or precision is ``mixed_provenance`` (``compare.mixed_provenance``; only when
the teacher is one of the study's runs, whose record the report reads).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Optional

from dapt.analysis.compare import Comparison, mixed_provenance, t_interval, welch


@dataclass(frozen=True)
class Headroom:
    """One teacher's lead over the pre-trained model its students in ``group`` are compared with: ``teacher``
    (its configuration label) over ``teacher_n`` runs, ``teacher_acc`` its mean on the students' test images
    (``teacher_on`` = "students"; "own run" when only its own run's is recorded; None when neither is),
    ``pretrained`` over ``pretrained_n`` seeds at ``pretrained_acc``; ``lead_pt`` = T − P̄ in points with its
    95% interval (``low_pt``, ``high_pt``) by ``interval`` ("one-sample t", "Welch"; None without one);
    ``student``: that teacher's best student (highest mean), whose record gave T; ``mixed_provenance``: the
    teacher's and the pre-trained runs recorded unalike."""

    group: str
    student: str
    teacher: Optional[str]
    teacher_n: int
    teacher_acc: Optional[float]
    teacher_on: Optional[str]
    pretrained: str
    pretrained_acc: float
    pretrained_n: int
    lead_pt: Optional[float] = None
    low_pt: Optional[float] = None
    high_pt: Optional[float] = None
    interval: Optional[str] = None
    mixed_provenance: bool = False


def _teacher(student: dict[str, Any], configs: list[dict[str, Any]]) -> tuple[Optional[str], Optional[dict]]:
    """The label of the student's teacher (its configuration's, ``t_seed{0,1,2}`` for per-seed teachers) and
    that configuration (None for a teacher outside the study: its run's name)."""
    name = student.get("teacher_run")
    owner = next((c for c in configs if name and name in c.get("runs", ())), None)
    return (owner["run"] if owner else name), owner


def lead(teacher_values: list[float], teacher_n: int,
         pretrained_values: list[float]) -> tuple[float, Optional[float], Optional[float], Optional[str]]:
    """(T − P̄ in points, interval low, high, how) for the teacher's and the pre-trained model's accuracies."""
    if teacher_n > 1:
        w = welch(teacher_values, pretrained_values)
        return w.gap_pt, w.ci_low_pt, w.ci_high_pt, "Welch" if w.ci_low_pt is not None else None
    gap = 100 * (statistics.fmean(teacher_values) - statistics.fmean(pretrained_values))
    if len(pretrained_values) < 2:
        return gap, None, None, None
    se = 100 * statistics.stdev(pretrained_values) / math.sqrt(len(pretrained_values))
    return (gap, *t_interval(gap, se, len(pretrained_values) - 1), "one-sample t")


def headroom(comps: list[Comparison], configs: list[dict[str, Any]]) -> list[Headroom]:
    """Per student group, teacher and pre-trained model of the pre-training comparisons, the teacher's lead."""
    named = {c["run"]: c for c in configs}
    best: dict[tuple, Comparison] = {}
    for c in comps:
        if c.claim != "pre-training":
            continue
        key = (c.group, _teacher(named[c.a], configs)[0], c.b)
        if key not in best or c.welch.mean_a > best[key].welch.mean_a:
            best[key] = c
    out = []
    for (group, teacher, pretrained), comparison in best.items():
        student, reference = named[comparison.a], named[pretrained]
        owner = _teacher(student, configs)[1]
        teacher_n = len(owner["runs"]) if owner else 1
        values, on = student.get("teacher_test_acc_values"), "students"
        if not values:
            values, on = student.get("teacher_run_test_acc_values"), "own run"
        common = dict(group=group, teacher=teacher, teacher_n=teacher_n, pretrained=pretrained,
                      pretrained_acc=reference["test_acc"], pretrained_n=reference["n"], student=comparison.a,
                      mixed_provenance=bool(owner) and mixed_provenance(owner, reference))
        if not values:
            out.append(Headroom(teacher_acc=None, teacher_on=None, **common))
            continue
        gap, low, high, how = lead(values, teacher_n, reference["test_acc_values"])
        out.append(Headroom(teacher_acc=statistics.fmean(values), teacher_on=on, lead_pt=gap, low_pt=low,
                            high_pt=high, interval=how, **common))
    return out
