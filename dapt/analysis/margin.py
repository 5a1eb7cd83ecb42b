"""How much teacher margin the headline claim needs, and whether a study's setting has it.

The claim (Farhat & Chen 2024): a random-init student distilled from a teacher is at least as accurate as
the same architecture pre-trained and fine-tuned. With :math:`T` the teacher's test accuracy on the
students' test images, :math:`P` the pre-trained, fine-tuned model's and :math:`S` the best distilled
student's (each the mean over its seeds), the teacher's **margin** is :math:`m = T - P` and the student's
**distillation gap** :math:`g = T - S`. Then :math:`S - P = m - g`, so the claim holds exactly when
:math:`m \\ge g`: distillation reaches pre-training only if the teacher leads the pre-trained model by at
least what the student loses to its teacher. :math:`m - g` is the best student's pre-training comparison
(``compare``), so its seed-noise verdict is that comparison's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from dapt.analysis.compare import Comparison


@dataclass(frozen=True)
class TeacherMargin:
    """One student group's best distilled student (highest mean test accuracy) against pre-training:
    ``teacher_acc`` T on the students' test images (``teacher_on`` = "students"; its own run's accuracy when
    that is not recorded, "own run"; None when neither is), ``margin_pt`` m and ``gap_pt`` g in points (None
    without T), ``holds`` (m ≥ g), and the best student's pre-training ``comparison``."""

    group: str
    teacher: Optional[str]
    teacher_acc: Optional[float]
    teacher_on: Optional[str]
    margin_pt: Optional[float]
    gap_pt: Optional[float]
    holds: Optional[bool]
    comparison: Comparison


def _teacher_label(student: dict[str, Any], configs: list[dict[str, Any]]) -> Optional[str]:
    """The configuration label of the student's teacher run (``t_seed{0,1,2}`` for per-seed teachers)."""
    name = student.get("teacher_run")
    owner = next((c for c in configs if name and name in c.get("runs", ())), None)
    return owner["run"] if owner else name


def teacher_margins(comps: list[Comparison], configs: list[dict[str, Any]]) -> list[TeacherMargin]:
    """Per student group with a pre-training comparison, the teacher margin of its best student."""
    named = {c["run"]: c for c in configs}
    best: dict[str, Comparison] = {}
    for c in comps:
        if c.claim == "pre-training" and (c.group not in best or c.welch.mean_a > best[c.group].welch.mean_a):
            best[c.group] = c
    out = []
    for group, comparison in best.items():
        student = named[comparison.a]
        teacher_acc, on = student.get("teacher_test_acc"), "students"
        if teacher_acc is None:
            teacher_acc, on = student.get("teacher_run_test_acc"), "own run"
        if teacher_acc is None:
            out.append(TeacherMargin(group, _teacher_label(student, configs), None, None, None, None, None, comparison))
            continue
        s, p = comparison.welch.mean_a, comparison.welch.mean_b
        # m ≥ g ⟺ S ≥ P: decided on the accuracies themselves, free of the subtractions' rounding
        out.append(TeacherMargin(group, _teacher_label(student, configs), teacher_acc, on, 100 * (teacher_acc - p),
                                 100 * (teacher_acc - s), s >= p, comparison))
    return out
