"""How much teacher margin the headline claim needs, and whether a study's setting has it.

The claim (Farhat & Chen 2024): a random-init student distilled from a teacher is at least as accurate as
the same architecture pre-trained and fine-tuned. With :math:`T` the teacher's test accuracy on the
students' test images, :math:`P` the pre-trained, fine-tuned model's and :math:`S` the best distilled
student's (each the mean over its seeds), the teacher's **margin** is :math:`m = T - P` and the student's
**distillation gap** :math:`g = T - S`. Then :math:`S - P = m - g`, so the claim holds exactly when
:math:`m \\ge g`: distillation reaches pre-training only if the teacher leads the pre-trained model by at
least what the student loses to its teacher. A teacher barely ahead of the pre-trained model leaves no
room for the distillation gap, whatever the distiller. :math:`m - g` is the pre-training comparison of
``dapt.compare`` for the best student, so its seed-noise verdict is that comparison's.
"""
from __future__ import annotations

from typing import Any


def _teacher_label(student: dict[str, Any], configs: list[dict[str, Any]]) -> str | None:
    """The configuration label of the student's teacher run (``t_seed{0,1,2}`` for per-seed teachers)."""
    name = student.get("teacher_run")
    owner = next((c for c in configs if name and name in c.get("runs", ())), None)
    return owner["run"] if owner else name


def teacher_margins(comps: list[dict[str, Any]], configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per student group with a pre-training comparison (``dapt.compare.comparisons``), the best distilled
    student's (highest mean test accuracy) teacher margin: ``teacher_acc`` :math:`T` (the teacher on the
    students' test images, ``teacher_on`` = "students"; its own run's accuracy when that is not recorded,
    "own run"; None when neither is), ``pretrained_acc`` :math:`P`, ``student_acc`` :math:`S`, ``margin_pt``
    :math:`m`, ``gap_pt`` :math:`g` (points, None without :math:`T`), ``holds`` (:math:`m \\ge g`) and
    ``comparison``: the best student's pre-training comparison."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in comps:
        if c["claim"] == "pre-training":
            groups.setdefault(c["group"], []).append(c)
    out = []
    for group, members in groups.items():
        best = max(members, key=lambda c: c["mean_a"])
        student, pretrained = best["a"], best["b"]
        teacher_acc, on = student.get("teacher_test_acc"), "students"
        if teacher_acc is None:
            teacher_acc, on = student.get("teacher_run_test_acc"), "own run"
        entry = {"group": group, "student_run": best["a_run"], "distiller": student.get("distiller"),
                 "pretrained_run": best["b_run"], "teacher_run": _teacher_label(student, configs),
                 "teacher_acc": teacher_acc, "teacher_on": on if teacher_acc is not None else None,
                 "student_acc": best["mean_a"], "pretrained_acc": best["mean_b"],
                 "margin_pt": None, "gap_pt": None, "holds": None, "comparison": best}
        if teacher_acc is not None:
            margin, gap = 100 * (teacher_acc - best["mean_b"]), 100 * (teacher_acc - best["mean_a"])
            # m ≥ g ⟺ S ≥ P: decided on the accuracies themselves, free of the subtractions' rounding
            entry.update(margin_pt=margin, gap_pt=gap, holds=best["mean_a"] >= best["mean_b"])
        out.append(entry)
    return out


def record(margins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The margins as flat rows (no configuration rows inside), for metrics.json."""
    return [{k: v for k, v in m.items() if k != "comparison"} for m in margins]
