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

from dapt.analysis.compare import judged_text, mean_text, percent_text, points_text, signed_points


def _teacher_label(student: dict[str, Any], configs: list[dict[str, Any]]) -> str | None:
    """The configuration label of the student's teacher run (``t_seed{0,1,2}`` for per-seed teachers)."""
    name = student.get("teacher_run")
    owner = next((c for c in configs if name and name in c.get("runs", ())), None)
    return owner["run"] if owner else name


def teacher_margins(comps: list[dict[str, Any]], configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per student group with a pre-training comparison (``dapt.analysis.compare.comparisons``), the best distilled
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
        student = best["a"]
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


def _num(value: float) -> str:
    """A signed number of points with a true minus sign: ``5.21``, ``−2.00``."""
    return f"{value:.2f}".replace("-", "−")


def sentence(label: str, m: dict[str, Any]) -> str:
    """The teacher margin the claim needs (``dapt.margin``): m, g, and whether m ≥ g, from the numbers."""
    claim = ("the claim (a distilled random-init student at least as accurate as the pre-trained, fine-tuned "
             "model) needs the teacher's lead over that model, m, to be at least the best student's gap to its "
             "teacher, g")
    if m["teacher_acc"] is None:
        return (f"{label}, teacher margin: {claim}; the teacher's accuracy is not recorded in {m['student_run']}, "
                f"so m and g are unknown.")
    where = "on the students' test images" if m["teacher_on"] == "students" else "in its own run"
    margin, gap = m["margin_pt"], m["gap_pt"]
    student, pretrained = m["comparison"]["a"], m["comparison"]["b"]
    text = (f"{label}, teacher margin: {claim}. The teacher {m['teacher_run']} scores "
            f"{percent_text(m['teacher_acc'])} {where}: m = {_num(margin)} points over {m['pretrained_run']} "
            f"({mean_text(pretrained)}), g = {_num(gap)} points over the best distilled student, {m['distiller']} "
            f"({m['student_run']}: {mean_text(student)}). m − g = {signed_points(margin - gap)} (the best student's "
            f"pre-training gap above{judged_text(m['comparison'])}), so m {'≥' if m['holds'] else '<'} g: ")
    if m["holds"]:
        return text + "this setting has the margin the claim needs, and its best student used it."
    if margin <= 0:
        return text + ("the teacher is not ahead of the pre-trained model at all, so only a student more accurate "
                       "than its teacher could reach it: this setting lacks the margin.")
    short = points_text(gap - margin)
    return text + (f"this setting lacks the margin: at this gap the teacher would have to lead the pre-trained model "
                   f"by {short} more, or the student come {short} closer to its teacher.")


def record(margins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The margins as flat rows (no configuration rows inside), for metrics.json."""
    return [{k: v for k, v in m.items() if k != "comparison"} for m in margins]
